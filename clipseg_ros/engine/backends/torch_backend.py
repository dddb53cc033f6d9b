"""The image path in PyTorch: the model's own forward (the default backend)."""

from __future__ import annotations

import torch

from clipseg_ros.engine.model import ClipSeg


class TorchImagePath:
    name = "torch"

    def __init__(self, model: ClipSeg):
        # The Segmenter moves the model to its device and dtype in place afterwards; this holds the same module.
        self.model = model

    def __call__(self, pixels: torch.Tensor, conditionals: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        return self.model(pixels, conditionals, image_index)
