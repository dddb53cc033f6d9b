"""The fast runtimes reached from the node's parameters, in real node processes on the tiny checkpoint.

ONNX Runtime with dynamic int8 and a file made by clipseg-export (passed as the command's advice says) run and
answer ~/segment; a damaged export in the cache is rebuilt and the node starts. Refused at configure with the
reason, never a traceback, exit 2: a file from other weights or for another input size, and a file that cannot
be loaded. Any other failure in configure is logged with its reason and ends the node (exit 1) at once, where
rclpy's lifecycle used to swallow it and leave the node unconfigured for good.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import torch
from ros_helpers import NodeProcess, NodeRuns, frame, wait_for_service
from tiny_clipseg import copy_session_export

from clipseg_ros.commands import export as export_command
from clipseg_ros.engine.backends.export_cache import intact
from clipseg_ros.engine.checkpoints import save_hf
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig
from clipseg_ros.srv import Segment

EXIT_TRANSITION_FAILED, EXIT_BAD_PARAMETERS = 1, 2
# Generous: one process importing torch (and exporting a tiny model) on a loaded 2-core machine.
END_S = 90.0
SIZE = "[64,96]"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An export cache of the test's own, inherited by the node processes it starts."""
    monkeypatch.setenv("CLIPSEG_ROS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def cache_with_export(_runtime_cache_directory, cache) -> Path:
    """The test's export cache holding the session's fp32 export of the tiny weights at SIZE: the node exports
    nothing, and only quantises it."""
    copy_session_export(_runtime_cache_directory, cache, (64, 96))
    return cache


def start(tmp_path: Path, name: str, params: dict[str, str]) -> NodeProcess:
    return NodeProcess(tmp_path, name, {"device": "cpu", "input_size": SIZE, **params})


def answers(probe, node: NodeProcess) -> None:
    """The node serves ~/segment with one mask per prompt at the image's size."""
    try:
        client = wait_for_service(probe, node, Segment, f"/{node.name}/segment", timeout=END_S)
        response = probe.call(client, Segment.Request(image=frame(1), prompts=["a cup", "the floor"]))
        assert response.success, response.message
        assert response.labels == ["a cup", "the floor"]
        assert [(m.width, m.height) for m in response.masks] == [(160, 120)] * 2
    finally:
        node.stop()
    assert "Traceback" not in node.log(), node.log()


def ended(node: NodeProcess) -> tuple[int, str, float]:
    """Exit code, log and seconds to the exit of a node that must end by itself."""
    started = time.monotonic()
    try:
        node.process.wait(timeout=END_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{node.name} still running after {END_S:.0f} s:\n{node.log()}")
    finally:
        code = node.stop()
    log = node.log()
    assert "Traceback" not in log, log
    return code, log, time.monotonic() - started


def test_int8_dynamic_runs_and_a_damaged_cached_export_is_rebuilt(probe, tiny_checkpoint, tmp_path, cache_with_export):
    cache = cache_with_export
    params = {"weights": str(tiny_checkpoint), "backend": "onnxruntime", "int8": "dynamic"}
    node = start(tmp_path, "clipseg_int8", params)
    answers(probe, node)
    # The engine's own log lines reach the node's: what precision auto picked, and why.
    assert "precision auto: fp32 on cpu (the onnxruntime backend runs the image path in its file's precision)" in (
        node.log()), node.log()
    (int8,) = cache.rglob("*_int8-dynamic.onnx")
    assert intact(int8)
    with open(int8, "r+b") as file:
        file.truncate(int8.stat().st_size // 2)
    node = start(tmp_path, "clipseg_int8_again", params)
    answers(probe, node)
    assert re.search(r"\[WARN\] .*\[clipseg_int8_again\]: .*incomplete or corrupt", node.log()), node.log()
    assert intact(int8)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory) -> dict[str, str]:
    """clipseg-export's dynamic int8 file of the tiny checkpoint, and the node parameters its advice names."""
    out = tmp_path_factory.mktemp("export")
    logger, lines = logging.getLogger("clipseg-export"), _Lines()
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        code = export_command.main(["--weights", str(tiny_checkpoint), "--input-size", "64", "96", "--out",
                                    str(out), "--int8", "dynamic"])
    finally:
        logger.removeHandler(lines)
        logger.setLevel(logging.NOTSET)
    assert code == 0
    (advice,) = [line for line in lines.lines if line.startswith("node: --ros-args")]
    params = dict(re.findall(r"-p (\w+):=(\S+)", advice))
    assert params == {"weights": str(tiny_checkpoint), "backend": "onnxruntime", "input_size": SIZE,
                      "onnx_file": str((out / "model_int8_dynamic.onnx").resolve())}
    return params


def test_a_file_from_clipseg_export_runs_as_its_advice_says(probe, exported, tmp_path, cache):
    answers(probe, NodeProcess(tmp_path, "clipseg_exported", {"device": "cpu", **exported}))
    assert not cache.exists()  # the given file ran: nothing was exported


def other_weights(directory: Path) -> Path:
    torch.manual_seed(1)
    return save_hf(ClipSeg(ClipSegConfig.tiny()).eval(), directory)


@pytest.fixture(scope="module")
def ending_nodes(exported, tiny_checkpoint):
    """The nodes that must end at configure, started at once (each is mostly the import of torch), each with an
    export cache of its own."""
    runs = NodeRuns()

    def start_ending(name: str, params: dict[str, str], cache: Path) -> None:
        env = {**os.environ, "CLIPSEG_ROS_CACHE": str(cache)}
        runs.start_node(name, {"device": "cpu", "input_size": SIZE, **params}, env=env)

    tmp = runs.directory
    start_ending("clipseg_refused_weights", {**exported, "weights": str(other_weights(tmp / "other"))},
                 tmp / "cache_weights")
    start_ending("clipseg_refused_input_size", {**exported, "input_size": "[64,64]"}, tmp / "cache_input_size")
    garbage = tmp / "model.onnx"
    garbage.write_bytes(b"not an onnx graph\n" * 50)
    unloadable = {"weights": str(tiny_checkpoint), "backend": "onnxruntime", "onnx_file": str(garbage)}
    start_ending("clipseg_unloadable", unloadable, tmp / "cache_unloadable")
    not_a_directory = tmp / "cache"
    not_a_directory.write_text("a file where the export cache should be\n")
    start_ending("clipseg_unexpected", {"weights": str(tiny_checkpoint), "backend": "onnxruntime"}, not_a_directory)
    yield runs
    runs.stop()


@pytest.mark.parametrize(("change", "says"), [
    ("weights", "was exported from other weights"),
    ("input_size", "was exported for input size 64x96, the Segmenter uses 64x64"),
])
def test_a_file_of_another_model_is_refused_at_configure(exported, ending_nodes, change, says):
    code, log, _ = ended(ending_nodes[f"clipseg_refused_{change}"])
    assert code == EXIT_BAD_PARAMETERS, log
    assert f"invalid parameters: {exported['onnx_file']} {says}" in log, log


def test_an_unloadable_onnx_file_ends_the_node_with_the_reason(ending_nodes):
    garbage = ending_nodes.directory / "model.onnx"
    code, log, _ = ended(ending_nodes["clipseg_unloadable"])
    assert code == EXIT_BAD_PARAMETERS, log
    assert f"cannot load the ONNX file {garbage} (" in log and "export it again with clipseg-export" in log, log


def test_an_unexpected_failure_in_configure_ends_the_node_with_the_reason(ending_nodes):
    code, log, _ = ended(ending_nodes["clipseg_unexpected"])
    assert code == EXIT_TRANSITION_FAILED, log
    assert re.search(r"configure failed: NotADirectoryError: .*Not a directory", log), log
    assert "Unable to start transition" not in log, log
