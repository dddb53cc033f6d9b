"""The segment node: a lifecycle node that wires cameras and prompts to the engine, newest frames only.

Lifecycle (managed node, as Nav2 and yolo_ros): configure loads the weights and creates the publishers,
the prompt inputs and the service; activate starts the worker and lets the cameras subscribe; deactivate
stops all work and every camera subscription; cleanup frees the model; shutdown works from any state.
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
Every output carries the input frame's header. Subscription callbacks only hand frames to a mailbox;
one worker thread segments the newest frame of every camera in one batch, so a slow model never
builds a backlog and no camera starves another.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.service import Service
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from rclpy.wait_for_message import wait_for_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from clipseg_ros import CheckpointError, Segmenter, VisualPrompt, limits
from clipseg_ros.backends import BackendUnavailable
from clipseg_ros.msg import VisualPrompt as VisualPromptMsg
from clipseg_ros.overlay import label_colors
from clipseg_ros.perception import Perception, PerceptionSettings
from clipseg_ros.prompts import split_prompts
from clipseg_ros.ros import parameters
from clipseg_ros.ros.camera import Camera, Frame, InputSettings, OutputSettings, perceive_result
from clipseg_ros.ros.depth_sync import depth_from_messages
from clipseg_ros.ros.diagnostics import diagnostic_array
from clipseg_ros.ros.frame_mailbox import FrameMailbox
from clipseg_ros.ros.image_codec import (
    ImageDecodeError,
    image_to_rgb,
    is_empty,
    mask_to_image,
    mask_to_numpy,
    numpy_to_image,
)
from clipseg_ros.ros.messages import instance_messages
from clipseg_ros.srv import Segment

NODE_NAME = "clipseg"
EXIT_BAD_PARAMETERS = 2
EXIT_WEIGHTS_UNAVAILABLE = 3
WARN_EVERY_S = 2.0  # bad input is warned about at most this often per kind: a broken camera must not flood the log
DEMAND_CHECK_S = 0.5  # how often cameras look for listeners (subscribe on demand)
SERVICE_FRAME_WAIT_S = 2.0  # a service call without an image waits this long for a frame of an idle camera
WORKER_JOIN_S = 1.5  # deactivation waits this long for the frame in flight
# After a signal, calls already received are answered (refused) for at least this long, and the last answer
# gets this much time to leave before the node is destroyed, up to a bound.
CLOSING_DRAIN_S = (0.2, 0.1, 0.6)
SHUTTING_DOWN = "the node is shutting down"  # what service calls get after a signal


class StartupError(RuntimeError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Settings:
    """The runtime-changeable parameters, replaced as a whole so the worker reads a consistent set."""

    prompts: tuple[str, ...]
    prompt_separator: str
    threshold: float
    max_rate_hz: float
    max_image_pixels: int
    outputs: OutputSettings

    @classmethod
    def read(cls, value) -> Settings:
        """From the parameters (`value(name)`); ValueError when they do not fit together (depth range)."""
        perception = PerceptionSettings(
            min_area=value("instances.min_area"),
            depth_min_m=value("depth.min_m"),
            depth_max_m=value("depth.max_m"),
            min_points=value("depth.min_points"),
            object_depth_m=value("depth.object_depth_m"),
            point_stride=value("points.stride"),
            point_labels=tuple(value("points.prompts")),
        )
        return cls(
            prompts=tuple(p.strip() for p in value("prompts")),
            prompt_separator=value("prompt_separator"),
            threshold=value("threshold"),
            max_rate_hz=value("max_rate_hz"),
            max_image_pixels=value("max_image_pixels"),
            outputs=OutputSettings(
                overlay_alpha=value("overlay.alpha") if value("overlay.enabled") else None,
                perception=perception,
                with_probabilities=value("segmentation.probabilities"),
            ),
        )


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one moment, with the settings of that moment; `generation` changes with the label set."""

    generation: int
    prompts: tuple[str | VisualPrompt, ...]
    labels: tuple[str, ...]
    settings: Settings


