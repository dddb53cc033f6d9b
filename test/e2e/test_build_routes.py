"""The ways of installing the package: `colcon build` + `colcon test` in a ROS 2 workspace, `make setup` into
.venv, and `pip install .` of the engine alone; and that package.xml declares every import with rosdep keys that
exist.

Each route is checked from outside the repository (a source checkout in the working directory would shadow
the installed package): the interfaces import, and the installed executables and share files exist.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from background import LAST_TIERS_NICENESS, Background

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
IMPORTS = (
    "import clipseg_ros.srv, clipseg_ros.msg, clipseg_ros.ros.node.segment_node as node; "
    "from clipseg_ros.srv import Segment; from clipseg_ros.msg import VisualPrompt; "
    "assert Segment.Request().threshold == 0.0 and VisualPrompt().text_weight == 0.0; "
    "print(clipseg_ros.srv.__file__); print(node.__file__)"
)
# What colcon test runs in the workspace route: one quick file of the suite (plus ruff).
COLCON_TESTS = "test/unit/test_image_codec.py"
SHARE_FILES = ("package.xml", "launch/segment.launch.py", "config/segment.yaml", "config/segment.rviz")
EXECUTABLES = ("segment_node", "sample_publisher")


def ros_build_env() -> dict[str, str]:
    """What building against the ROS 2 wheels in the venv needs (as the Makefile's ROS_ENV)."""
    env = dict(os.environ)
    env.update(AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV), PATH=f"{VENV / 'bin'}:{env['PATH']}")
    return env


def source_tree(destination: Path) -> Path:
    """The repository's files as git sees them (tracked and new, not ignored): what a clone would hold."""
    listing = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listing):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


def test_venv_route_is_installed_and_idempotent(tmp_path):
    started = time.monotonic()
    subprocess.run(["make", "setup"], cwd=ROOT, check=True, capture_output=True)
    assert time.monotonic() - started < 90, "make setup should be quick when everything is built"
    out = subprocess.run([sys.executable, "-c", IMPORTS], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert all(line.startswith(str(VENV)) for line in out.stdout.split()), out.stdout
    for name in EXECUTABLES:
        executable = VENV / "lib" / "clipseg_ros" / name
        assert os.access(executable, os.X_OK)
        assert executable.read_text().splitlines()[0] == f"#!{VENV / 'bin' / 'python'}"
    for name in SHARE_FILES:
        assert (VENV / "share" / "clipseg_ros" / name).is_file(), name


COLCON = VENV / "bin" / "colcon"
PIP_COMMANDS = ("clipseg-segment", "clipseg-train", "clipseg-eval")


def colcon_route(workspace: Path) -> list[dict]:
    """The workspace route's commands: colcon build, the node from the sourced install (outside the workspace's
    sources), colcon test and colcon test-result."""
    source_tree(workspace / "src" / "clipseg_ros")
    prefix = workspace / "install" / "clipseg_ros"
    build_env = ros_build_env()
    # As a user would: source the workspace, then import and run from elsewhere.
    check = (
        f". {workspace / 'install' / 'setup.sh'} && cd {workspace} && {sys.executable} -c '{IMPORTS}' && "
        f"{prefix / 'lib' / 'clipseg_ros' / 'segment_node'} --ros-args -p weights:=/nonexistent/weights; echo exit=$?"
    )
    log = ["--log-base", "log"]
    paths = ["--base-paths", "src", "--build-base", "build", "--install-base", "install"]
    quiet = ["--event-handlers", "console_direct-"]
    cmake_args = ["--cmake-args", f"-DPython3_EXECUTABLE={VENV / 'bin' / 'python'}", "-DBUILD_TESTING=ON",
                  f"-DCLIPSEG_TESTS={COLCON_TESTS}"]
    return [
        {"name": "build", "args": [str(COLCON), *log, "build", *paths, *quiet, *cmake_args], "cwd": str(workspace),
         "env": build_env},
        {"name": "check", "args": ["bash", "-c", check], "cwd": str(workspace), "env": None},
        {"name": "test", "args": [str(COLCON), *log, "test", *paths, *quiet], "cwd": str(workspace), "env": build_env},
        {"name": "result", "args": [str(COLCON), *log, "test-result", "--test-result-base", "build", "--verbose"],
         "cwd": str(workspace), "env": None},
    ]


def pip_route(directory: Path) -> list[dict]:
    """`pip install .` (setup.py) outside a ROS workspace, the engine's import, and each command's --help (each is
    mostly the import of torch)."""
    target = directory / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
               str(target), str(source_tree(directory / "src"))]
    env = dict(os.environ, PYTHONPATH=str(target))
    probe = "import clipseg_ros.engine.segmenter as s, clipseg_ros.train.trainer; print(s.__file__)"
    return [
        {"name": "install", "args": install, "cwd": str(directory), "env": None},
        {"name": "probe", "args": [sys.executable, "-P", "-c", probe], "cwd": str(directory), "env": env},
        *({"name": command, "args": [sys.executable, str(target / "bin" / command), "--help"], "cwd": str(directory),
           "env": env} for command in PIP_COMMANDS),
    ]


