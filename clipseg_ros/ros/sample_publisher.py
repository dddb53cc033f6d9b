"""A stand-in camera: scikit-image's bundled sample photos, or synthetic scenes, on `image` + `camera_info`.

The photos ship inside scikit-image (no download). With `synthetic_scenes` > 0 it publishes that many scenes of
coloured shapes instead (`clipseg_ros.train.synthetic`, seeded by `synthetic_seed`, `synthetic_size` pixels a
side): what the demo's model trained on synthetic shapes can segment. Each frame gets a fresh stamp and a
pinhole camera_info (focal length = image width, centred principal point) with the same header.
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


def sample_image(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB photo bundled with scikit-image."""
    import skimage.data  # imported here: only this helper needs it, and it takes a second to import

    if name not in SAMPLES:
        raise ValueError(f"unknown sample image {name!r}; choose from {', '.join(SAMPLES)}")
    image = getattr(skimage.data, name)()
    return np.ascontiguousarray(image[..., :3])


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
        if scenes > 0:
            names = [f"{scenes} synthetic scenes (seed {seed}, {size}x{size})"]
            images = [image for image, _ in synthetic_scenes(scenes, size, seed)]
        else:
            images = [sample_image(n) for n in names]
        self._frames = [(image, pinhole_camera_info(image.shape[1], image.shape[0])) for image in images]
        self._index = 0
        self._pub_image = self.create_publisher(Image, "image", 5)
        self._pub_info = self.create_publisher(CameraInfo, "camera_info", 5)
        self.create_timer(1.0 / rate, self._publish)
        self.get_logger().info(f"publishing {', '.join(names)} at {rate} Hz on {self.resolve_topic_name('image')}")

    def _publish(self) -> None:
        rgb, info = self._frames[self._index % len(self._frames)]
        self._index += 1
        info.header.stamp = self.get_clock().now().to_msg()
        info.header.frame_id = self._frame_id
        self._pub_info.publish(info)
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
