"""Start the CLIPSeg segment node on a camera, optionally with rviz2.

    ros2 launch clipseg_ros segment.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info weights:=/path/to/clipseg-rd64-refined rviz:=true
    ros2 launch clipseg_ros segment.launch.py namespace:=robot1 cameras:=[front,left]   # robot1/front/image, ...
    ros2 launch clipseg_ros segment.launch.py backend:=onnxruntime int8:=dynamic         # int8 on the CPU
    ros2 launch clipseg_ros segment.launch.py backend:=onnxruntime onnx_file:=out/export/model_int8_static.onnx

Everything here is what the executable does with --ros-args: `ros2 run clipseg_ros segment_node --ros-args
--params-file config/segment.yaml -r image:=... -r camera_info:=... -p weights:=... -p autostart:=true`, with
FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_frames.xml in its environment (`dds_profile:=none`: unset).
The launch ends when the node does. Inputs are relative names: they follow `namespace` unless remapped to
absolute ones. rviz2 is optional: without it `rviz:=true` only says so.
"""

import os
import tempfile

from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch import Condition, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    LogInfo,
    OpaqueFunction,
    SetEnvironmentVariable,
    Shutdown,
    UnsetEnvironmentVariable,
)
from launch.substitution import Substitution
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

from clipseg_ros.engine import limits
from clipseg_ros.ros import launch_args

SHARE = get_package_share_directory("clipseg_ros")
DDS_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


def _arg(context, name: str) -> str:
    return LaunchConfiguration(name).perform(context)


def _written(text: str, suffix: str) -> str:
    """`text` in a file of its own that outlives the launch file (as launch_ros writes its parameter files)."""
    with tempfile.NamedTemporaryFile("w", prefix="clipseg_launch_", suffix=suffix, delete=False) as file:
        file.write(text)
    return file.name


class ParameterOverrides(Substitution):
    """A params file holding what weights, device, autostart, cameras and the runtime arguments set (empty
    weights, device or runtime argument: unset)."""

    def describe(self) -> str:
        return f"ParameterOverrides(weights, device, autostart, cameras, {', '.join(launch_args.RUNTIME_ARGUMENTS)})"

    def perform(self, context) -> str:
        names = ("weights", "device", "autostart", "cameras")
        runtime = {name: _arg(context, name) for name in launch_args.RUNTIME_ARGUMENTS}
        overrides = launch_args.parameter_overrides(*(_arg(context, name) for name in names), **runtime)
        return _written(launch_args.parameters_yaml(overrides), ".yaml")


def _dds_profile_off(context) -> bool:
    return launch_args.dds_profile_off(_arg(context, "dds_profile"))


def _rviz(context):
    if not launch_args.parse_bool("rviz", _arg(context, "rviz")):
        return []
    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError:
        return [LogInfo(msg="rviz:=true but rviz2 is not installed (apt install ros-$ROS_DISTRO-rviz2): "
                            "the segment node runs without it")]
    cameras = launch_args.parse_cameras(_arg(context, "cameras"))
    topics = launch_args.rviz_topics(_arg(context, "namespace"), _arg(context, "image"), cameras)
    with open(os.path.join(SHARE, "config", "segment.rviz")) as template:
        config = _written(launch_args.rviz_config(template.read(), topics), ".rviz")
    return [
        LogInfo(msg=f"rviz2 shows {', '.join(topic for topic in topics.values())}"),
        Node(package="rviz2", executable="rviz2", arguments=["-d", config], output="screen"),
    ]


def generate_launch_description():
    segment_node = Node(
        package="clipseg_ros",
        executable="segment_node",
        name=launch_args.NODE_NAME,
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), ParameterOverrides()],
        remappings=[("image", LaunchConfiguration("image")), ("camera_info", LaunchConfiguration("camera_info"))],
        output="screen",
        # No launch left running around a dead node (nor an rviz2 watching nothing).
        on_exit=Shutdown(reason="the segment node exited"),
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument("image", default_value="image", description="camera image topic (one camera)"),
            DeclareLaunchArgument("camera_info", default_value="camera_info", description="camera info topic"),
            DeclareLaunchArgument(
                "cameras",
                default_value="",
                description="camera names, e.g. [front,left]: inputs <camera>/image, outputs ~/<camera>/...; "
                "empty: one camera on `image`",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its inputs"),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(SHARE, "config", "segment.yaml"),
                description="node parameters (ros__parameters YAML)",
            ),
            DeclareLaunchArgument("weights", default_value="", description="hub id or local path; empty: params file"),
            DeclareLaunchArgument("device", default_value="", description="auto, cpu, cuda:N; empty: params file"),
            DeclareLaunchArgument(
                "precision", default_value="", description=f"{', '.join(limits.PRECISIONS)}; empty: params file"
            ),
            DeclareLaunchArgument(
                "backend", default_value="", description=f"{', '.join(limits.BACKENDS)}; empty: params file"
            ),
            DeclareLaunchArgument(
                "int8",
                default_value="",
                description=f"onnxruntime: {', '.join(limits.INT8_AT_LOAD)}; empty: params file",
            ),
            DeclareLaunchArgument(
                "onnx_file",
                default_value="",
                description="file from clipseg-export for onnxruntime/tensorrt; empty: params file",
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                choices=["true", "false"],
                description="configure and activate at once; false: a lifecycle manager drives the node",
            ),
            DeclareLaunchArgument(
                "dds_profile",
                default_value=EnvironmentVariable(
                    DDS_VARIABLE,
                    default_value=os.path.join(SHARE, "config", "fastdds_large_frames.xml"),
                ),
                description="Fast DDS profile for the launched processes; default: the environment's, else large "
                "shared memory; none: no profile (Fast DDS's defaults)",
            ),
            DeclareLaunchArgument(
                "rviz",
                default_value="false",
                choices=["true", "false"],
                description="start rviz2 (if installed) on the node's topics",
            ),
            # The probability map (1.2 MiB at 640x480) and overlay outgrow Fast DDS's default shared memory.
            SetEnvironmentVariable(
                DDS_VARIABLE,
                LaunchConfiguration("dds_profile"),
                condition=Condition(predicate=lambda context: not _dds_profile_off(context)),
            ),
            UnsetEnvironmentVariable(DDS_VARIABLE, condition=Condition(predicate=_dds_profile_off)),
            segment_node,
            OpaqueFunction(function=_rviz),
        ]
    )