def start_early() -> Background:
    """The colcon and pip routes, each a chain of commands in a fresh directory, started with the session
    (background.py). The venv route stays in its test: `make setup` reinstalls into the venv every test runs from."""
    background = Background(LAST_TIERS_NICENESS)
    (background.directory / "workspace").mkdir()
    (background.directory / "pip").mkdir()
    if COLCON.exists():
        background.start_chain("colcon", colcon_route(background.directory / "workspace"))
    background.start_chain("pip", pip_route(background.directory / "pip"))
    return background


def test_colcon_workspace_route(early):
    if "colcon" not in early.processes:
        pytest.fail("colcon is a test requirement (requirements/test.txt): run make setup")
    steps = early.chain_result("colcon", timeout=600)
    workspace = early.directory / "workspace"
    build = steps["build"]
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    prefix = workspace / "install" / "clipseg_ros"
    for name in SHARE_FILES:
        assert (prefix / "share" / "clipseg_ros" / name).is_file(), name
    out = steps["check"]
    assert out.returncode == 0, out.stderr
    srv_file, node_file = out.stdout.split()[:2]
    assert srv_file.startswith(str(prefix)) and node_file.startswith(str(prefix))
    assert "exit=3" in out.stdout and "weights:=" in out.stderr, out.stdout + out.stderr

    # colcon test: a pytest file against the installed package (CLIPSEG_TESTS; the whole suite takes too long
    # here), and ruff. colcon test-result exits non-zero on any failure.
    test = steps["test"]
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    result = steps["result"]
    assert result.returncode == 0, result.stdout[-5000:]
    results = workspace / "build" / "clipseg_ros" / "test_results" / "clipseg_ros"
    counts = {path.name.removesuffix(".xunit.xml"): _junit_tests(path) for path in results.glob("*.xunit.xml")}
    name = f"{Path(COLCON_TESTS).parent.name}_{Path(COLCON_TESTS).stem}"  # unit_test_image_codec: tier and file
    assert counts.keys() == {name, "ruff"}, counts
    assert counts[name] > 10, counts


def _junit_tests(path: Path) -> int:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    return sum(int(suite.get("tests", 0)) for suite in suites)


def test_pip_route_gives_the_engine_and_its_commands_without_ros(early):
    """`pip install .` (setup.py) outside a ROS workspace: the engine and the three commands."""
    steps = early.chain_result("pip", timeout=600)
    install = steps["install"]
    assert install.returncode == 0, install.stderr[-3000:]
    out = steps["probe"]
    target = early.directory / "pip" / "site"
    assert out.returncode == 0 and out.stdout.startswith(str(target)), out.stdout + out.stderr
    for command in PIP_COMMANDS:
        run = steps[command]
        assert run.returncode == 0 and f"usage: {command}" in run.stdout, run.stderr


