"""The frozen CLIP backbone (open_clip, QuickGELU) and the dense activations CLIPSeg decodes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from clipseg_ros.engine.model.config import ClipSegConfig
from clipseg_ros.engine.model.fused import PackedBlock, quick_gelu_mlp

if TYPE_CHECKING:
    from open_clip.model import CLIP


def build_open_clip(config: ClipSegConfig) -> CLIP:
    """An open_clip CLIP with random weights in the shape `config` describes."""
    # Imported here, when a model is built: open_clip's package imports transformers, timm and torchvision (about
    # 2.5 s), which a node whose parameters or checkpoint config are refused need not wait for.
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    v, t = config.vision, config.text
    vision_cfg = CLIPVisionCfg(
        layers=v.layers,
        width=v.width,
        head_width=v.width // v.heads,
        mlp_ratio=v.mlp_dim / v.width,
        patch_size=v.patch_size,
        image_size=v.image_size,
    )
    text_cfg = CLIPTextCfg(
        context_length=t.context_length,
        vocab_size=t.vocab_size,
        width=t.width,
        heads=t.heads,
        layers=t.layers,
        mlp_ratio=t.mlp_dim / t.width,
    )
    return CLIP(config.projection_dim, vision_cfg, text_cfg, quick_gelu=True)


def run_block(block: nn.Module, x: torch.Tensor, packed: PackedBlock | None = None) -> torch.Tensor:
    """An open_clip ResidualAttentionBlock (no mask) with scaled_dot_product_attention; its linear layers (and
    residual additions) on `packed`'s weights where given (CPU inference in bf16).

    Same weights and numbers as the block's own forward, whose MultiheadAttention path is
    about 10 % slower per block on CPU at 485 tokens (A/B measured in one process).
    """
    attn = block.attn
    y = block.ln_1(x)
    b, t, c = y.shape
    heads = attn.num_heads
    qkv = packed.qkv(y) if packed else F.linear(y, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(b, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, c)
    x = packed.out(out, x) if packed else x + block.ls_1(attn.out_proj(out))
    y = block.ln_2(x)
    return packed.mlp(y, x) if packed else x + block.ls_2(quick_gelu_mlp(block.mlp, y))


class ClipBackbone(nn.Module):
    """CLIP's text and image embeddings, and the query image's token activations.

    The positional embeddings are interpolated to the token grid of each input, so any
    input whose sides are multiples of the patch size works, square or not.
    """

    def __init__(self, config: ClipSegConfig):
        super().__init__()
        self.config = config
        self.clip = build_open_clip(config)
        # One interpolated table per grid: a camera stream uses one size, so this is computed once.
        self._pos_cache: dict[tuple[int, int, torch.dtype, torch.device], torch.Tensor] = {}
        # Per block index, made at its first CPU inference in bf16 (see fused.PackedBlock).
        self._packed: dict[int, PackedBlock] = {}

    @property
    def patch_size(self) -> int:
        return self.config.vision.patch_size

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - nn.Module's own signature
        # Device or dtype moves invalidate the interpolated tables and the packed weights.
        self._pos_cache.clear()
        self._packed.clear()
        return super()._apply(fn, recurse)

    def load_state_dict(self, state_dict, strict=True, assign=False):  # noqa: ANN001
        self._pos_cache.clear()
        self._packed.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def positional_embedding(self, grid: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        key = (grid[0], grid[1], like.dtype, like.device)
        cached = self._pos_cache.get(key)
        if cached is not None and not self.training:
            return cached
        table = self.clip.visual.positional_embedding
        native = self.config.vision.image_size // self.patch_size
        if grid == (native, native):
            pos = table
        else:
            cls_pos, patch_pos = table[:1], table[1:]
            patch_pos = patch_pos.reshape(1, native, native, -1).permute(0, 3, 1, 2)
            patch_pos = F.interpolate(patch_pos.float(), size=grid, mode="bicubic", align_corners=False)
            patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)
            pos = torch.cat([cls_pos, patch_pos.to(table.dtype)], dim=0)
        pos = pos.to(dtype=like.dtype, device=like.device)
        if not self.training:
            self._pos_cache[key] = pos.detach()
        return pos

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"input {height}x{width} is not a multiple of the patch size {p}")
        return height // p, width // p

    def _embed(self, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        visual = self.clip.visual
        grid = self.token_grid(pixels.shape[-2], pixels.shape[-1])
        x = visual.conv1(pixels.to(visual.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + self.positional_embedding(grid, x)
        return visual.ln_pre(x), grid

    def dense_activations(
        self, pixels: torch.Tensor, layers: tuple[int, ...]
    ) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Tokens (CLS first) after each block in `layers`; blocks after the last are not run."""
        x, grid = self._embed(pixels)
        wanted = set(layers)
        taken: dict[int, torch.Tensor] = {}
        for index in range(max(layers) + 1):
            x = self._run_block(index, x)
            if index in wanted:
                taken[index] = x
        return [taken[i] for i in layers], grid

    def _run_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        block = self.clip.visual.transformer.resblocks[index]
        if not PackedBlock.applies(block, x):
            return run_block(block, x)
        packed = self._packed.get(index)
        if packed is None or not packed.current():
            packed = self._packed[index] = PackedBlock(block, rows=x.shape[0] * x.shape[1])
        return run_block(block, x, packed)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """CLIP image embedding (projection_dim) of each image; used for visual prompts."""
        visual = self.clip.visual
        x, _ = self._embed(pixels)
        for index in range(len(visual.transformer.resblocks)):
            x = self._run_block(index, x)
        pooled = visual.ln_post(x[:, 0])
        return pooled @ visual.proj

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """CLIP text embedding (projection_dim) of each tokenized prompt."""
        return self.clip.encode_text(tokens)
