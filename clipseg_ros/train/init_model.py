"""The model a training run starts from: a released checkpoint, or a fresh decoder on given CLIP weights."""

from __future__ import annotations

import logging

from clipseg_ros.engine.checkpoints import CheckpointError, load_clip_state_dict, load_model
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig

log = logging.getLogger(__name__)


def with_fresh_decoder(model: ClipSeg, **decoder_changes: object) -> ClipSeg:
    """A model with `model`'s CLIP and a newly initialised decoder of the (changed) decoder config."""
    fresh = ClipSeg(model.config.with_changes(**decoder_changes))
    fresh.backbone.load_state_dict(model.backbone.state_dict())
    return fresh.eval()


def initial_model(
    init: str | None = None,
    clip_weights: str | None = None,
    fresh_decoder: bool = False,
    **decoder_changes: object,  # extract_layers, reduce_dim, refined_head: None keeps the init's
) -> ClipSeg:
    """Exactly one of `init` (hub id, HF directory or original .pth via the engine's loader) and
    `clip_weights` ("openai" or a local open_clip state dict of ViT-B/16, for a from-scratch decoder).

    Changing the decoder's shape (`decoder_changes`) implies a fresh decoder: released decoder weights
    only fit the shape they were trained in.
    """
    decoder_changes = {k: v for k, v in decoder_changes.items() if v is not None}
    if (init is None) == (clip_weights is None):
        raise ValueError("give either a checkpoint to start from (init) or CLIP weights for a fresh decoder")
    if clip_weights is not None:
        model = ClipSeg(ClipSegConfig().with_changes(**decoder_changes))
        state = load_clip_state_dict(clip_weights)
        try:
            model.backbone.clip.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"CLIP weights {clip_weights!r} do not fit ViT-B/16: {exc}") from exc
        return model.eval()
    model = load_model(init)
    changed = {k: v for k, v in decoder_changes.items() if getattr(model.config, k) != v}
    if fresh_decoder or changed:
        if changed and not fresh_decoder:
            log.info("decoder shape %s differs from %s: training a fresh decoder on its CLIP", changed, init)
        return with_fresh_decoder(model, **decoder_changes)
    return model
