"""A grasp planner's first step, as an example: where is the cup? From the node's ~/segmentation alone.

    ros2 run clipseg_ros grasp_client_example --ros-args -p label:=cup -r segmentation:=/clipseg/segmentation

Takes the highest-scoring instance of `label` that has a 3D position, and prints its centroid in the camera's
optical frame (transform it with TF from header.frame_id). `once:=true` exits after the first one found.
"""

from __future__ import annotations

import contextlib
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.task import Future

from clipseg_ros.msg import Instance, Segmentation


def best_instance(msg: Segmentation, label: str) -> Instance | None:
    """The instance of `label` with the highest score_max among those with 3D; None if there is none."""
    located = [i for i in msg.instances if i.label == label and i.has_3d]
    return max(located, key=lambda i: i.score_max, default=None)


class GraspClient(Node):
    def __init__(self) -> None:
        super().__init__("grasp_client_example")
        self.label = self.declare_parameter("label", "cup").value
        self.once = self.declare_parameter("once", False).value
        self.found = Future()  # completed after the first target when `once`
        self.create_subscription(Segmentation, "segmentation", self.on_segmentation, 1)

    def on_segmentation(self, msg: Segmentation) -> None:
        target = best_instance(msg, self.label)
        if target is None:
            return
        c = target.centroid_3d
        print(
            f"{self.label}: x={c.x:.3f} y={c.y:.3f} z={c.z:.3f} m in {msg.header.frame_id} "
            f"(score {target.score_max:.2f}, {target.point_count} points, stamp "
            f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d})",
            flush=True,
        )
        if self.once:
            self.found.set_result(target)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = GraspClient()
    with contextlib.suppress(KeyboardInterrupt, ExternalShutdownException):
        rclpy.spin_until_future_complete(node, node.found)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
