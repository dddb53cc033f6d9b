"""The segment node: camera frames and prompts in, per-frame masks out, always on the latest frame.

Topics (node name `clipseg`, so with no namespace `~/x` is `/clipseg/x`):
  in   image (sensor_msgs/Image) or image/compressed (image_transport:=compressed), camera_info,
       ~/prompt (std_msgs/String, "cup; red mug", empty pauses), ~/visual_prompt (clipseg_ros/VisualPrompt)
  out  ~/mask (mono8 0/255, any prompt above threshold), ~/probability (32FC1, max over prompts),
       ~/label (mono8, 0 background, k = prompt k), ~/overlay (rgb8), ~/camera_info,
       ~/label_info (std_msgs/String JSON, transient local), /diagnostics
  srv  ~/segment (clipseg_ros/Segment)
Every output carries the input frame's header. Subscription callbacks only hand the frame to a
one-slot mailbox; a worker thread segments whatever is newest, so a slow model never builds a backlog.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from clipseg_ros import CheckpointError, Segmenter, VisualPrompt, limits
from clipseg_ros.msg import VisualPrompt as VisualPromptMsg
from clipseg_ros.overlay import label_colors, render_overlay
from clipseg_ros.prompts import split_prompts
from clipseg_ros.ros import parameters
from clipseg_ros.ros.diagnostics import SegmentStats, diagnostic_array
from clipseg_ros.ros.image_codec import (
    ImageDecodeError,
    compressed_to_rgb,
    image_to_rgb,
    is_empty,
    mask_to_numpy,
    numpy_to_image,
)
from clipseg_ros.ros.input_qos import MatchedSubscription
from clipseg_ros.ros.latest_frame import LatestFrameSlot
from clipseg_ros.srv import Segment

NODE_NAME = "clipseg"
EXIT_BAD_PARAMETERS = 2
EXIT_WEIGHTS_UNAVAILABLE = 3
WARN_EVERY_S = 2.0  # bad input is warned about at most this often per kind: a broken camera must not flood the log
RUNTIME_PARAMETERS = tuple(name for name, spec in parameters.SPECS.items() if not spec.read_only)


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
    overlay_enabled: bool
    overlay_alpha: float


@dataclass(frozen=True)
class Frame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() at arrival


class SegmentNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        parameters.declare(self)
        errors = parameters.startup_errors(self)
        if errors:
            raise StartupError("invalid parameters: " + "; ".join(errors), EXIT_BAD_PARAMETERS)
        self._segmenter = self._load_segmenter()
        self._settings = self._read_settings()
        self._visual_prompts: dict[str, VisualPrompt] = {}  # by label, in arrival order
        self._state_lock = threading.Lock()
        self._camera_info: CameraInfo | None = None
        self._latest_frame: Frame | None = None  # for service calls without an image
        self._slot = LatestFrameSlot()
        self._stats = SegmentStats()
        self._running = True

        out_qos = QoSProfile(
            depth=self._param("qos.output_depth"), reliability=_reliability(self._param("qos.output_reliability"))
        )
        self._pub_mask = self.create_publisher(Image, "~/mask", out_qos)
        self._pub_probability = self.create_publisher(Image, "~/probability", out_qos)
        self._pub_label = self.create_publisher(Image, "~/label", out_qos)
        self._pub_overlay = self.create_publisher(Image, "~/overlay", out_qos)
        self._pub_camera_info = self.create_publisher(CameraInfo, "~/camera_info", out_qos)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._pub_label_info = self.create_publisher(String, "~/label_info", latched)
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        depth, reliability = self._param("qos.input_depth"), self._param("qos.input_reliability")
        if self._param("image_transport") == "compressed":
            self._input = MatchedSubscription(
                self, CompressedImage, "image/compressed", self._on_frame, depth, reliability
            )
        else:
            self._input = MatchedSubscription(self, Image, "image", self._on_frame, depth, reliability)
        self._camera_info_input = MatchedSubscription(
            self, CameraInfo, "camera_info", self._on_camera_info, depth, reliability
        )
        self.create_subscription(String, "~/prompt", self._on_prompt, 10)
        self.create_subscription(VisualPromptMsg, "~/visual_prompt", self._on_visual_prompt, 10)
        # The service waits for the model while the worker uses it, so it must not hold up frame intake.
        # It lives on a companion node spun by its own single-threaded executor in a second thread:
        # rclpy's MultiThreadedExecutor costs so much Python time that on 2 cores it starved intake
        # (15-22 of 30 Hz with a 20 ms model; 30 Hz single-threaded; bench/node_latency.py).
        # No global arguments: a `__node:=` remap meant for this node must not rename the companion too.
        self.service_node = rclpy.create_node(
            f"{self.get_name()}_segment_service",
            namespace=self.get_namespace(),
            context=self.context,
            use_global_arguments=False,
        )
        self.service_node.create_service(Segment, self.resolve_service_name("~/segment"), self._on_segment)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.create_timer(1.0, self._publish_diagnostics)
        self._publish_label_info()

        self._worker = threading.Thread(target=self._work, name="clipseg-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: model {self._segmenter.model_id} on {self._segmenter.device} ({self._segmenter.precision}), "
            f"input {self._input.topic}, prompts {list(self._settings.prompts) or '[] (paused until a prompt arrives)'}"
        )

    # -- startup ----------------------------------------------------------------------------------

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _load_segmenter(self) -> Segmenter:
        weights = self._param("weights")
        self.get_logger().info(f"loading weights {weights!r}")
        try:
            segmenter = Segmenter.from_pretrained(
                weights=weights,
                device=self._param("device"),
                precision=self._param("precision"),
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
        except ValueError as exc:  # device, precision or input size the engine refuses
            raise StartupError(f"invalid parameters: {exc}", EXIT_BAD_PARAMETERS) from exc
        segmenter.warmup()  # the first frame should not pay for allocation
        return segmenter

    def _read_settings(self) -> Settings:
        return Settings(
            prompts=tuple(p.strip() for p in self._param("prompts")),
            prompt_separator=self._param("prompt_separator"),
            threshold=self._param("threshold"),
            max_rate_hz=self._param("max_rate_hz"),
            overlay_enabled=self._param("overlay.enabled"),
            overlay_alpha=self._param("overlay.alpha"),
        )

    # -- parameters -------------------------------------------------------------------------------

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        reasons = [reason for p in params if (reason := parameters.validate(p.name, p.value))]
        prompts = next((p.value for p in params if p.name == "prompts"), None)
        if prompts is not None and len(prompts) + len(self._visual_prompts) > limits.MAX_PROMPTS:
            reasons.append(f"prompts: with {len(self._visual_prompts)} visual prompts at most {limits.MAX_PROMPTS}")
        return SetParametersResult(successful=not reasons, reason="; ".join(reasons))

    def _apply_parameters(self, params: list[Parameter]) -> None:
        if not any(p.name in RUNTIME_PARAMETERS for p in params):
            return
        self._settings = self._read_settings()
        if any(p.name in ("prompts", "threshold") for p in params):
            self._publish_label_info()
            self.get_logger().info(f"prompts now {self._labels()} (threshold {self._settings.threshold})")

    # -- inputs -----------------------------------------------------------------------------------

    def _on_frame(self, msg: Image | CompressedImage) -> None:
        frame = Frame(msg, time.monotonic())
        self._stats.frame_received()
        self._latest_frame = frame
        self._slot.put(frame)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_prompt(self, msg: String) -> None:
        prompts = split_prompts(msg.data, self._settings.prompt_separator)
        # Through the parameter, so `ros2 param get` tells the truth and the same checks apply.
        result = self.set_parameters([Parameter("prompts", Parameter.Type.STRING_ARRAY, prompts)])[0]
        if not result.successful:
            self.get_logger().warning(f"prompt {msg.data!r} refused: {result.reason}")

    def _on_visual_prompt(self, msg: VisualPromptMsg) -> None:
        label = msg.label.strip() or "visual"
        if is_empty(msg.image):
            with self._state_lock:
                removed = self._visual_prompts.pop(label, None)
            if removed is not None:
                self._publish_label_info()
            return
        try:
            prompt = visual_prompt_from_msg(msg, label)
            with self._state_lock:
                if (
                    label not in self._visual_prompts
                    and len(self._settings.prompts) + len(self._visual_prompts) >= limits.MAX_PROMPTS
                ):
                    raise ValueError(f"already {limits.MAX_PROMPTS} prompts")
                self._visual_prompts[label] = prompt
        except ValueError as exc:  # ImageDecodeError included
            self.get_logger().warning(f"visual prompt {label!r} ignored: {exc}", throttle_duration_sec=WARN_EVERY_S)
            return
        self._publish_label_info()

    # -- worker: the latest frame only ------------------------------------------------------------

    def _work(self) -> None:
        next_allowed = 0.0
        while self._running:
            # Wait out the rate limit first: frames arriving meanwhile replace the waiting one.
            delay = next_allowed - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 0.1))
                continue
            frame = self._slot.take(timeout=0.1)
            if frame is None:
                continue
            rate = self._settings.max_rate_hz
            next_allowed = time.monotonic() + (1.0 / rate if rate > 0 else 0.0)
            try:
                self._segment_frame(frame)
            except Exception as exc:  # the worker must outlive any single frame
                self.get_logger().error(f"frame failed: {exc!r}", throttle_duration_sec=WARN_EVERY_S)

    def _segment_frame(self, frame: Frame) -> None:
        settings = self._settings
        prompts = self._prompts(settings)
        if not prompts:
            return  # paused
        try:
            rgb = decode_frame(frame.msg)
        except ImageDecodeError as exc:
            self._stats.frame_rejected()
            self.get_logger().warning(f"frame dropped: {exc}", throttle_duration_sec=WARN_EVERY_S)
            return
        started = time.monotonic()
        result = self._segmenter.segment(rgb, prompts, settings.threshold)
        inference_s = time.monotonic() - started
        self._publish(frame.msg.header, rgb, result, settings)
        self._stats.frame_processed(inference_s, age_s=time.monotonic() - frame.received)

    def _publish(self, header, rgb: np.ndarray, result, settings: Settings) -> None:
        # Encoding costs milliseconds per output at camera sizes: skip the topics nobody reads.
        if self._pub_mask.get_subscription_count():
            mask = np.where(result.masks.any(axis=0), 255, 0).astype(np.uint8)
            self._pub_mask.publish(numpy_to_image(mask, "mono8", header))
        if self._pub_probability.get_subscription_count():
            self._pub_probability.publish(numpy_to_image(result.probabilities.max(axis=0), "32FC1", header))
        needs_labels = self._pub_label.get_subscription_count() or (
            settings.overlay_enabled and self._pub_overlay.get_subscription_count()
        )
        if needs_labels:
            labels = result.label_image()
            if self._pub_label.get_subscription_count():
                self._pub_label.publish(numpy_to_image(labels, "mono8", header))
            if settings.overlay_enabled and self._pub_overlay.get_subscription_count():
                image = render_overlay(rgb, labels, result.labels, settings.overlay_alpha)
                self._pub_overlay.publish(numpy_to_image(image, "rgb8", header))
        camera_info = self._camera_info
        if camera_info is not None:
            # Same size as the frame (outputs are not resized): the camera's own info, with the frame's header.
            info = CameraInfo()
            for field in CameraInfo.get_fields_and_field_types():
                setattr(info, field, getattr(camera_info, field))
            info.header = header
            self._pub_camera_info.publish(info)

    # -- service ----------------------------------------------------------------------------------

    def _on_segment(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        settings = self._settings
        try:
            if is_empty(request.image):
                frame = self._latest_frame
                if frame is None:
                    raise ValueError(f"no image in the request and no frame yet on {self._input.topic}")
                header, rgb = frame.msg.header, decode_frame(frame.msg)
            else:
                header, rgb = request.image.header, image_to_rgb(request.image)
            prompts: list[str | VisualPrompt] = list(request.prompts)
            for i, msg in enumerate(request.visual_prompts):
                prompts.append(visual_prompt_from_msg(msg, msg.label.strip() or f"visual {i + 1}"))
            if not prompts:
                prompts = self._prompts(settings)
            if not prompts:
                raise ValueError("no prompts in the request and none set on the node")
            threshold = request.threshold if request.threshold > 0 else settings.threshold
            if threshold >= 1.0:
                raise ValueError(f"threshold must be below 1, got {threshold}")
            result = self._segmenter.segment(rgb, prompts, threshold)
        except ValueError as exc:  # bad image, prompt or visual prompt: the caller learns why
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
        response.masks = [numpy_to_image(np.where(m, 255, 0).astype(np.uint8), "mono8", header) for m in result.masks]
        response.probabilities = [numpy_to_image(p, "32FC1", header) for p in result.probabilities]
        response.scores = [float(s) for s in result.scores]
        response.message = ", ".join(f"{label}: {s:.2f}" for label, s in zip(result.labels, result.scores, strict=True))
        return response

    # -- prompts, label info, diagnostics ---------------------------------------------------------

    def _prompts(self, settings: Settings) -> list[str | VisualPrompt]:
        with self._state_lock:
            return [*settings.prompts, *self._visual_prompts.values()]

    def _labels(self) -> list[str]:
        with self._state_lock:
            return [*self._settings.prompts, *self._visual_prompts]

    def _publish_label_info(self) -> None:
        labels = self._labels()
        info = {
            "labels": ["background", *labels],  # index = value in ~/label
            "colors": [[0, 0, 0], *label_colors(len(labels)).tolist()],  # RGB in ~/overlay
            "threshold": self._settings.threshold,
        }
        self._pub_label_info.publish(String(data=json.dumps(info)))

    def _publish_diagnostics(self) -> None:
        settings = self._settings
        prompts = len(self._prompts(settings))
        status = self._stats.status(
            name=f"{self.get_name()}: segmentation",
            hardware_id=str(self._segmenter.device),
            model=self._segmenter.model_id,
            dropped=self._slot.dropped,
            cache=self._segmenter.cache_stats(),
            prompts=prompts,
            paused=prompts == 0,
        )
        self._pub_diagnostics.publish(diagnostic_array(self.get_clock().now().to_msg(), status))

    def close(self) -> None:
        self._running = False
        self._slot.close()
        self._worker.join(timeout=5.0)


def decode_frame(msg: Image | CompressedImage) -> np.ndarray:
    return compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)


def visual_prompt_from_msg(msg: VisualPromptMsg, label: str) -> VisualPrompt:
    """Raises ValueError (or ImageDecodeError) saying what is wrong with the message."""
    image = image_to_rgb(msg.image)
    mask = mask_to_numpy(msg.mask)
    if mask.shape != image.shape[:2]:
        raise ImageDecodeError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {image.shape[1]}x{image.shape[0]}"
        )
    return VisualPrompt(image=image, mask=mask, text=msg.text, text_weight=float(msg.text_weight), label=label)


def _reliability(name: str) -> ReliabilityPolicy:
    return ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT


def _spin_quietly(executor: SingleThreadedExecutor) -> None:
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or shutdown: the normal end


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    try:
        node = SegmentNode()
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        rclpy.try_shutdown()
        return exc.exit_code
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    service_executor = SingleThreadedExecutor()
    service_executor.add_node(node.service_node)
    service_thread = threading.Thread(target=_spin_quietly, args=(service_executor,), name="clipseg-service")
    service_thread.start()
    try:
        _spin_quietly(executor)
    finally:
        service_executor.shutdown()
        service_thread.join(timeout=5.0)
        node.close()
        node.service_node.destroy_node()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
