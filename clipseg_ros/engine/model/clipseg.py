"""CLIPSeg: frozen CLIP backbone + trainable decoder."""

from __future__ import annotations

import torch
from torch import nn

from clipseg_ros.engine.model.backbone import ClipBackbone
from clipseg_ros.engine.model.config import ClipSegConfig
from clipseg_ros.engine.model.decoder import ClipSegDecoder


class ClipSeg(nn.Module):
    def __init__(self, config: ClipSegConfig):
        super().__init__()
        self.config = config
        self.backbone = ClipBackbone(config)
        self.decoder = ClipSegDecoder(config)
        self.backbone.requires_grad_(False)

    def forward(
        self,
        pixels: torch.Tensor,
        conditionals: torch.Tensor,
        image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (N, H, W) at the input size for normalised `pixels` (B, 3, H, W)."""
        with torch.no_grad():
            activations, grid = self.backbone.dense_activations(pixels, self.config.extract_layers)
        return self.decoder(activations, conditionals, grid, image_index)