class SegmentNode(LifecycleNode):
    def __init__(self, closing: threading.Event | None = None, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        parameters.declare(self)
        self.failure: StartupError | None = None  # why the last configure failed
        self._segmenter: Segmenter | None = None
        self._settings: Settings | None = None
        self._cameras: dict[str, Camera] = {}
        self._visual_prompts: dict[str, VisualPrompt] = {}  # by label, in arrival order
        self._generation = 0
        self._state_lock = threading.Lock()  # prompts, visual prompts and their generation
        # Held while outputs of one prompt generation are published and while label_info announces a new
        # one: no output computed with superseded prompts is published after the new label set.
        self._publish_lock = threading.Lock()
        self._discarded = 0  # results computed with superseded prompts, never published
        self._mailbox: FrameMailbox | None = None
        self._worker: threading.Thread | None = None
        self._active = False
        self._entities: list = []  # what configure created and cleanup destroys
        self._finalized = False
        # Set on SIGINT/SIGTERM: the call being computed and calls still arriving are answered with a refusal.
        self.closing = closing or threading.Event()
        self.last_answer = 0.0  # time.monotonic() of the last service answer
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # -- lifecycle --------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.failure = None
        try:
            errors = parameters.startup_errors(self)
            if errors:
                raise StartupError("invalid parameters: " + "; ".join(errors), EXIT_BAD_PARAMETERS)
            try:
                self._settings = Settings.read(self._param)
            except ValueError as exc:
                raise StartupError(f"invalid parameters: {exc}", EXIT_BAD_PARAMETERS) from exc
            self._segmenter = self._load_segmenter()
        except StartupError as exc:
            self.failure = exc
            self.get_logger().fatal(str(exc))
            return TransitionCallbackReturn.FAILURE
        out_qos = QoSProfile(
            depth=self._param("qos.output_depth"), reliability=_reliability(self._param("qos.output_reliability"))
        )
        inputs = InputSettings(
            compressed=self._param("image_transport") == "compressed",
            depth=self._param("qos.input_depth"),
            reliability=self._param("qos.input_reliability"),
            depth_sync_s=self._param("depth.sync_tolerance_s") if self._param("depth.enabled") else None,
        )
        names = self._param("cameras")
        for name in names or [""]:
            self._cameras[name] = Camera(self, name, f"{name}/" if name else "", inputs, out_qos, self._on_frame)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._pub_label_info = self.create_publisher(String, "~/label_info", latched)
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._entities = [
            self._pub_label_info,
            self._pub_diagnostics,
            self.create_subscription(String, "~/prompt", self._on_prompt, 10),
            self.create_subscription(VisualPromptMsg, "~/visual_prompt", self._on_visual_prompt, 10),
            self.create_service(Segment, "~/segment", self._on_segment),
            self.create_timer(1.0, self._publish_diagnostics),
            self.create_timer(DEMAND_CHECK_S, self._update_subscriptions),
        ]
        self._announce_labels()
        segmenter = self._segmenter
        self.get_logger().info(
            f"configured: model {segmenter.model_id} on {segmenter.device} ({segmenter.precision}), "
            f"inputs {[c.input_topic for c in self._cameras.values()]}, "
            f"prompts {list(self._settings.prompts) or '[] (paused until a prompt arrives)'}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._mailbox = FrameMailbox()
        self._active = True
        self._worker = threading.Thread(target=self._work, args=(self._mailbox,), name="clipseg-inference")
        self._worker.start()
        self._update_subscriptions()
        self.get_logger().info("active: cameras subscribe while someone listens to their outputs")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_work()
        self.get_logger().info("inactive: no camera subscriptions, no inference")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._finalized = True
        self._stop_work()
        self._release()
        return TransitionCallbackReturn.SUCCESS

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

    def _stop_work(self) -> None:
        if self._mailbox is None:
            return
        with self._publish_lock:  # the frame in flight publishes nothing more
            self._active = False
        self._mailbox.close()
        self._worker.join(timeout=WORKER_JOIN_S)
        if self._worker.is_alive():
            self.get_logger().warning(f"inference still running after {WORKER_JOIN_S} s; its result is dropped")
        self._mailbox = self._worker = None
        self._update_subscriptions()

    def _release(self) -> None:
        for camera in self._cameras.values():
            camera.destroy()
        self._cameras.clear()
        for entity in self._entities:
            self._destroy(entity)
        self._entities = []
        if self._segmenter is not None:
            self._segmenter.release()
            self._segmenter = None

    def _destroy(self, entity) -> None:
        if isinstance(entity, Publisher):
            self.destroy_publisher(entity)
        elif isinstance(entity, Subscription):
            self.destroy_subscription(entity)
        elif isinstance(entity, Service):
            self.destroy_service(entity)
        else:
            self.destroy_timer(entity)

    # -- startup ----------------------------------------------------------------------------------

    def _param(self, name: str):
        return parameters.value(self, name)

    def _load_segmenter(self) -> Segmenter:
        weights = self._param("weights")
        self.get_logger().info(f"loading weights {weights!r}")
        try:
            segmenter = Segmenter.from_pretrained(
                weights=weights,
                device=self._param("device"),
                precision=self._param("precision"),
                backend=self._param("backend"),
                input_size=tuple(self._param("input_size")),
                cache_size=self._param("cache_size"),
            )
        except CheckpointError as exc:
            raise StartupError(
                f"cannot load weights {weights!r}: {exc}\nGive a local checkpoint directory (config.json + "
                "model.safetensors) or file with `--ros-args -p weights:=/path/to/weights`, or `weights:=` in "
                "the params file.",
                EXIT_WEIGHTS_UNAVAILABLE,
            ) from exc
        except (ValueError, BackendUnavailable) as exc:  # device, precision, size or backend the engine refuses
            raise StartupError(f"invalid parameters: {exc}", EXIT_BAD_PARAMETERS) from exc
        segmenter.warmup()  # the first frame should not pay for allocation
        return segmenter

    # -- parameters -------------------------------------------------------------------------------

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate, and apply when all are valid (one callback: Humble has no post-set callback)."""
        reasons = [reason for p in params if (reason := parameters.validate(p.name, p.value))]
        if reasons:
            return SetParametersResult(successful=False, reason="; ".join(reasons))
        incoming = {p.name: parameters.coerce(p.name, p.value) for p in params if p.name in parameters.RUNTIME}
        with self._state_lock:
            visual = len(self._visual_prompts)
        if len(incoming.get("prompts", ())) + visual > limits.MAX_PROMPTS:
            reason = f"prompts: with {visual} visual prompts at most {limits.MAX_PROMPTS}"
            return SetParametersResult(successful=False, reason=reason)
        if not incoming or self._settings is None:
            return SetParametersResult(successful=True)
        try:
            settings = Settings.read(lambda name: incoming[name] if name in incoming else self._param(name))
        except ValueError as exc:  # values valid alone but not together
            return SetParametersResult(successful=False, reason=str(exc))
        changed = settings.prompts != self._settings.prompts or settings.threshold != self._settings.threshold
        with self._state_lock:
            self._settings = settings
            self._generation += changed
        if "prompts" in incoming or "threshold" in incoming:  # announced even unchanged: a setter sees it took
            self._announce_labels()
            self.get_logger().info(f"prompts now {list(settings.prompts)} (threshold {settings.threshold})")
        return SetParametersResult(successful=True)

    # -- inputs -----------------------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        mailbox = self._mailbox
        if mailbox is not None and not self.closing.is_set():
            mailbox.put(frame.camera, frame)

    def _update_subscriptions(self) -> None:
        for camera in self._cameras.values():
            if camera.update_subscription(self._active) and not camera.subscribed and self._mailbox is not None:
                self._mailbox.discard(camera.name)

    def _on_prompt(self, msg: String) -> None:
        prompts = split_prompts(msg.data, self._settings.prompt_separator)
        # Through the parameter, so `ros2 param get` tells the truth and the same checks apply.
        result = self.set_parameters([Parameter("prompts", Parameter.Type.STRING_ARRAY, prompts)])[0]
        if not result.successful:
            self.get_logger().warning(f"prompt {msg.data[:200]!r} refused: {result.reason}")

    def _on_visual_prompt(self, msg: VisualPromptMsg) -> None:
        label = msg.label.strip() or "visual"
        try:
            # Decoded before taking the lock: the worker needs it for every frame.
            max_pixels = self._settings.max_image_pixels
            prompt = None if is_empty(msg.image) else visual_prompt_from_msg(msg, label, max_pixels)
            with self._state_lock:
                if prompt is None:
                    if self._visual_prompts.pop(label, None) is None:
                        return
                else:
                    count = len(self._settings.prompts) + len(self._visual_prompts)
                    if label not in self._visual_prompts and count >= limits.MAX_PROMPTS:
                        raise ValueError(f"already {limits.MAX_PROMPTS} prompts")
                    self._visual_prompts[label] = prompt
                self._generation += 1
        except ValueError as exc:  # ImageDecodeError included
            self.get_logger().warning(f"visual prompt {label!r} ignored: {exc}", throttle_duration_sec=WARN_EVERY_S)
            return
        self._announce_labels()

    # -- worker: the newest frame of each camera --------------------------------------------------

    def _work(self, mailbox: FrameMailbox) -> None:
        last_start: float | None = None
        while not mailbox.closed:
            # The rate limit is read afresh on every pass, so a change applies to the next frame; frames
            # arriving while it is waited out replace each other in the mailbox.
            rate = self._settings.max_rate_hz
            delay = last_start + 1.0 / rate - time.monotonic() if rate > 0 and last_start is not None else 0.0
            if delay > 0:
                time.sleep(min(delay, 0.1))
                continue
            batch = mailbox.take(timeout=0.1)
            if not batch or mailbox.closed:
                continue
            last_start = time.monotonic()
            try:
                self._segment(batch)
            except Exception as exc:  # the worker must outlive any single frame
                if self._active:
                    self.get_logger().error(f"frame failed: {exc!r}", throttle_duration_sec=WARN_EVERY_S)

    def _segment(self, batch: dict[str, Frame]) -> None:
        prompt_set = self._prompt_set()
        settings = prompt_set.settings
        if not prompt_set.prompts:
            return  # paused
        frames, images = [], []
        for name, frame in batch.items():
            camera = self._cameras.get(name)
            if camera is None or not camera.subscribed:
                continue  # its listeners left while the frame waited
            try:
                images.append(frame.decode(settings.max_image_pixels))
            except ImageDecodeError as exc:
                camera.stats.frame_rejected()
                self.get_logger().warning(f"frame dropped: {exc}", throttle_duration_sec=WARN_EVERY_S)
                continue
            frames.append(frame)
        if not frames:
            return
        started = time.monotonic()
        results = self._segmenter.segment_batch(images, prompt_set.prompts, settings.threshold)
        inference_s = time.monotonic() - started
        for frame in frames:  # outside the publish lock: a prompt change is not held up by a late depth frame
            self._cameras[frame.camera].await_depth(frame.msg.header)
        with self._publish_lock:
            if not self._active:
                return
            if prompt_set.generation != self._generation:
                self._discarded += len(results)
                return
            for frame, rgb, result in zip(frames, images, results, strict=True):
                camera = self._cameras[frame.camera]
                camera.publish(frame.msg.header, rgb, result, settings.outputs)
                camera.stats.frame_processed(inference_s, age_s=time.monotonic() - frame.received)

    # -- service ----------------------------------------------------------------------------------

    def _on_segment(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        """Runs the model in the executor's thread (one caller at a time with the worker, by the engine's lock)."""
        response = self._answer(request, response)
        if self.closing.is_set() and response.success:
            # A full answer is megabytes that would still be in transit when the node is destroyed, and lost
            # under load; a short refusal arrives.
            response = Segment.Response(success=False, message=SHUTTING_DOWN)
        self.last_answer = time.monotonic()
        return response

    def _answer(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        try:
            if self.closing.is_set():
                raise ValueError(SHUTTING_DOWN)
            if not self._active:
                raise ValueError("the node is not active: activate it (lifecycle) before calling")
            settings = self._settings
            frame = None
            if is_empty(request.image):
                frame = self._latest_frame(request.camera)
                header, rgb = frame.msg.header, frame.decode(settings.max_image_pixels)
            else:
                header = request.image.header
                rgb = image_to_rgb(request.image, max_pixels=settings.max_image_pixels)
            prompts: list[str | VisualPrompt] = list(request.prompts)
            for i, msg in enumerate(request.visual_prompts):
                label = msg.label.strip() or f"visual {i + 1}"
                prompts.append(visual_prompt_from_msg(msg, label, settings.max_image_pixels))
            if not prompts:
                prompts = list(self._prompt_set().prompts)
            if not prompts:
                raise ValueError("no prompts in the request and none set on the node")
            threshold = request.threshold if request.threshold > 0 else settings.threshold
            result = self._segmenter.segment(rgb, prompts, threshold)
            perception = self._perceive_request(request, frame, header, result, settings)
        except ValueError as exc:  # bad image, prompt, visual prompt, threshold or depth: the caller learns why
            response.success = False
            response.message = str(exc)
            return response
        except Exception as exc:  # e.g. out of GPU memory on a huge image: fail the call, not the node
            self.get_logger().error(f"segment service failed: {exc!r}")
            response.success = False
            response.message = f"internal error: {exc!r}"
            return response
        response.success = True
        response.header = header
        response.labels = list(result.labels)
        response.masks = [mask_to_image(m, header) for m in result.masks]
        response.probabilities = [numpy_to_image(p, "32FC1", header) for p in result.probabilities]
        response.scores = [float(s) for s in result.scores]
        response.instances = instance_messages(header, perception.instances)
        response.has_depth = perception.has_depth
        response.message = ", ".join(f"{label}: {s:.2f}" for label, s in zip(result.labels, result.scores, strict=True))
        return response

    def _perceive_request(self, request, frame: Frame | None, header, result, settings: Settings) -> Perception:
        """Instances of a service result: with the request's depth, else (for a camera frame) the depth paired
        with that frame."""
        camera_info = request.camera_info if request.camera_info.width else None
        depth = None
        if not is_empty(request.depth):
            depth_info = request.depth_camera_info if request.depth_camera_info.width else request.camera_info
            depth = depth_from_messages(request.depth, depth_info)
        if frame is not None:
            return self._cameras[frame.camera].perceive(header, result, settings.outputs.perception, depth, camera_info)
        return perceive_result(result, settings.outputs.perception, depth, camera_info)

    def _latest_frame(self, name: str) -> Frame:
        """The camera's newest frame; an idle camera (nobody listening) is asked for its next one."""
        camera = self._cameras.get(name or next(iter(self._cameras)))
        if camera is None:
            raise ValueError(f"no camera {name!r}; cameras: {', '.join(self._cameras)}")
        if camera.latest is not None:
            return camera.latest
        msg_type = CompressedImage if camera.compressed else Image
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)  # hears any publisher
        ok, msg = wait_for_message(
            msg_type, self, camera.input_topic, qos_profile=qos, time_to_wait=SERVICE_FRAME_WAIT_S
        )
        if not ok:
            raise ValueError(
                f"no image in the request and no frame within {SERVICE_FRAME_WAIT_S} s on {camera.input_topic}"
            )
        return Frame(camera.name, msg, time.monotonic())

    # -- prompts, label info, diagnostics ---------------------------------------------------------

    def _prompt_set(self) -> PromptSet:
        with self._state_lock:
            return PromptSet(
                self._generation,
                (*self._settings.prompts, *self._visual_prompts.values()),
                (*self._settings.prompts, *self._visual_prompts),
                self._settings,
            )

    def _announce_labels(self) -> None:
        with self._publish_lock:
            prompt_set = self._prompt_set()
            info = {
                "labels": ["background", *prompt_set.labels],  # index = value in ~/label
                "colors": [[0, 0, 0], *label_colors(len(prompt_set.labels)).tolist()],  # RGB in ~/overlay
                "threshold": prompt_set.settings.threshold,
            }
            self._pub_label_info.publish(String(data=json.dumps(info)))

    def _publish_diagnostics(self) -> None:
        prompts = len(self._prompt_set().prompts)
        mailbox = self._mailbox
        statuses = [
            camera.stats.status(
                name=f"{self.get_name()}: {camera.name + ' ' if camera.name else ''}segmentation",
                hardware_id=str(self._segmenter.device),
                model=self._segmenter.model_id,
                dropped=mailbox.dropped[camera.name] if mailbox is not None else 0,
                cache=self._segmenter.cache_stats(),
                prompts=prompts,
                paused=prompts == 0,
                listening=camera.subscribed,
                extra={
                    "input_topic": camera.input_topic,
                    "subscribed": str(camera.subscribed).lower(),
                    "idle_no_listeners_s": f"{camera.idle_seconds():.1f}",
                    "results_discarded_superseded_prompts": str(self._discarded),
                },
            )
            for camera in self._cameras.values()
        ]
        self._pub_diagnostics.publish(diagnostic_array(self.get_clock().now().to_msg(), statuses))


