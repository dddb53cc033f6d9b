"""What a tour of the demo needs of the run that drives it (`run_demo.DemoRun`), as a Protocol: the tours are
started by the run and must not import it back."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Protocol

import numpy as np

from clipseg_ros.ros.demo.demo_client import DemoClient
from clipseg_ros.train.shapes_model import ShapesModel


class DemoHost(Protocol):
    args: argparse.Namespace
    shapes: ShapesModel | None

    def spawn(self, module: str, ros_args: list[str]) -> subprocess.Popen: ...

    def stop(self, process: subprocess.Popen) -> None: ...

    def write(self, name: str, rgb: np.ndarray) -> Path: ...

    def perception(
        self, client: DemoClient, name: str, segmentation, frame: np.ndarray, rendered_mm: np.ndarray
    ) -> tuple[Path, dict]: ...

    def summary(self, client: DemoClient, written: list[Path]) -> None: ...
