"""Shared fixtures: tiny random CLIPSeg models and checkpoints the tests make themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from clipseg_ros.checkpoints import save_hf
from clipseg_ros.model import ClipSeg, ClipSegConfig


def make_tiny_config(**changes) -> ClipSegConfig:
    return ClipSegConfig.tiny().with_changes(**changes)


@pytest.fixture
def tiny_config():
    return make_tiny_config


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return ClipSeg(make_tiny_config()).eval()


# -- ROS 2 across processes ------------------------------------------------------------------------
# Set before any test imports rclpy, and inherited by every node the tests start: discovery stays on
# this machine, and a domain of this session's own keeps parallel or leftover runs from cross-talking.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = str(os.getpid() % 100 + 1)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random CLIPSeg saved in the Hugging Face layout: what the node's `weights` parameter takes."""
    torch.manual_seed(0)
    return save_hf(ClipSeg(make_tiny_config()).eval(), tmp_path_factory.mktemp("tiny_checkpoint"))


@pytest.fixture(scope="module")
def probe():
    """The test's own ROS node (rclpy initialised for the module), spun in the background."""
    import rclpy
    from ros_helpers import Probe

    rclpy.init()
    probe = Probe()
    yield probe
    probe.close()
    rclpy.shutdown()
