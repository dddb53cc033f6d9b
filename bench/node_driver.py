"""What the benches that drive the segment node in its own process share: its command line, the bench's client
node spun in a thread, and the wait for the node to be up.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


def segment_node_command(name: str, params: dict[str, object], *ros_args: str) -> list[str]:
    """The segment node as `name` with `params` (lists as YAML lists, booleans in lower case), then `ros_args`
    (remaps, --log-level)."""
    command = [sys.executable, "-P", "-m", "clipseg_ros.ros.node.segment_node", "--ros-args", "-r", f"__node:={name}"]
    for key, value in params.items():
        command += ["-p", f"{key}:={_yaml(value)}"]
    return [*command, *ros_args]


def _yaml(value: object) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


@contextmanager
def spinning(client: Node) -> Iterator[Node]:
    """`client` spun in a thread of its own by one single-threaded executor (a multi-threaded one costs CPU that
    the node under test would miss on 2 cores). On exit the executor stops, its thread is joined and the node is
    destroyed, before anyone shuts rclpy down: a thread still in rclpy then aborts the process."""
    executor = SingleThreadedExecutor()
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield client
    finally:
        executor.shutdown()
        spinner.join()
        client.destroy_node()


def wait_until(
    ready: Callable[[], bool],
    processes: Sequence[subprocess.Popen],
    timeout_s: float,
    failure: Callable[[], str],
    each_try: Callable[[], object] = lambda: None,
    interval_s: float = 0.1,
) -> None:
    """Until `ready()`; RuntimeError with `failure()` when a process has ended or `timeout_s` passed first.
    `each_try` runs before every look (a frame published until outputs come back)."""
    deadline = time.monotonic() + timeout_s
    while True:
        each_try()
        if ready():
            return
        if any(process.poll() is not None for process in processes) or time.monotonic() > deadline:
            raise RuntimeError(failure())
        time.sleep(interval_s)


def stop(processes: Sequence[subprocess.Popen], timeout_s: float = 30.0) -> None:
    """SIGTERM to each, then wait for all (they shut down side by side)."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=timeout_s)