def visual_prompt_from_msg(msg: VisualPromptMsg, label: str, max_pixels: int) -> VisualPrompt:
    """Raises ValueError (or ImageDecodeError) saying what is wrong with the message."""
    image = image_to_rgb(msg.image, max_pixels=max_pixels)
    mask = mask_to_numpy(msg.mask)
    if mask.shape != image.shape[:2]:
        raise ImageDecodeError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {image.shape[1]}x{image.shape[0]}"
        )
    return VisualPrompt(image=image, mask=mask, text=msg.text, text_weight=float(msg.text_weight), label=label)


def _reliability(name: str) -> ReliabilityPolicy:
    return ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT


def main(args: list[str] | None = None) -> int:
    # Our own SIGINT/SIGTERM handling: rclpy's would invalidate the context under the worker's feet (publishing
    # into a dead context) before the node has stopped its work and answered what is in flight.
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # malformed --ros-args (e.g. a list of mixed types): say so, no traceback
        print(f"[FATAL] [{NODE_NAME}]: invalid arguments: {exc}", file=sys.stderr)
        return EXIT_BAD_PARAMETERS
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = SegmentNode(closing=stop)
    try:
        if node.autostart():
            node.trigger_configure()
            if node.failure is not None:
                return node.failure.exit_code
            node.trigger_activate()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set():
            # A bounded wait, so that the signal flag is seen even when nothing else happens.
            executor.spin_once(timeout_sec=0.2)
        # Calls that reached the node but not its service callback yet get an answer, not silence.
        least, linger, most = CLOSING_DRAIN_S
        started = time.monotonic()
        while (now := time.monotonic()) < started + most and (now < started + least or now < node.last_answer + linger):
            executor.spin_once(timeout_sec=0.02)
        executor.remove_node(node)
    finally:
        node.finish()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def exit_now(code: int) -> None:
    """End the process once main() has closed everything: skipping the interpreter's teardown of torch's
    modules (about 1.5 s here) is what lets the node exit within 2 s of a signal."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