def test_lint():
    out = subprocess.run([str(VENV / "bin" / "ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


# rosdep keys read from ros/rosdistro's rosdep/python.yaml (2026-08-22); python3-safetensors(-pip) and any
# open_clip key do not exist, and `rosdep install` stops at the first key it cannot resolve.
ROSDEP_KEYS = {
    "python3-torch", "python3-torchvision", "python3-numpy", "python3-opencv", "python3-huggingface-hub-pip",
    "python3-tqdm", "python3-matplotlib", "python3-skimage", "python3-pytest", "python3-yaml",
    "python3-transformers-pip", "python3-ruff-pip", "python3-scipy", "python3-rosbags-pip",
}
# The distribution behind each third-party import: a rosdep key, or a pip name where no key exists.
IMPORT_KEYS = {
    "torch": "python3-torch", "torchvision": "python3-torchvision", "numpy": "python3-numpy",
    "cv2": "python3-opencv", "huggingface_hub": "python3-huggingface-hub-pip", "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib", "skimage": "python3-skimage", "yaml": "python3-yaml",
    "open_clip": "open_clip_torch", "safetensors": "safetensors", "onnxruntime": "onnxruntime",
    "scipy": "python3-scipy", "motmetrics": "motmetrics", "supervision": "supervision", "trackeval": "trackeval",
    "rosbags": "python3-rosbags-pip", "pycocotools": "pycocotools", "ray": "ray",
}
# Optional extras, not dependencies of the package: imported only by the features that need them (test.txt: the
# tracking evaluation, clipseg_ros.train.tracking_eval; test-nodeps.txt: TrackEval, installed without its deps;
# ray.txt: clipseg-label-bags --ray).
OPTIONAL_REQUIREMENTS = ("onnx.txt", "test.txt", "test-nodeps.txt", "ray.txt")
ROS_PACKAGE = re.compile(r"rclpy|launch|launch_ros|ament_index_python|\w+_(msgs|srvs|interfaces)")


def _requirement_names(path: Path) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {re.split(r"[<>=!~\[ ;]", line)[0].lower().replace("_", "-") for line in lines if line}


def test_package_xml_declares_every_import_with_keys_that_exist():
    declared = {element.text for element in ET.parse(ROOT / "package.xml").getroot() if element.tag.endswith("depend")}
    python_keys = {key for key in declared if key.startswith("python3-")}
    assert python_keys <= ROSDEP_KEYS, f"no rosdep rule for {python_keys - ROSDEP_KEYS}"
    ros_workspace = ROOT / "requirements" / "ros-workspace.txt"
    pip_for_ros = _requirement_names(ros_workspace)
    optional = set().union(*(_requirement_names(ROOT / "requirements" / name) for name in OPTIONAL_REQUIREMENTS))
    exact = [line for line in ros_workspace.read_text().splitlines() if "==" in line or "~=" in line]
    assert not exact, f"{exact}: no exact pins for robots (they bring their own torch)"

    sources = [*(ROOT / "clipseg_ros").rglob("*.py"), *(ROOT / "launch").glob("*.py")]
    sources += [path for path in (ROOT / "scripts").iterdir() if path.read_text().startswith("#!")]
    imported = set()
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"clipseg_ros"}
    for name in sorted(third_party):
        if ROS_PACKAGE.fullmatch(name):
            assert name in declared, f"{name} is imported: declare it in package.xml"
            continue
        assert name in IMPORT_KEYS, f"{name} is imported: add its rosdep key (or pip name) to this test and declare it"
        key = IMPORT_KEYS[name]
        assert key in declared or key.replace("_", "-") in pip_for_ros | optional, (
            f"{name} is imported: declare {key} in package.xml, or in requirements/ros-workspace.txt if no key exists")
