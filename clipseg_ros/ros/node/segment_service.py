"""The ~/segment service (clipseg_ros/Segment): a request in, a response out, on the node's model and prompts.

A request with an image is segmented as it is. Without one, the camera's newest frame is used; a camera that
is idle (nobody listens to its outputs) is asked for its next frame: it subscribes through its own
subscription, QoS matched to its publishers as for a listener, the call waits for the next frame it
receives (at most SERVICE_FRAME_WAIT_S), and the camera unsubscribes again at its next demand check when
still nobody listens. The callback is a coroutine: while it waits, the executor runs the camera's
subscription (the service has a callback group of its own, so the node's default group stays free), and
other calls, lifecycle transitions and parameter changes go on. The model then runs in the executor's thread
(one caller at a time with the worker, by the engine's lock). Whatever fails is the response's message, never
an exception out of the callback; after a signal, calls are refused with SHUTTING_DOWN.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.node import Node
from std_msgs.msg import Header

from clipseg_ros.engine.frame_maps import FrameMaps, published_maps
from clipseg_ros.engine.segmenter import Segmenter
from clipseg_ros.perception import Perception
from clipseg_ros.perception.camera_history import untracked
from clipseg_ros.perception.tracking import TrackedInstance
from clipseg_ros.ros.image_codec import image_to_rgb, is_empty, mask_to_image, numpy_to_image
from clipseg_ros.ros.messages import instance_messages
from clipseg_ros.ros.node.camera import Camera, Frame, perceive_result
from clipseg_ros.ros.node.depth_sync import depth_from_messages
from clipseg_ros.ros.node.frame_outputs import stamp_seconds
from clipseg_ros.ros.node.prompt_board import PromptBoard
from clipseg_ros.srv import Segment

SERVICE_FRAME_WAIT_S = 2.0  # a call without an image waits this long for the next frame of an idle camera
SHUTTING_DOWN = "the node is shutting down"  # what service calls get after a signal
NOT_ACTIVE = "the node is not active: activate it (lifecycle) before calling"


class SegmentService:
    def __init__(
        self,
        node: Node,
        logger: RcutilsLogger,
        board: PromptBoard,
        segmenter: Segmenter,
        cameras: Mapping[str, Camera],
        active: Callable[[], bool],
        closing: threading.Event,
        update_subscriptions: Callable[[], None],
    ) -> None:
        """`node`: where timers are made; `logger`: the node's; `active()`: whether the node is active;
        `update_subscriptions()`: the cameras look at who waits."""
        self._node, self._log, self._board, self._segmenter, self._cameras = node, logger, board, segmenter, cameras
        self._active, self._closing, self._update_subscriptions = active, closing, update_subscriptions
        self.last_answer = 0.0  # time.monotonic() of the last answer

    async def answer(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        """The service callback."""
        self._log.debug(f"segment call: {len(request.prompts)} prompts, camera {request.camera!r}")
        response = await self._answer(request, response)
        if self._closing.is_set() and response.success:
            # A full answer is megabytes that would still be in transit when the node is destroyed, and lost
            # under load; a short refusal arrives.
            response = Segment.Response(success=False, message=SHUTTING_DOWN)
        self.last_answer = time.monotonic()
        return response

    async def _answer(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        try:
            self._check_open()
            frame = await self._camera_frame(request.camera) if is_empty(request.image) else None
            return self._segment(request, response, frame)
        except ValueError as exc:  # bad image, prompt, visual prompt, threshold or depth: the caller learns why
            response.success = False
            response.message = str(exc)
            return response
        except Exception as exc:  # e.g. out of GPU memory on a huge image: fail the call, not the node
            self._log.error(f"segment service failed: {exc!r}")
            response.success = False
            response.message = f"internal error: {exc!r}"
            return response

    def _check_open(self) -> None:
        if self._closing.is_set():
            raise ValueError(SHUTTING_DOWN)
        if not self._active():
            raise ValueError(NOT_ACTIVE)

    async def _camera_frame(self, name: str) -> Frame:
        """The camera's newest frame, or the next one it receives when it is idle."""
        camera = self._cameras.get(name or next(iter(self._cameras)))
        if camera is None:
            raise ValueError(f"no camera {name!r}; cameras: {', '.join(self._cameras)}")
        if camera.latest is not None:
            return camera.latest
        request = camera.request_frame()
        self._update_subscriptions()
        timer = self._node.create_timer(SERVICE_FRAME_WAIT_S, partial(camera.drop_frame_request, request))
        try:
            frame = await request
        finally:
            self._node.destroy_timer(timer)
            camera.drop_frame_request(request)
        self._check_open()  # deactivated or signalled while the call waited: that is the answer
        if frame is None:
            raise ValueError(
                f"no image in the request and no frame within {SERVICE_FRAME_WAIT_S} s on {camera.input_topic}"
            )
        return frame

    def _segment(self, request: Segment.Request, response: Segment.Response, frame: Frame | None) -> Segment.Response:
        settings = self._board.settings
        if frame is not None:
            header, rgb = frame.msg.header, frame.decode(settings.max_image_pixels)
        else:
            header = request.image.header
            rgb = image_to_rgb(request.image, max_pixels=settings.max_image_pixels)
        prompts = self._board.request_prompts(request.prompts, request.visual_prompts)
        threshold = request.threshold if request.threshold > 0 else settings.threshold
        result = self._segmenter.segment(rgb, prompts, threshold)
        maps = published_maps(result.labels, result.probabilities, result.masks, result.threshold)
        perception = self._perceive(request, frame, header, maps)
        tracked = untracked(perception.instances)
        if frame is not None:  # the ids of that frame's tracks if it is its camera's last one tracked
            with self._board.publish_lock:
                tracked = self._cameras[frame.camera].history.tracks_for(stamp_seconds(header), perception.instances)
        return fill_response(response, header, maps, perception, tracked)

    def _perceive(self, request: Segment.Request, frame: Frame | None, header: Header, result: FrameMaps) -> Perception:
        """Instances of a result: with the request's depth, else (for a camera frame) the depth paired with that
        frame."""
        settings = self._board.settings.outputs.perception
        camera_info = request.camera_info if request.camera_info.width else None
        depth = None
        if not is_empty(request.depth):
            depth_info = request.depth_camera_info if request.depth_camera_info.width else request.camera_info
            depth = depth_from_messages(request.depth, depth_info)
        if frame is not None:
            return self._cameras[frame.camera].perceive(header, result, settings, depth, camera_info)
        return perceive_result(result, settings, depth, camera_info)


def fill_response(
    response: Segment.Response,
    header: Header,
    result: FrameMaps,
    perception: Perception,
    tracked: Sequence[TrackedInstance],
) -> Segment.Response:
    """A successful response: per-prompt masks, probabilities and scores, instances (`tracked`: perception's with
    their tracks), all with `header`."""
    response.success = True
    response.header = header
    response.labels = list(result.labels)
    response.masks = [mask_to_image(m, header) for m in result.masks]
    response.probabilities = [numpy_to_image(p, "32FC1", header) for p in result.probabilities]
    response.scores = [float(s) for s in result.scores]
    response.instances = instance_messages(header, tracked)
    response.has_depth = perception.has_depth
    response.message = ", ".join(f"{label}: {s:.2f}" for label, s in zip(result.labels, result.scores, strict=True))
    return response
