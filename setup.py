"""The Python side of clipseg_ros for `pip install .` outside a ROS workspace: the engine and its CLI.

The ROS 2 package is built by CMake (package.xml: ament_cmake), because the msg/srv interfaces need
rosidl; `make setup` and `colcon build` both go that way and install these same sources beside the
generated `clipseg_ros.msg` / `clipseg_ros.srv`. Do not mix the two installs in one environment:
both would claim the `clipseg_ros` import. `clipseg_ros.ros` and the demo need that ROS build.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def requirements(name: str = "runtime.txt") -> list[str]:
    lines = (ROOT / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    packages=find_packages(include=["clipseg_ros", "clipseg_ros.*"]),
    install_requires=requirements(),
    # The onnxruntime backend, clipseg-export and clipseg-quant-check: pip install .[onnx]; clipseg-label-bags
    # --ray: pip install .[ray]
    extras_require={"onnx": requirements("onnx.txt"), "ray": ["ray>=2.40"]},
    data_files=[
        ("share/clipseg_ros", ["package.xml"]),
        ("share/clipseg_ros/launch", ["launch/segment.launch.py"]),
        ("share/clipseg_ros/config", ["config/segment.yaml", "config/segment.rviz"]),
    ],
    entry_points={
        "console_scripts": [
            "clipseg-segment = clipseg_ros.commands.segment:main",
            "clipseg-train = clipseg_ros.commands.train:main",
            "clipseg-eval = clipseg_ros.commands.evaluate:main",
            "clipseg-export = clipseg_ros.commands.export:main",
            "clipseg-quant-check = clipseg_ros.commands.quant_check:main",
        ]
    },
)
