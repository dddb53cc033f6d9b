"""The segment node: a lifecycle node that wires cameras, prompts and the service to the parts that do the work.

Lifecycle (managed node, as Nav2 and yolo_ros): configure checks the parameters and loads the weights
(`startup`: exit code 2 for bad parameters, 3 for weights that cannot be used, 1 for any other failure),
then creates the cameras, the prompt inputs and the service; activate starts the worker and lets the cameras
subscribe; deactivate stops all work and every camera subscription; cleanup frees the model; shutdown works
from any state.
With `autostart` (the default) the node configures and activates itself.

Topics (node name `clipseg`, so with no namespace `~/x` is `/clipseg/x`), per camera (`cameras` empty: one
camera on `image`; else `<camera>/image` in, `~/<camera>/...` out):
  in   image (sensor_msgs/Image) or image/compressed (image_transport:=compressed), camera_info,
       depth/image + depth/camera_info (depth.enabled), ~/prompt (std_msgs/String, "cup; red mug", empty
       pauses), ~/visual_prompt (clipseg_ros/VisualPrompt)
  out  ~/mask (mono8 0/255, any prompt above threshold), ~/probability (32FC1, max over prompts),
       ~/label (mono8, 0 background, k = prompt k), ~/overlay (rgb8), ~/camera_info,
       ~/segmentation (clipseg_ros/Segmentation: per-prompt masks, scores, instances, 3D with depth),
       ~/points (PointCloud2), ~/markers (MarkerArray), ~/label_info (std_msgs/String JSON, transient local),
       /diagnostics
  srv  ~/segment (clipseg_ros/Segment)
Every output carries the input frame's header. The work is done by the parts beside this module: `camera`,
`prompt_board`, `worker` (its own thread), `segment_service`, `startup`, `settings`, `process` (signals, exit).
"""

from __future__ import annotations

import itertools
import threading

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String

from clipseg_ros.engine.prompts import split_prompts
from clipseg_ros.engine.segmenter import Segmenter
from clipseg_ros.msg import VisualPrompt as VisualPromptMsg
from clipseg_ros.ros.launch_args import NODE_NAME
from clipseg_ros.ros.node import parameters, startup
from clipseg_ros.ros.node.camera import Camera, Frame
from clipseg_ros.ros.node.diagnostics import WARN_EVERY_S, diagnostic_array
from clipseg_ros.ros.node.process import exit_now, run_node
from clipseg_ros.ros.node.prompt_board import PromptBoard, label_info, visual_label
from clipseg_ros.ros.node.qos import RELIABILITIES
from clipseg_ros.ros.node.segment_service import SegmentService
from clipseg_ros.ros.node.settings import InputSettings
from clipseg_ros.ros.node.worker import Worker
from clipseg_ros.srv import Segment

DEMAND_CHECK_S = 0.5  # how often cameras look for listeners (subscribe on demand)
WORKER_JOIN_S = 1.5  # deactivation waits this long for the frame in flight


