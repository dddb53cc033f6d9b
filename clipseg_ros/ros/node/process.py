"""The node's process: rclpy without its signal handlers, the executor spun until SIGINT/SIGTERM, what is in
flight answered, then a fast exit.

Our own SIGINT/SIGTERM handling: rclpy's would invalidate the context under the worker's feet (publishing into
a dead context) before the node has stopped its work and answered what is in flight. After a signal, service
calls already received are answered with a refusal (calls waiting for a camera frame at once), then the node
takes its shutdown transition and is destroyed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from clipseg_ros.ros.launch_args import NODE_NAME
from clipseg_ros.ros.node.startup import EXIT_BAD_PARAMETERS, StartupError, forward_engine_logs

# After a signal, calls already received are answered (refused) for at least this long, and the last answer
# gets this much time to leave before the node is destroyed, up to a bound.
CLOSING_DRAIN_S = (0.2, 0.1, 0.6)
SPIN_S = 0.2  # a bounded wait, so that the signal flag is seen even when nothing else happens


class ManagedNode(Protocol):
    """What the process needs of the node (the segment node): its own transitions, and its answers' times."""

    failure: StartupError | None
    last_answer: float

    def autostart(self) -> bool: ...
    def trigger_configure(self): ...
    def trigger_activate(self): ...
    def update_subscriptions(self) -> None: ...
    def finish(self) -> None: ...
    def get_logger(self): ...
    def destroy_node(self) -> None: ...


def run_node(make_node: Callable[[threading.Event], ManagedNode], args: list[str] | None = None) -> int:
    """Run the node made by `make_node(closing)` (`closing` is set by SIGINT/SIGTERM); the exit code."""
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # malformed --ros-args (e.g. a list of mixed types): say so, no traceback
        print(f"[FATAL] [{NODE_NAME}]: invalid arguments: {exc}", file=sys.stderr)
        return EXIT_BAD_PARAMETERS
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = make_node(stop)
    forward_engine_logs(node.get_logger())
    try:
        if node.autostart():
            node.trigger_configure()
            if node.failure is None:
                node.trigger_activate()
            if node.failure is not None:  # logged by the transition
                return node.failure.exit_code
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set():
            executor.spin_once(timeout_sec=SPIN_S)
        node.update_subscriptions()  # closing: cameras unsubscribe, so calls waiting for a frame are refused now
        _drain(executor, node)
        executor.remove_node(node)
    finally:
        node.finish()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _drain(executor: SingleThreadedExecutor, node: ManagedNode) -> None:
    """Calls that reached the node but not its service callback yet get an answer, not silence."""
    least, linger, most = CLOSING_DRAIN_S
    started = time.monotonic()
    while (now := time.monotonic()) < started + most and (now < started + least or now < node.last_answer + linger):
        executor.spin_once(timeout_sec=0.02)


def exit_now(code: int) -> None:
    """End the process once the node is closed: skipping the interpreter's teardown of torch's modules (about
    1.5 s here) is what lets the node exit within 2 s of a signal."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
