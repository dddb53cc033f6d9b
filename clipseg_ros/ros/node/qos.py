"""The node's QoS: the reliability names its parameters take, and input subscriptions that match their publishers.

`RELIABILITIES` is the one mapping from a `qos.*_reliability` value to its policy; `AUTO`, for inputs only,
is `MatchedSubscription`'s own. Inputs match the topic's publishers as image_pipeline does: a reliable
subscriber never hears a best-effort camera (silent "no output"); a best-effort subscriber hears everything
but loses fragments of large frames that a reliable publisher would have resent. `auto` subscribes best
effort until publishers are seen, then reliable if all of them are reliable.
"""

from __future__ import annotations

from collections.abc import Callable

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

RELIABILITIES = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
AUTO = "auto"
RECHECK_S = 1.0  # publishers come and go (a driver restarts): look again this often


class MatchedSubscription:
    def __init__(self, node: Node, msg_type, topic: str, callback: Callable, depth: int, reliability: str) -> None:
        self._node, self._msg_type, self._callback, self._depth = node, msg_type, callback, depth
        self.topic = node.resolve_topic_name(topic)
        self._subscription = None
        self._timer = None
        self.reliability: ReliabilityPolicy | None = None
        if reliability == AUTO:
            self._subscribe(ReliabilityPolicy.BEST_EFFORT)
            self.match_publishers()
            self._timer = node.create_timer(RECHECK_S, self.match_publishers)
        else:
            self._subscribe(RELIABILITIES[reliability])

    def match_publishers(self) -> None:
        publishers = self._node.get_publishers_info_by_topic(self.topic)
        if not publishers:
            return  # keep what we have: it matched the last publishers
        reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
        wanted = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        if wanted != self.reliability:
            self._subscribe(wanted)
            self._node.get_logger().info(f"{self.topic}: subscribed {wanted.name.lower()} to match its publishers")

    def _subscribe(self, reliability: ReliabilityPolicy) -> None:
        if self._subscription is not None:
            self._node.destroy_subscription(self._subscription)
        qos = QoSProfile(depth=self._depth, reliability=reliability)
        self._subscription = self._node.create_subscription(self._msg_type, self.topic, self._callback, qos)
        self.reliability = reliability

    def destroy(self) -> None:
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        if self._subscription is not None:
            self._node.destroy_subscription(self._subscription)
            self._subscription = None
