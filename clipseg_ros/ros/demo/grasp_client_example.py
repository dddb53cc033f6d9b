"""A grasp planner's first step, as an example: where is the cup? From the node's ~/segmentation alone.

    ros2 run clipseg_ros grasp_client_example --ros-args -p label:=cup -r segmentation:=/clipseg/segmentation

Follows one object: the highest-scoring tracked instance of `label` with a 3D position when it starts, then that
track id (not whichever is likeliest or largest in each frame: a planner's target must not jump to another cup), and
prints its centroid in the camera's optical frame (transform it with TF from header.frame_id). When the track has
been missing for `lost_after` messages (the node's tracking.max_missed_frames: its track has ended by then and its
id never returns) it picks again. With the node's tracking off (every track_id 0) it takes each message's
likeliest. `once:=true` exits after the first one found.
"""

from __future__ import annotations

import contextlib
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.task import Future

from clipseg_ros.engine.limits import DEFAULT_TRACK_MAX_MISSED
from clipseg_ros.msg import Instance, Segmentation


def best_instance(msg: Segmentation, label: str) -> Instance | None:
    """The instance of `label` with the highest score_max among those with 3D; None if there is none."""
    located = [i for i in msg.instances if i.label == label and i.has_3d]
    return max(located, key=lambda i: i.score_max, default=None)


class TrackFollower:
    """The instance of one object from message to message, by its track id."""

    def __init__(self, label: str, lost_after: int = DEFAULT_TRACK_MAX_MISSED) -> None:
        self.label, self.lost_after = label, lost_after
        self.track_id = 0  # 0: following nothing yet
        self._missed = 0

    def target(self, msg: Segmentation) -> Instance | None:
        located = [i for i in msg.instances if i.label == self.label and i.has_3d]
        if self.track_id:
            # Parts of one object split by something in front share its id: the likeliest part.
            same = [i for i in located if i.track_id == self.track_id]
            if same:
                self._missed = 0
                return max(same, key=lambda i: i.score_max)
            self._missed += 1
            if self._missed <= self.lost_after:
                return None  # hidden for a moment: still that object, not another
            self.track_id = 0
        tracked = [i for i in located if i.track_id]
        if not tracked:
            return best_instance(msg, self.label)  # tracking off, or no track reported yet
        chosen = max(tracked, key=lambda i: i.score_max)
        self.track_id, self._missed = chosen.track_id, 0
        return chosen


class GraspClient(Node):
    def __init__(self) -> None:
        super().__init__("grasp_client_example")
        self.label = self.declare_parameter("label", "cup").value
        self.once = self.declare_parameter("once", False).value
        self.follower = TrackFollower(self.label, self.declare_parameter("lost_after", DEFAULT_TRACK_MAX_MISSED).value)
        self.found = Future()  # completed after the first target when `once`
        self.create_subscription(Segmentation, "segmentation", self.on_segmentation, 1)

    def on_segmentation(self, msg: Segmentation) -> None:
        target = self.follower.target(msg)
        if target is None:
            return
        c = target.centroid_3d
        track = f"track #{target.track_id}, " if target.track_id else "untracked, "
        print(
            f"{self.label}: x={c.x:.3f} y={c.y:.3f} z={c.z:.3f} m in {msg.header.frame_id} "
            f"({track}score {target.score_max:.2f}, {target.point_count} points, stamp "
            f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d})",
            flush=True,
        )
        if self.once:
            self.found.set_result(target)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = GraspClient()
    with contextlib.suppress(KeyboardInterrupt, ExternalShutdownException):
        rclpy.spin_until_future_complete(node, node.found)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