class SegmentNode(LifecycleNode):
    def __init__(self, closing: threading.Event | None = None, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        parameters.declare(self)
        self.failure: startup.StartupError | None = None  # why the last transition failed
        self._board = PromptBoard()  # one for the node's life: visual prompts outlive a cleanup
        self._segmenter: Segmenter | None = None
        self._cameras: dict[str, Camera] = {}
        self._track_ids = itertools.count(1)  # one source for every camera and configure: no id is given twice
        self._worker: Worker | None = None  # while active
        self._service: SegmentService | None = None
        self._entities: list = []  # what configure created and cleanup destroys
        self._finalized = False
        # Set on SIGINT/SIGTERM: the call being computed and calls still arriving are answered with a refusal.
        self.closing = closing or threading.Event()
        self.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def last_answer(self) -> float:
        """time.monotonic() of the last service answer."""
        return self._service.last_answer if self._service is not None else 0.0

    # -- lifecycle --------------------------------------------------------------------------------

    @startup.reported
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.failure = None
        try:
            self._board.configure(startup.checked_settings(lambda name: self.get_parameter(name).value))
            self._segmenter = startup.load_segmenter(self._param, self.get_logger().info)
        except startup.StartupError as exc:
            self.failure = exc
            self.get_logger().fatal(str(exc))
            return TransitionCallbackReturn.FAILURE
        self._wire()
        self._announce_labels()
        segmenter = self._segmenter
        self.get_logger().info(
            f"configured: model {segmenter.model_id} on {segmenter.device} ({segmenter.precision}), "
            f"inputs {[c.input_topic for c in self._cameras.values()]}, "
            f"prompts {list(self._board.settings.prompts) or '[] (paused until a prompt arrives)'}"
        )
        return TransitionCallbackReturn.SUCCESS

    @startup.reported
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._worker = Worker(self._board, self._segmenter, self._cameras, self.get_logger())
        self._worker.start()
        self.update_subscriptions()
        self.get_logger().info("active: cameras subscribe while someone listens to their outputs")
        return TransitionCallbackReturn.SUCCESS

    @startup.reported
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_work()
        for camera in self._cameras.values():  # the worker is stopped: nothing else touches them
            camera.history.reset()
        self.get_logger().info("inactive: no camera subscriptions, no inference")
        return TransitionCallbackReturn.SUCCESS

    @startup.reported
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS

    @startup.reported
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._finalized = True
        return self.on_error(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_work()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def autostart(self) -> bool:
        """Configure and activate at start: the parameter, or True when it is invalid (configure then says why)."""
        if parameters.validate("autostart", self.get_parameter("autostart").value) is not None:
            return True
        return self._param("autostart")

    def finish(self) -> None:
        """The shutdown transition from whatever state the node is in (none once finalized)."""
        if not self._finalized:
            self.trigger_shutdown()

    def update_subscriptions(self) -> None:
        """Each camera subscribes while the node is active, not closing, and someone listens or a call waits."""
        worker = self._worker
        for camera in self._cameras.values():
            camera.update_subscription(worker is not None and not self.closing.is_set())
            if worker is not None and not camera.listened:
                worker.mailbox.discard(camera.name)

    def _wire(self) -> None:
        """The cameras, the prompt inputs, label_info, diagnostics, the service and the timers."""
        reliability = RELIABILITIES[self._param("qos.output_reliability")]
        out_qos = QoSProfile(depth=self._param("qos.output_depth"), reliability=reliability)
        inputs = InputSettings.read(self._param)
        for name in self._param("cameras") or [""]:
            prefix = f"{name}/" if name else ""
            self._cameras[name] = Camera(self, name, prefix, inputs, out_qos, self._on_frame, self._track_ids)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._pub_label_info = self.create_publisher(String, "~/label_info", latched)
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._service = SegmentService(
            self, self.get_logger(), self._board, self._segmenter, self._cameras, self._is_active, self.closing,
            self.update_subscriptions,
        )
        self._entities = [
            self._pub_label_info,
            self._pub_diagnostics,
            self.create_subscription(String, "~/prompt", self._on_prompt, 10),
            self.create_subscription(VisualPromptMsg, "~/visual_prompt", self._on_visual_prompt, 10),
            # Its own group: a call waiting for a camera frame leaves the default group (the camera's) free.
            self.create_service(Segment, "~/segment", self._service.answer, callback_group=ReentrantCallbackGroup()),
            self.create_timer(1.0, self._publish_diagnostics),
            self.create_timer(DEMAND_CHECK_S, self.update_subscriptions),
        ]

    def _stop_work(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        if not worker.stop(WORKER_JOIN_S):
            self.get_logger().warning(f"inference still running after {WORKER_JOIN_S} s; its result is dropped")
        self.update_subscriptions()

    def _release(self) -> None:
        for camera in self._cameras.values():
            camera.destroy()
        self._cameras.clear()
        for entity in self._entities:  # destroy_publisher, destroy_subscription, destroy_service, destroy_timer
            getattr(self, f"destroy_{type(entity).__name__.lower()}")(entity)
        self._entities = []
        self._service = None
        if self._segmenter is not None:
            self._segmenter.release()
            self._segmenter = None

    def _is_active(self) -> bool:
        return self._worker is not None

    def _param(self, name: str):
        return parameters.value(self, name)

    # -- inputs -----------------------------------------------------------------------------------

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate, and apply when all are valid (one callback: Humble has no post-set callback)."""
        reason = self._board.change({p.name: p.value for p in params}, self._param)
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
        # Announced even unchanged, so that a setter sees it took.
        if self._segmenter is not None and {p.name for p in params} & {"prompts", "threshold"}:
            self._announce_labels()
            settings = self._board.settings
            self.get_logger().info(f"prompts now {list(settings.prompts)} (threshold {settings.threshold})")
        return SetParametersResult(successful=True)

    def _on_prompt(self, msg: String) -> None:
        prompts = split_prompts(msg.data, self._board.settings.prompt_separator)
        # Through the parameter, so `ros2 param get` tells the truth and the same checks apply.
        result = self.set_parameters([Parameter("prompts", Parameter.Type.STRING_ARRAY, prompts)])[0]
        if not result.successful:
            self.get_logger().warning(f"prompt {msg.data[:200]!r} refused: {result.reason}")

    def _on_visual_prompt(self, msg: VisualPromptMsg) -> None:
        label = visual_label(msg)
        try:
            changed = self._board.set_visual_prompt(label, msg)
        except ValueError as exc:  # ImageDecodeError included
            self.get_logger().warning(f"visual prompt {label!r} ignored: {exc}", throttle_duration_sec=WARN_EVERY_S)
            return
        if changed:
            with self._board.publish_lock:  # between frames: a replaced prompt's tracks and averages end
                for camera in self._cameras.values():
                    camera.history.end_prompts([label])
            self._announce_labels()

    def _on_frame(self, frame: Frame) -> None:
        worker = self._worker
        if worker is not None and not self.closing.is_set():
            worker.mailbox.put(frame.camera, frame)

    # -- outputs of the node itself ---------------------------------------------------------------

    def _announce_labels(self) -> None:
        with self._board.publish_lock:
            self._pub_label_info.publish(String(data=label_info(self._board.prompt_set())))

    def _publish_diagnostics(self) -> None:
        prompts, discarded, worker = len(self._board.prompt_set().prompts), self._board.discarded, self._worker
        statuses = [
            camera.diagnostic_status(
                self.get_name(), self._segmenter, worker.mailbox.dropped[name] if worker else 0, prompts, discarded
            )
            for name, camera in self._cameras.items()
        ]
        self._pub_diagnostics.publish(diagnostic_array(self.get_clock().now().to_msg(), statuses))


def main(args: list[str] | None = None) -> int:
    """The node's process (`ros2 run clipseg_ros segment_node`): its exit code."""
    return run_node(SegmentNode, args)


if __name__ == "__main__":
    exit_now(main())
