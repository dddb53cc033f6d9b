"""A stand-in camera: scikit-image's bundled sample photos, or synthetic scenes, on `image` + `camera_info`.

The photos ship inside scikit-image (no download). With `synthetic_scenes` > 0 it publishes that many scenes of
coloured shapes instead (`clipseg_ros.train.synthetic`, seeded by `synthetic_seed`, `synthetic_size` pixels a
side): what the demo's model trained on synthetic shapes can segment. Each frame gets a fresh stamp and a
pinhole camera_info (focal length = image width, centred principal point) with the same header.

With `depth` true it also publishes a SYNTHETIC depth image, rendered here and never measured, aligned to the colour
frame (16UC1 millimetres on `depth/image`, its camera_info on `depth/camera_info`, both with the colour frame's
header): a scene's shapes stand in front of a flat wall, the k-th shape at SHAPE_DEPTHS_M[k], drawn from the
scene generator's own masks; a photo is a flat plane at PHOTO_PLANE_M. Enough to exercise the node's 3D outputs.
"""

from __future__ import annotations

import sys

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from clipseg_ros.ros.image_codec import numpy_to_image
from clipseg_ros.train.synthetic import synthetic_scenes

# name -> what is in it (the demo's prompts come from here)
SAMPLES = {
    "coffee": "a cup of coffee on a saucer",
    "chelsea": "a cat",
    "astronaut": "an astronaut, a flag and a rocket",
}
# The synthetic depth (`depth: true`): every distance differs from the others by more than the node's default
# depth.object_depth_m (0.5 m), so a mask spilling past a shape never mixes the wall into its 3D.
SHAPE_DEPTHS_M = (0.8, 1.0, 1.2)
WALL_DEPTH_M = 2.0
PHOTO_PLANE_M = 1.5
SYNTHETIC_DEPTH_NOTE = (
    f"SYNTHETIC depth, rendered not measured: shapes at {'/'.join(f'{d:.1f}' for d in SHAPE_DEPTHS_M)} m "
    f"before a wall at {WALL_DEPTH_M:.1f} m; photos a plane at {PHOTO_PLANE_M:.1f} m"
)


def sample_image(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB photo bundled with scikit-image."""
    import skimage.data  # imported here: only this helper needs it, and it takes a second to import

    if name not in SAMPLES:
        raise ValueError(f"unknown sample image {name!r}; choose from {', '.join(SAMPLES)}")
    image = getattr(skimage.data, name)()
    return np.ascontiguousarray(image[..., :3])


def synthetic_depth(
    shape_masks: list[np.ndarray], shape: tuple[int, int], background_m: float = WALL_DEPTH_M
) -> np.ndarray:
    """(H, W) uint16 millimetres: a flat background, with the k-th mask at SHAPE_DEPTHS_M[k] (cycling) before it."""
    depth = np.full(shape, round(background_m * 1000), np.uint16)
    for k, mask in enumerate(shape_masks):
        depth[mask] = round(SHAPE_DEPTHS_M[k % len(SHAPE_DEPTHS_M)] * 1000)
    return depth


def pinhole_camera_info(width: int, height: int) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5)
    f, cx, cy = float(width), (width - 1) / 2.0, (height - 1) / 2.0
    info.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class SamplePublisher(Node):
    def __init__(self) -> None:
        super().__init__("sample_camera")
        names = self.declare_parameter(
            "images", list(SAMPLES), ParameterDescriptor(description="sample photos to cycle through")
        ).value
        rate = self.declare_parameter("rate_hz", 2.0, ParameterDescriptor(description="frames per second")).value
        self._frame_id = self.declare_parameter("frame_id", "camera").value
        scenes = self.declare_parameter(
            "synthetic_scenes", 0, ParameterDescriptor(description="publish this many shape scenes, not photos")
        ).value
        seed = self.declare_parameter("synthetic_seed", 1, ParameterDescriptor(description="their seed")).value
        size = self.declare_parameter("synthetic_size", 384, ParameterDescriptor(description="their side, px")).value
        with_depth = self.declare_parameter(
            "depth", False, ParameterDescriptor(description="also publish a synthetic (rendered) aligned depth")
        ).value
        if scenes > 0:
            names = [f"{scenes} synthetic scenes (seed {seed}, {size}x{size})"]
            frames = [(image, [mask for _, mask in shapes]) for image, shapes in synthetic_scenes(scenes, size, seed)]
        else:
            frames = [(sample_image(n), []) for n in names]
        background = WALL_DEPTH_M if scenes > 0 else PHOTO_PLANE_M
        self._frames = [
            (
                image,
                pinhole_camera_info(image.shape[1], image.shape[0]),
                synthetic_depth(masks, image.shape[:2], background) if with_depth else None,
            )
            for image, masks in frames
        ]
        self._index = 0
        self._pub_image = self.create_publisher(Image, "image", 5)
        self._pub_info = self.create_publisher(CameraInfo, "camera_info", 5)
        if with_depth:
            self._pub_depth = self.create_publisher(Image, "depth/image", 5)
            self._pub_depth_info = self.create_publisher(CameraInfo, "depth/camera_info", 5)
        self.create_timer(1.0 / rate, self._publish)
        self.get_logger().info(f"publishing {', '.join(names)} at {rate} Hz on {self.resolve_topic_name('image')}")
        if with_depth:
            self.get_logger().info(f"{SYNTHETIC_DEPTH_NOTE}, on {self.resolve_topic_name('depth/image')} (16UC1 mm)")

    def _publish(self) -> None:
        rgb, info, depth = self._frames[self._index % len(self._frames)]
        self._index += 1
        info.header.stamp = self.get_clock().now().to_msg()
        info.header.frame_id = self._frame_id
        self._pub_info.publish(info)
        if depth is not None:  # before the colour frame: the node pairs them when the colour frame is segmented
            self._pub_depth_info.publish(info)  # aligned to the colour frame: the same intrinsics and header
            self._pub_depth.publish(numpy_to_image(depth, "16UC1", info.header))
        self._pub_image.publish(numpy_to_image(rgb, "rgb8", info.header))


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = SamplePublisher()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
