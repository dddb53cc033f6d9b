"""A small synthetic dataset in the folder format: coloured shapes on textured backgrounds.

For tests and for trying the training pipeline without downloads. Each image holds two or three shapes of
different colours; each shape is annotated as "<colour> <shape>" ("red circle") and, when it sits clearly on
one side, also as "<colour> <shape> on the left/right". Written as folder_dataset.py describes, with a
train/test split by image.

    python -m clipseg_ros.train.synthetic OUT_DIR --images 400 --size 96
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from clipseg_ros.train.folder_dataset import write_annotations

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (235, 210, 40),
}
SHAPES = ("circle", "square", "triangle")


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted grey-ish texture: smooth blotches plus faint stripes, so shapes are not on a flat field."""
    base = rng.uniform(70, 170)
    blotches = cv2.resize(rng.normal(0, 25, (4, 4, 3)), (size, size), interpolation=cv2.INTER_CUBIC)
    # A scene drawn larger than 96 pixels (the demo's camera) has its stripes enlarged too: a model trained on
    # small scenes then sees the same texture once the large one is resized (smaller scenes keep 6-20 pixels).
    period, angle = rng.uniform(6, 20) * max(1.0, size / 96), rng.uniform(0, np.pi)
    y, x = np.mgrid[0:size, 0:size]
    stripes = 12 * np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period)
    image = base + blotches + stripes[..., None] + rng.normal(0, 4, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def draw_shape(shape: str, centre: tuple[int, int], radius: int, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cx, cy = centre
    if shape == "circle":
        cv2.circle(mask, centre, radius, 1, thickness=-1)
    elif shape == "square":
        side = int(radius * 0.85)
        cv2.rectangle(mask, (cx - side, cy - side), (cx + side, cy + side), 1, thickness=-1)
    else:
        points = np.array([(cx, cy - radius), (cx - radius, cy + radius * 0.8), (cx + radius, cy + radius * 0.8)])
        cv2.fillPoly(mask, [points.astype(np.int32)], 1)
    return mask.astype(bool)


def synthetic_scene(
    rng: np.random.Generator, size: int, positional: bool
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """An RGB image and its (phrase, mask) annotations."""
    image = textured_background(rng, size)
    count = int(rng.integers(2, 4))
    colours = rng.choice(list(COLOURS), size=count, replace=False)
    placed: list[tuple[int, int, int]] = []
    annotations = []
    for colour in colours:
        for _ in range(100):  # rejection sampling: shapes do not overlap
            radius = int(rng.uniform(0.13, 0.2) * size)
            cx, cy = (int(v) for v in rng.integers(radius, size - radius, 2))
            if all((cx - x) ** 2 + (cy - y) ** 2 > (radius + r + 2) ** 2 for x, y, r in placed):
                break
        else:
            continue
        placed.append((cx, cy, radius))
        shape = str(rng.choice(SHAPES))
        mask = draw_shape(shape, (cx, cy), radius, size)
        shade = np.clip(np.asarray(COLOURS[colour]) + rng.normal(0, 12, 3), 0, 255)
        image[mask] = shade.astype(np.uint8)
        phrase = f"{colour} {shape}"
        annotations.append((phrase, mask))
        if positional and abs(cx - size / 2) > size / 6:
            annotations.append((f"{phrase} on the {'left' if cx < size / 2 else 'right'}", mask))
    return image, annotations


def synthetic_scenes(
    count: int, size: int, seed: int, positional: bool = False
) -> list[tuple[np.ndarray, list[tuple[str, np.ndarray]]]]:
    """`count` scenes and their annotations, the same for the same arguments."""
    rng = np.random.default_rng(seed)
    return [synthetic_scene(rng, size, positional) for _ in range(count)]


def generate_synthetic(
    root: str | Path,
    images: int = 200,
    size: int = 96,
    seed: int = 0,
    test_fraction: float = 0.2,
    positional: bool = True,
) -> Path:
    """Write `images` scenes as a folder dataset under `root`; the last `test_fraction` are the test split."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    first_test = images - int(round(images * test_fraction))
    rows = []
    for i, (image, shapes) in enumerate(synthetic_scenes(images, size, seed, positional)):
        image_name = f"images/{i:05d}.png"
        cv2.imwrite(str(root / image_name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        for j, (phrase, mask) in enumerate(shapes):
            mask_name = f"masks/{i:05d}_{j}.png"
            cv2.imwrite(str(root / mask_name), mask.astype(np.uint8) * 255)
            split = "test" if i >= first_test else "train"
            rows.append({"image": image_name, "mask": mask_name, "phrase": phrase, "split": split})
    write_annotations(root, rows)
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write the dataset into")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--no-positional", action="store_true", help="omit 'on the left/right' phrases")
    args = parser.parse_args(argv)
    root = generate_synthetic(args.out, args.images, args.size, args.seed, args.test_fraction, not args.no_positional)
    print(f"wrote {args.images} images to {root}")


if __name__ == "__main__":
    main()
