"""Shared fixtures: tiny random CLIPSeg models and checkpoints the tests make themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tiny_clipseg
import torch

from clipseg_ros.engine.model import ClipSegConfig

# The models these tests run in-process are small: on two cores, shared with the node processes the tests start
# (and often with other work), torch's threads mostly wait for each other. One thread ran the engine tests in
# two thirds of the time.
torch.set_num_threads(1)


def make_tiny_config(**changes) -> ClipSegConfig:
    return ClipSegConfig.tiny().with_changes(**changes)


@pytest.fixture
def tiny_config():
    return make_tiny_config


@pytest.fixture
def tiny_model():
    return tiny_clipseg.tiny_model()


@pytest.fixture(scope="session")
def _runtime_cache_directory(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runtime_cache")


@pytest.fixture
def runtime_cache(_runtime_cache_directory, monkeypatch) -> Path:
    """The export cache (CLIPSEG_ROS_CACHE) of the session's in-process tests: an export of the same weights, size
    and precision is made once (in a few seconds), whichever test asks first."""
    monkeypatch.setenv("CLIPSEG_ROS_CACHE", str(_runtime_cache_directory))
    return _runtime_cache_directory


# -- ROS 2 across processes ------------------------------------------------------------------------
# Set before any test imports rclpy, and inherited by every node the tests start: discovery stays on
# this machine, and a domain of this session's own keeps parallel or leftover runs from cross-talking.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = str(os.getpid() % 100 + 1)
# Over UDP on the loopback, not Fast DDS's shared memory: the tests kill processes, and a participant killed while
# it works a shared-memory port can leave that port stuck for the process that reuses it (eProsima/Fast-DDS#5469,
# #2811). test_dds_profile.py measures the shared-memory defaults in processes of its own.
os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "UDPv4"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """tiny_clipseg.save_tiny_checkpoint's checkpoint, made once for the session."""
    return tiny_clipseg.save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_checkpoint"))


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


# -- subprocesses started before the tests (background.py) -----------------------------------------------------
_early: list = []


def pytest_collection_modifyitems(items):
    """Tests that read a background result run last: the background then has the whole session to finish."""
    items.sort(key=lambda item: "early" in getattr(item, "fixturenames", ()))


def pytest_collection_finish(session):
    """Each collected module with a selected test that asks for `early` gets its `start_early()` run now."""
    if session.config.option.collectonly:
        return
    modules = {item.module for item in session.items if "early" in getattr(item, "fixturenames", ())}
    for module in sorted(modules, key=lambda m: m.__name__):
        module.early = module.start_early()
        _early.append(module.early)


def pytest_sessionfinish(session):
    for background in _early:
        background.stop()


@pytest.fixture
def early(request):
    """The test module's Background, started when the session started (see background.py)."""
    return request.module.early
