"""The ROS 2 layer: everything that imports rclpy or message types. The engine never imports from here."""
