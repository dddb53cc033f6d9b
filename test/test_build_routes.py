"""The ways of installing the package: `colcon build` in a ROS 2 workspace, `make setup` into .venv, and
`pip install .` of the engine alone.

Each is checked from outside the repository (a source checkout in the working directory would shadow
the installed package): the interfaces import, and the installed executables and share files exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
IMPORTS = (
    "import clipseg_ros.srv, clipseg_ros.msg, clipseg_ros.ros.segment_node as node; "
    "from clipseg_ros.srv import Segment; from clipseg_ros.msg import VisualPrompt; "
    "assert Segment.Request().threshold == 0.0 and VisualPrompt().text_weight == 0.0; "
    "print(clipseg_ros.srv.__file__); print(node.__file__)"
)
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


def test_colcon_workspace_route(tmp_path):
    colcon = VENV / "bin" / "colcon"
    if not colcon.exists():
        pytest.fail("colcon is a test requirement (requirements/test.txt): run make setup")
    source_tree(tmp_path / "src" / "clipseg_ros")
    build = subprocess.run(
        [
            str(colcon),
            "--log-base",
            "log",
            "build",
            "--base-paths",
            "src",
            "--build-base",
            "build",
            "--install-base",
            "install",
            "--event-handlers",
            "console_direct-",
            "--cmake-args",
            f"-DPython3_EXECUTABLE={VENV / 'bin' / 'python'}",
            "-DBUILD_TESTING=OFF",
        ],
        cwd=tmp_path,
        env=ros_build_env(),
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    prefix = tmp_path / "install" / "clipseg_ros"
    for name in SHARE_FILES:
        assert (prefix / "share" / "clipseg_ros" / name).is_file(), name
    # As a user would: source the workspace, then import and run from elsewhere.
    check = (
        f". {tmp_path / 'install' / 'setup.sh'} && cd {tmp_path} && {sys.executable} -c '{IMPORTS}' && "
        f"{prefix / 'lib' / 'clipseg_ros' / 'segment_node'} --ros-args -p weights:=/nonexistent/weights; echo exit=$?"
    )
    out = subprocess.run(["bash", "-c", check], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    srv_file, node_file = out.stdout.split()[:2]
    assert srv_file.startswith(str(prefix)) and node_file.startswith(str(prefix))
    assert "exit=3" in out.stdout and "weights:=" in out.stderr, out.stdout + out.stderr


def test_pip_route_gives_the_engine_and_its_commands_without_ros(tmp_path):
    """`pip install .` (setup.py) outside a ROS workspace: the engine and the three commands."""
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(source_tree(tmp_path / "src"))],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    env = dict(os.environ, PYTHONPATH=str(target))
    probe = "import clipseg_ros.segmenter as s, clipseg_ros.train.trainer; print(s.__file__)"
    out = subprocess.run([sys.executable, "-P", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith(str(target)), out.stdout + out.stderr
    for command in ("clipseg-segment", "clipseg-train", "clipseg-eval"):
        run = subprocess.run([sys.executable, str(target / "bin" / command), "--help"], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
        assert run.returncode == 0 and f"usage: {command}" in run.stdout, run.stderr


def test_lint():
    out = subprocess.run([str(VENV / "bin" / "ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
