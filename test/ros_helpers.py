"""Test-side ROS plumbing: start the node as its own process, and a probe node that publishes and waits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from background import LAST_TIERS_NICENESS, Background
from builtin_interfaces.msg import Time
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from clipseg_ros.ros.image_codec import numpy_to_image

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class NodeProcess:
    """`python -m clipseg_ros.ros.node.segment_node --ros-args ...` with its output in a log file."""

    def __init__(
        self, tmp: Path, name: str, params: dict[str, str], ros_args: tuple[str, ...] = (), env: dict | None = None
    ) -> None:
        self.name = name
        self.log_path = tmp / f"{name}.log"
        args = ["--ros-args", "-r", f"__node:={name}", *ros_args]
        for key, value in params.items():
            args += ["-p", f"{key}:={value}"]
        # cwd and -P: the source checkout must not shadow the installed package (it has no msg/srv).
        self._log = open(self.log_path, "w")  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "clipseg_ros.ros.node.segment_node", *args],
            cwd=tmp,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        if self.alive():
            self.process.send_signal(2)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


class NodeRuns(Background):
    """Node processes started together, each awaited by its own test: most of a node's start is the import of
    torch, which two cores do for two processes at once, while the test of one would leave a core idle.

    `early`: started with the session (a module's start_early, background.py), at the last tiers' priority."""

    def __init__(self, early: bool = False) -> None:
        super().__init__(LAST_TIERS_NICENESS if early else 0)
        self.started = time.monotonic()
        self.nodes: dict[str, NodeProcess] = {}

    def start_node(
        self, name: str, params: dict[str, str], ros_args: tuple[str, ...] = (), env: dict | None = None
    ) -> NodeProcess:
        node = self.nodes[name] = NodeProcess(self.directory, name, params, ros_args, env)
        if self.niceness:
            os.setpriority(os.PRIO_PROCESS, node.process.pid, self.niceness)
        return node

    def __getitem__(self, name: str) -> NodeProcess:
        return self.nodes[name]

    def exit_code(self, name: str, timeout: float) -> int | None:
        """The node's exit code once it has ended, or None if it still runs after `timeout`."""
        node = self.nodes[name]
        try:
            node.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return node.stop()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        super().stop()


class Inbox:
    """Every message received on one topic, and a way to wait for one that matches."""

    def __init__(self) -> None:
        self.messages: list = []
        self._changed = threading.Condition()

    def __call__(self, msg) -> None:
        with self._changed:
            self.messages.append(msg)
            self._changed.notify_all()

    def wait(self, predicate: Callable = lambda m: True, timeout: float = 10.0, since: int = 0):
        """The first message (from index `since`) matching `predicate`, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for msg in self.messages[since:]:
                    if predicate(msg):
                        return msg
                since = len(self.messages)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def __len__(self) -> int:
        with self._changed:
            return len(self.messages)


class Probe(Node):
    """The test's own node, spun by a background executor."""

    def __init__(self) -> None:
        super().__init__("probe")
        self._executor = MultiThreadedExecutor(num_threads=2)
        self._executor.add_node(self)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def inbox(self, msg_type, topic: str, qos: QoSProfile = RELIABLE) -> Inbox:
        inbox = Inbox()
        self.create_subscription(msg_type, topic, inbox, qos)
        return inbox

    def wait_for_subscribers(self, publisher, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while publisher.get_subscription_count() == 0:
            assert time.monotonic() < deadline, f"nobody subscribes to {publisher.topic_name}"
            time.sleep(0.05)

    def call(self, client, request, timeout: float = 30.0):
        assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not available"
        return wait_future(client.call_async(request), timeout)

    def set_remote_parameters(self, node_name: str, values: dict):
        """The SetParametersResult of each, as `ros2 param set` would get them."""
        client = AsyncParameterClient(self, node_name)
        assert client.wait_for_services(timeout_sec=10.0)
        params = [Parameter(name, value=value) for name, value in values.items()]
        return wait_future(client.set_parameters(params), 10.0).results

    def remote_parameter(self, node_name: str, name: str):
        client = AsyncParameterClient(self, node_name)
        assert client.wait_for_services(timeout_sec=10.0)
        value = wait_future(client.get_parameters([name]), 10.0).values[0]
        return Parameter.from_parameter_msg(_named(name, value)).value

    def close(self) -> None:
        self._executor.shutdown()
        self._thread.join()  # out of rclpy before its context is shut down
        self.destroy_node()


def _named(name, value):
    from rcl_interfaces.msg import Parameter as ParameterMsg

    return ParameterMsg(name=name, value=value)


def wait_future(future, timeout: float):
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    assert done.wait(timeout), "no answer in time"
    return future.result()


def stamp(seconds: int, nanoseconds: int = 0) -> Time:
    return Time(sec=seconds, nanosec=nanoseconds)


def frame(seconds: int, width: int = 160, height: int = 120, frame_id: str = "test_camera", encoding: str = "rgb8"):
    """A synthetic camera frame: a bright square on a gradient, stamped `seconds`."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    rgb[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = (250, 240, 30)
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., 0]}[encoding]
    return numpy_to_image(pixels, encoding, Header(stamp=stamp(seconds), frame_id=frame_id))


def same_stamp(msg, seconds: int) -> bool:
    return msg.header.stamp.sec == seconds and msg.header.stamp.nanosec == 0


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS) or its peak so far (VmHWM), in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def wait_for_service(probe: Probe, node: NodeProcess, srv_type, name: str, timeout: float = 120.0):
    """A client of `name` once the node serves it; fails with the node's log if it exits first."""
    client = probe.create_client(srv_type, name)
    deadline = time.monotonic() + timeout
    while not client.wait_for_service(timeout_sec=0.5):
        assert node.alive(), f"{node.name} exited:\n{node.log()}"
        assert time.monotonic() < deadline, f"{node.name} not up:\n{node.log()}"
    return client
