"""The prompt board: what the node segments with now, from every source, and what it announces about it.

Text prompts are the `prompts` parameter (a ~/prompt message becomes a parameter change, so `ros2 param get`
tells the truth); visual prompts come from ~/visual_prompt, by label in arrival order, and an empty image
removes one; a service call may bring its own prompts, used for that call only. Together there are at most
limits.MAX_PROMPTS. Every change of the label set or the threshold starts a new generation: results computed
with an older one are discarded, never published after the label_info of the new one (see `publish_lock`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clipseg_ros.engine import limits
from clipseg_ros.engine.overlay import label_colors
from clipseg_ros.engine.prompts import check_exclusions, is_exclusion, prompt_subject
from clipseg_ros.engine.visual_prompt import VisualPrompt
from clipseg_ros.msg import VisualPrompt as VisualPromptMsg
from clipseg_ros.ros.image_codec import ImageDecodeError, image_to_rgb, is_empty, mask_to_numpy
from clipseg_ros.ros.node import parameters
from clipseg_ros.ros.node.settings import Settings
from clipseg_ros.ros.node.startup import EXIT_BAD_PARAMETERS, StartupError


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one moment, with the settings of that moment; `generation` changes with the label set."""

    generation: int
    prompts: tuple[str | VisualPrompt, ...]
    labels: tuple[str, ...]
    settings: Settings


class PromptBoard:
    """Thread-safe: parameter and topic callbacks write, the worker and the service read."""

    def __init__(self) -> None:
        self._settings: Settings | None = None  # None until configured
        self._visual: dict[str, VisualPrompt] = {}  # by label, in arrival order
        self._generation = 0
        self._lock = threading.Lock()
        # Held while outputs of one generation are published and while label_info announces a new one: no
        # output computed with superseded prompts is published after the new label set.
        self.publish_lock = threading.Lock()
        self.discarded = 0  # results computed with superseded prompts, never published

    @property
    def settings(self) -> Settings | None:
        return self._settings

    def configure(self, settings: Settings) -> None:
        """StartupError when the prompts, with the visual prompts kept from before a cleanup, exclude all they name
        or what they also ask for."""
        with self._lock:
            try:
                check_exclusions([*settings.prompts, *self._visual])
            except ValueError as exc:
                raise StartupError(f"invalid parameters: prompts: {exc}", EXIT_BAD_PARAMETERS) from exc
            self._settings = settings

    def prompt_set(self) -> PromptSet:
        with self._lock:
            return PromptSet(
                self._generation,
                (*self._settings.prompts, *self._visual.values()),
                (*self._settings.prompts, *self._visual),
                self._settings,
            )

    def change(self, values: dict[str, Any], current: Callable[[str], Any]) -> str | None:
        """New parameter values (by name, as set) applied, or the reason they are all refused; `current(name)`
        gives the runtime values not changing."""
        reasons = [reason for name, value in values.items() if (reason := parameters.validate(name, value))]
        if reasons:
            return "; ".join(reasons)
        incoming = {
            name: parameters.coerce(name, value) for name, value in values.items() if name in parameters.RUNTIME
        }
        with self._lock:
            visual = len(self._visual)
        if len(incoming.get("prompts", ())) + visual > limits.MAX_PROMPTS:
            return f"prompts: with {visual} visual prompts at most {limits.MAX_PROMPTS}"
        if not incoming or self._settings is None:
            return None
        try:
            settings = Settings.read(lambda name: incoming[name] if name in incoming else current(name))
            with self._lock:
                check_exclusions([*settings.prompts, *self._visual])
        except ValueError as exc:  # values valid alone but not together
            return str(exc)
        with self._lock:
            old, self._settings = self._settings, settings
            self._generation += settings.prompts != old.prompts or settings.threshold != old.threshold
        return None

    def set_visual_prompt(self, label: str, msg: VisualPromptMsg) -> bool:
        """Add, replace or (empty image) remove the visual prompt `label`; whether the label set changed.
        ValueError (ImageDecodeError included) says why a message is refused."""
        # Decoded before taking the lock: the worker needs it for every frame.
        prompt = None if is_empty(msg.image) else visual_prompt_from_msg(msg, label, self._settings.max_image_pixels)
        with self._lock:
            if prompt is None:
                if self._visual.pop(label, None) is None:
                    return False
            else:
                count = len(self._settings.prompts) + len(self._visual)
                if label not in self._visual and count >= limits.MAX_PROMPTS:
                    raise ValueError(f"already {limits.MAX_PROMPTS} prompts")
                check_exclusions([*self._settings.prompts, *self._visual, label])
                self._visual[label] = prompt
            self._generation += 1
        return True

    def request_prompts(self, texts: Sequence[str], visual: Sequence[VisualPromptMsg]) -> list[str | VisualPrompt]:
        """A service call's prompts: its own (text, then visual) if it brings any, else the board's. ValueError
        for a bad visual prompt or when there are none at all."""
        max_pixels = self._settings.max_image_pixels
        prompts: list[str | VisualPrompt] = list(texts)
        for i, msg in enumerate(visual):
            prompts.append(visual_prompt_from_msg(msg, msg.label.strip() or f"visual {i + 1}", max_pixels))
        if not prompts:
            prompts = list(self.prompt_set().prompts)
        if not prompts:
            raise ValueError("no prompts in the request and none set on the node")
        return prompts

    def superseded(self, prompt_set: PromptSet, results: int) -> bool:
        """Whether the label set changed since `prompt_set` was taken (its `results` then count as discarded).
        Ask with `publish_lock` held, and publish under it."""
        with self._lock:
            if prompt_set.generation == self._generation:
                return False
        self.discarded += results
        return True


def visual_label(msg: VisualPromptMsg) -> str:
    """The label a ~/visual_prompt message adds, replaces or removes."""
    return msg.label.strip() or "visual"


def label_info(prompt_set: PromptSet) -> str:
    """The ~/label_info JSON: the value of each label in ~/label (its index) and its colour in ~/overlay; the
    exclusion prompts have none (their pixels are taken out of the others), "exclusions" names what they exclude."""
    labels = [label for label in prompt_set.labels if not is_exclusion(label)]
    return json.dumps(
        {
            "labels": ["background", *labels],
            "colors": [[0, 0, 0], *label_colors(len(labels)).tolist()],  # RGB
            "threshold": prompt_set.settings.threshold,
            "exclusions": [prompt_subject(label) for label in prompt_set.labels if is_exclusion(label)],
        }
    )


def visual_prompt_from_msg(msg: VisualPromptMsg, label: str, max_pixels: int) -> VisualPrompt:
    """Raises ValueError (or ImageDecodeError) saying what is wrong with the message."""
    image = image_to_rgb(msg.image, max_pixels=max_pixels)
    mask = mask_to_numpy(msg.mask)
    if mask.shape != image.shape[:2]:
        raise ImageDecodeError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {image.shape[1]}x{image.shape[0]}"
        )
    return VisualPrompt(image=image, mask=mask, text=msg.text, text_weight=float(msg.text_weight), label=label)
