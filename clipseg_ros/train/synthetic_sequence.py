"""Moving shapes with true identities: the ground truth trackers are scored against.

The training scenes' coloured shapes (`synthetic.py`, what the demo's model learnt) as flat cards facing a camera,
moving in 3D in front of a wall: with constant and with changing velocity, two of each prompt crossing each other
at different depths (the nearer occludes the farther), leaving the view and coming back. Every frame has its RGB
image, its depth in metres, its stamp and each visible object's true id, prompt, visible mask and 3D position
(camera optical frame: x right, y down, z forward). No object is out of sight (occluded or out of the view) for
more than `max_gap_frames` consecutive frames: longer, no tracker without re-identification could know it again.

    frames = synthetic_sequence(seed=0)   # 300 frames at 15 Hz, 160 x 160
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipseg_ros.perception.intrinsics import Intrinsics
from clipseg_ros.train.synthetic import COLOURS, draw_shape, textured_background

# The prompts, two objects each: same-prompt pairs are where ids swap.
LABELS = ("red circle", "blue square", "green triangle")
WALL_M = 3.0


@dataclass(frozen=True)
class SequenceSettings:
    frames: int = 300
    size: int = 160  # image side, pixels (square, as the training scenes)
    rate_hz: float = 15.0
    per_label: int = 2  # objects of each prompt
    radius_m: tuple[float, float] = (0.1, 0.16)
    depth_m: tuple[float, float] = (1.2, 2.2)
    speed_m_s: tuple[float, float] = (0.2, 0.6)  # sideways
    turn_every_s: float = 3.0  # mean time between velocity changes of an object that changes velocity
    # Less of an object visible than this many pixels or this share of its whole card (occluded or cut by the view's
    # edge) is not in the frame's ground truth (nor detected): too little to find.
    min_visible_px: int = 30
    min_visible_share: float = 0.3
    max_gap_frames: int = 10

    def intrinsics(self) -> Intrinsics:
        return Intrinsics(self.size, self.size, float(self.size), float(self.size), self.size / 2, self.size / 2)


@dataclass(frozen=True, eq=False)
class TrueObject:
    id: int  # 1-based, the same in every frame of the sequence
    label: str
    mask: np.ndarray  # (size, size) bool: its visible pixels
    position: tuple[float, float, float]  # its centre, metres


@dataclass(frozen=True, eq=False)
class SequenceFrame:
    stamp_s: float
    image: np.ndarray  # (size, size, 3) uint8 RGB
    depth: np.ndarray  # (size, size) float32 metres
    objects: tuple[TrueObject, ...]  # the visible ones, by id


class _Mover:
    """One card: position and velocity in metres, a target velocity it turns towards when it changes velocity."""

    def __init__(self, rng: np.random.Generator, settings: SequenceSettings, number: int, label: str):
        self.id, self.label = number, label
        self.colour, self.shape = label.split()
        self.radius = rng.uniform(*settings.radius_m)
        self.speeds = settings.speed_m_s
        lane = LABELS.index(label)  # a prompt's pair shares a lane, so its two objects cross
        depth_low, depth_high = settings.depth_m
        self.z = rng.uniform(depth_low, depth_high)
        self.position = np.array((rng.uniform(-0.4, 0.4) * self.z, (lane - 1) * 0.25 * self.z, self.z))
        direction = 1.0 if number % 2 else -1.0
        self.velocity = np.array((direction * rng.uniform(*settings.speed_m_s), rng.uniform(-0.05, 0.05), 0.0))
        self.target = self.velocity.copy()
        self.turns = number % 3 != 0  # the others keep a constant velocity between bounces
        self.exit_margin = 0.0
        self.hidden = 0  # consecutive frames in the view but hidden behind others

    def step(self, rng: np.random.Generator, settings: SequenceSettings) -> None:
        dt = 1.0 / settings.rate_hz
        if self.turns and self.exit_margin == 0.0 and rng.random() < dt / settings.turn_every_s:
            self.target = np.array((
                rng.choice((-1.0, 1.0)) * rng.uniform(*settings.speed_m_s),
                rng.uniform(-0.1, 0.1),
                rng.uniform(-0.1, 0.1),
            ))
        self.velocity += 0.2 * (self.target - self.velocity)
        self.position += self.velocity * dt
        x, y, z = self.position
        depth_low, depth_high = settings.depth_m
        if not depth_low <= z <= depth_high:
            self._bounce(2, np.clip(z, depth_low, depth_high))
        edge = 0.5 * z - self.radius  # the whole card in the view, vertically
        if abs(y) > edge:
            self._bounce(1, np.clip(y, -edge, edge))
        # Sideways it leaves the view (its centre out: too little is left to be seen), for a number of frames drawn
        # at each exit, and comes back.
        outside = 0.5 * z
        if abs(x) <= outside:
            self.exit_margin = 0.0
        elif self.exit_margin == 0.0:
            frames = rng.uniform(1, settings.max_gap_frames - 2)
            self.exit_margin = 0.5 * frames * dt * abs(self.velocity[0])
        if abs(x) > outside + self.exit_margin and np.sign(self.velocity[0]) == np.sign(x):
            self.target[0] = -np.sign(x) * abs(self.target[0])
            self.velocity[0] = -self.velocity[0]

    def dodge(self, occluder: _Mover, frames: int, dt: float) -> None:
        """Come out from behind `occluder` within about `frames`: an object hidden longer than a sequence allows
        moves away from it in the image (x / z, y / z), sideways and up or down, at most 1.5 times its fastest usual
        speed (a draw where that is not enough is drawn again), then goes back to a usual speed."""
        here = self.position[:2] / self.position[2]
        there = occluder.position[:2] / occluder.position[2]
        away = here - there
        away = away / (np.linalg.norm(away) or 1.0)
        clear = 2 * self.radius / self.position[2] + occluder.radius / occluder.position[2]
        wanted = occluder.velocity[:2] / occluder.position[2] + away * clear / (frames * dt)  # image units per second
        velocity = wanted * self.position[2]
        speed = np.linalg.norm(velocity)
        self.velocity[:2] = velocity * min(1.0, 1.5 * self.speeds[1] / speed) if speed else velocity
        self.target[0] = np.sign(velocity[0]) * np.clip(abs(velocity[0]), *self.speeds)

    def _bounce(self, axis: int, inside: float) -> None:
        self.position[axis] = inside
        self.velocity[axis] = -self.velocity[axis]
        self.target[axis] = -self.target[axis]


def synthetic_sequence(seed: int, settings: SequenceSettings = SequenceSettings()) -> list[SequenceFrame]:
    """A sequence by its seed, the same for the same arguments; ValueError if no draw keeps within its gaps."""
    rng = np.random.default_rng(seed)
    for _ in range(100):  # rejection sampling: a draw with a longer gap is drawn again
        frames = _draw(rng, settings)
        if _longest_gap(frames) <= settings.max_gap_frames:
            return frames
    raise ValueError(f"no sequence with gaps of at most {settings.max_gap_frames} frames in 100 draws")


def _draw(rng: np.random.Generator, settings: SequenceSettings) -> list[SequenceFrame]:
    labels = [label for label in LABELS for _ in range(settings.per_label)]
    movers = [_Mover(rng, settings, number, label) for number, label in enumerate(labels, start=1)]
    background = textured_background(rng, settings.size)
    camera = settings.intrinsics()
    frames = []
    for index in range(settings.frames):
        frames.append(_render(rng, settings, camera, background, movers, index / settings.rate_hz))
        for mover in movers:
            mover.step(rng, settings)
    return frames


def _render(
    rng: np.random.Generator,
    settings: SequenceSettings,
    camera: Intrinsics,
    background: np.ndarray,
    movers: list[_Mover],
    stamp: float,
) -> SequenceFrame:
    size = settings.size
    by_id = {mover.id: mover for mover in movers}
    image = background.astype(np.float32)
    depth = np.full((size, size), WALL_M, np.float32)
    owner = np.zeros((size, size), np.int32)
    drawn, cards = {}, {}
    for mover in sorted(movers, key=lambda m: -m.position[2]):  # far to near: the nearer paints over
        x, y, z = mover.position
        centre = (round(camera.cx + camera.fx * x / z), round(camera.cy + camera.fy * y / z))
        radius = max(1, round(camera.fx * mover.radius / z))
        mask = _card(mover.shape, centre, radius, size)
        if mask is None:
            continue
        drawn[mover.id] = mask
        cards[mover.id] = _card_area(mover.shape, radius)
        image[mask] = COLOURS[mover.colour]
        depth[mask] = z
        owner[mask] = mover.id
    image += rng.standard_normal(image.shape, dtype=np.float32) * 3  # sensor noise
    objects = []
    for mover in movers:
        visible = owner == mover.id
        count = np.count_nonzero(visible)
        if count >= settings.min_visible_px and count >= settings.min_visible_share * cards[mover.id]:
            objects.append(TrueObject(mover.id, mover.label, visible, tuple(float(v) for v in mover.position)))
            mover.hidden = 0
            continue
        over = owner[drawn[mover.id]] if mover.id in drawn else owner[:0, 0]
        over = over[(over != mover.id) & (over != 0)]
        mover.hidden = mover.hidden + 1 if over.size else 0  # in the view, behind others
        if mover.hidden >= 1:
            frames = max(1, settings.max_gap_frames - 2 - mover.hidden)
            mover.dodge(by_id[int(np.bincount(over).argmax())], frames, 1.0 / settings.rate_hz)
    return SequenceFrame(stamp, np.clip(image, 0, 255).astype(np.uint8), depth, tuple(objects))


def _card_area(shape: str, radius: int) -> int:
    return int(np.count_nonzero(draw_shape(shape, (radius + 1, radius + 1), radius, 2 * radius + 3)))


def _card(shape: str, centre: tuple[int, int], radius: int, size: int) -> np.ndarray | None:
    """(size, size) bool mask of a shape, drawn in its own box (a whole-frame canvas per shape costs ten times
    more); None when it is wholly out of the view."""
    side = 2 * radius + 3
    left, top = centre[0] - radius - 1, centre[1] - radius - 1
    if left >= size or top >= size or left + side <= 0 or top + side <= 0:
        return None
    local = draw_shape(shape, (radius + 1, radius + 1), radius, side)
    mask = np.zeros((size, size), bool)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + side, size), min(top + side, size)
    mask[y0:y1, x0:x1] = local[y0 - top : y1 - top, x0 - left : x1 - left]
    return mask if mask.any() else None


def _longest_gap(frames: list[SequenceFrame]) -> int:
    """The most consecutive frames any object is missing from between two frames it is in."""
    last_seen: dict[int, int] = {}
    longest = 0
    for index, frame in enumerate(frames):
        for obj in frame.objects:
            if obj.id in last_seen:
                longest = max(longest, index - last_seen[obj.id] - 1)
            last_seen[obj.id] = index
    return longest
