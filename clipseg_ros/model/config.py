"""Explicit model configuration, read from and written to the Hugging Face `config.json` layout."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class VisionConfig:
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    image_size: int = 224  # the grid the positional embeddings were trained on


@dataclass(frozen=True)
class TextConfig:
    width: int = 512
    layers: int = 12
    heads: int = 8
    mlp_dim: int = 2048
    vocab_size: int = 49408
    context_length: int = 77


@dataclass(frozen=True)
class ClipSegConfig:
    """CLIP ViT-B/16 (QuickGELU) + CLIPSeg decoder. Defaults are the released rd64-refined model."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    projection_dim: int = 512
    extract_layers: tuple[int, ...] = (3, 6, 9)
    reduce_dim: int = 64
    decoder_heads: int = 4
    decoder_mlp_dim: int = 2048
    conditional_layer: int = 0
    refined_head: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "extract_layers", tuple(int(i) for i in self.extract_layers))
        if not self.extract_layers:
            raise ValueError("extract_layers must name at least one backbone block")
        if max(self.extract_layers) >= self.vision.layers or min(self.extract_layers) < 0:
            raise ValueError(
                f"extract_layers {self.extract_layers} must index blocks 0..{self.vision.layers - 1}"
            )
        if not 0 <= self.conditional_layer < len(self.extract_layers):
            raise ValueError(f"conditional_layer {self.conditional_layer} out of range")
        if self.reduce_dim % self.decoder_heads:
            raise ValueError(f"reduce_dim {self.reduce_dim} not divisible by {self.decoder_heads} heads")
        if self.refined_head and self.vision.patch_size % 4:
            raise ValueError("the refined head upsamples by 4 x 4: patch_size must be a multiple of 4")

    def with_changes(self, **changes: Any) -> ClipSegConfig:
        return replace(self, **changes)

    @classmethod
    def preset(cls, name: str) -> ClipSegConfig:
        """The released variants: rd64-refined, rd64, rd16."""
        presets = {
            "rd64-refined": cls(),
            "rd64": cls(refined_head=False),
            "rd16": cls(reduce_dim=16, refined_head=False),
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]

    @classmethod
    def tiny(cls) -> ClipSegConfig:
        """A few-hundred-kilobyte shape for tests, benchmarks and smoke runs; untrained it means nothing.

        Keeps what the code paths depend on: the real tokenizer's vocabulary, patch size 16, the
        refined head, and a block after the last extract layer (so early stop has one to skip).
        """
        return cls(
            vision=VisionConfig(width=48, layers=5, heads=2, mlp_dim=96, patch_size=16, image_size=64),
            text=TextConfig(width=32, layers=2, heads=2, mlp_dim=64),
            projection_dim=24,
            extract_layers=(1, 2, 3),
            reduce_dim=16,
            decoder_mlp_dim=32,
        )

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> ClipSegConfig:
        v = d.get("vision_config", {})
        t = d.get("text_config", {})
        vision = VisionConfig(
            width=v.get("hidden_size", 768),
            layers=v.get("num_hidden_layers", 12),
            heads=v.get("num_attention_heads", 12),
            mlp_dim=v.get("intermediate_size", 3072),
            patch_size=_scalar(v.get("patch_size", 32)),
            image_size=_scalar(v.get("image_size", 224)),
        )
        text = TextConfig(
            width=t.get("hidden_size", 512),
            layers=t.get("num_hidden_layers", 12),
            heads=t.get("num_attention_heads", 8),
            mlp_dim=t.get("intermediate_size", 2048),
            vocab_size=t.get("vocab_size", 49408),
            context_length=t.get("max_position_embeddings", 77),
        )
        for sub, act in (("vision_config", v.get("hidden_act")), ("text_config", t.get("hidden_act"))):
            if act not in (None, "quick_gelu"):
                raise ValueError(f"{sub}.hidden_act={act!r}: CLIPSeg's CLIP uses quick_gelu")
        return cls(
            vision=vision,
            text=text,
            projection_dim=d.get("projection_dim", 512),
            extract_layers=tuple(d.get("extract_layers", (3, 6, 9))),
            reduce_dim=d.get("reduce_dim", 64),
            decoder_heads=d.get("decoder_num_attention_heads", 4),
            decoder_mlp_dim=d.get("decoder_intermediate_size", 2048),
            conditional_layer=d.get("conditional_layer", 0),
            refined_head=bool(d.get("use_complex_transposed_convolution", False)),
        )

    def to_hf_dict(self) -> dict[str, Any]:
        return {
            "architectures": ["CLIPSegForImageSegmentation"],
            "model_type": "clipseg",
            "projection_dim": self.projection_dim,
            "extract_layers": list(self.extract_layers),
            "reduce_dim": self.reduce_dim,
            "decoder_num_attention_heads": self.decoder_heads,
            "decoder_intermediate_size": self.decoder_mlp_dim,
            "decoder_hidden_act": "quick_gelu",  # HF's default; its decoder blocks use ReLU regardless
            "conditional_layer": self.conditional_layer,
            "use_complex_transposed_convolution": self.refined_head,
            "vision_config": {
                "model_type": "clipseg_vision_model",
                "hidden_size": self.vision.width,
                "num_hidden_layers": self.vision.layers,
                "num_attention_heads": self.vision.heads,
                "intermediate_size": self.vision.mlp_dim,
                "patch_size": self.vision.patch_size,
                "image_size": self.vision.image_size,
                "hidden_act": "quick_gelu",
            },
            "text_config": {
                "model_type": "clipseg_text_model",
                "hidden_size": self.text.width,
                "num_hidden_layers": self.text.layers,
                "num_attention_heads": self.text.heads,
                "intermediate_size": self.text.mlp_dim,
                "vocab_size": self.text.vocab_size,
                "max_position_embeddings": self.text.context_length,
                "hidden_act": "quick_gelu",
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scalar(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"non-square patch or image size {value} is not supported")
        return int(value[0])
    return int(value)
