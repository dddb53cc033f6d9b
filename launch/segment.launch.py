"""Start the CLIPSeg segment node on a camera, optionally with rviz2.

    ros2 launch clipseg_ros segment.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info weights:=/path/to/clipseg-rd64-refined rviz:=true

Everything here is what the executables do with --ros-args: `ros2 run clipseg_ros segment_node
--ros-args --params-file config/segment.yaml -r image:=... -r camera_info:=... -p weights:=...`,
with FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_frames.xml in its environment.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

SHARE = get_package_share_directory("clipseg_ros")


def _segment_node(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    # Only the arguments given override the params file: an empty weights/device keeps its value.
    overrides = {name: arg(name) for name in ("weights", "device") if arg(name)}
    # The probability map (1.2 MiB at 640x480) and overlay outgrow Fast DDS's default shared memory.
    environment = {"FASTDDS_DEFAULT_PROFILES_FILE": arg("dds_profile")} if arg("dds_profile") else {}
    return [
        Node(
            package="clipseg_ros",
            executable="segment_node",
            name="clipseg",
            namespace=arg("namespace"),
            parameters=[arg("params_file"), overrides],
            remappings=[("image", arg("image")), ("camera_info", arg("camera_info"))],
            additional_env=environment,
            output="screen",
        )
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument("image", default_value="/image", description="camera image topic"),
            DeclareLaunchArgument("camera_info", default_value="/camera_info", description="camera info topic"),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the segment node"),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(SHARE, "config", "segment.yaml"),
                description="node parameters (ros__parameters YAML)",
            ),
            DeclareLaunchArgument("weights", default_value="", description="hub id or local path; empty: params file"),
            DeclareLaunchArgument("device", default_value="", description="auto, cpu, cuda:N; empty: params file"),
            DeclareLaunchArgument(
                "dds_profile",
                default_value=EnvironmentVariable(
                    "FASTDDS_DEFAULT_PROFILES_FILE",
                    default_value=os.path.join(SHARE, "config", "fastdds_large_frames.xml"),
                ),
                description="Fast DDS profile for the node; default: the environment's, else large shared memory",
            ),
            DeclareLaunchArgument("rviz", default_value="false", description="start rviz2 with config/segment.rviz"),
            OpaqueFunction(function=_segment_node),
            Node(
                package="rviz2",
                executable="rviz2",
                arguments=["-d", os.path.join(SHARE, "config", "segment.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")),
            ),
        ]
    )
