"""Explicit model configuration, read from and written to the Hugging Face `config.json` layout."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from clipseg_ros.engine import limits

# config.json's name and Hugging Face's default for each field: the file is read by these, and a refusal
# names the key the user would edit.
_HF_VISION = {
    "width": ("hidden_size", 768),
    "layers": ("num_hidden_layers", 12),
    "heads": ("num_attention_heads", 12),
    "mlp_dim": ("intermediate_size", 3072),
    "patch_size": ("patch_size", 32),
    "image_size": ("image_size", 224),
}
_HF_TEXT = {
    "width": ("hidden_size", 512),
    "layers": ("num_hidden_layers", 12),
    "heads": ("num_attention_heads", 8),
    "mlp_dim": ("intermediate_size", 2048),
    "vocab_size": ("vocab_size", 49408),
    "context_length": ("max_position_embeddings", 77),
}
_HF_TOP = {
    "projection_dim": ("projection_dim", 512),
    "extract_layers": ("extract_layers", [3, 6, 9]),
    "reduce_dim": ("reduce_dim", 64),
    "decoder_heads": ("decoder_num_attention_heads", 4),
    "decoder_mlp_dim": ("decoder_intermediate_size", 2048),
    "conditional_layer": ("conditional_layer", 0),
    "refined_head": ("use_complex_transposed_convolution", False),
}


def _label(section: str, name: str) -> str:
    table = {"vision": _HF_VISION, "text": _HF_TEXT, "": _HF_TOP}[section]
    ours = f"{section}.{name}" if section else name
    key = f"{section}_config.{table[name][0]}" if section else table[name][0]
    return f"{ours} (config.json {key})"


def _check_ints(config: Any, section: str, bounds: dict[str, tuple[int, int]]) -> None:
    for name, (low, high) in bounds.items():
        limits.check_count(_label(section, name), getattr(config, name), low, high)


def _check_heads(config: Any, section: str) -> None:
    if config.width % config.heads:
        raise ValueError(
            f"{_label(section, 'width')} {config.width} is not divisible by "
            f"{_label(section, 'heads')} {config.heads}"
        )


@dataclass(frozen=True)
class VisionConfig:
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    image_size: int = 224  # the grid the positional embeddings were trained on

    def __post_init__(self) -> None:
        _check_ints(self, "vision", {
            "width": (1, limits.MODEL_WIDTH_MAX),
            "layers": (1, limits.MODEL_LAYERS_MAX),
            "heads": (1, limits.MODEL_WIDTH_MAX),
            "mlp_dim": (1, limits.MODEL_MLP_DIM_MAX),
            "patch_size": (limits.MODEL_PATCH_SIZE_MIN, limits.MODEL_PATCH_SIZE_MAX),
            "image_size": (self.patch_size, limits.INPUT_SIDE_MAX),
        })
        _check_heads(self, "vision")

    @property
    def grid(self) -> int:
        """Tokens per side of the positional embedding table."""
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class TextConfig:
    width: int = 512
    layers: int = 12
    heads: int = 8
    mlp_dim: int = 2048
    vocab_size: int = 49408
    context_length: int = 77

    def __post_init__(self) -> None:
        _check_ints(self, "text", {
            "width": (1, limits.MODEL_WIDTH_MAX),
            "layers": (1, limits.MODEL_LAYERS_MAX),
            "heads": (1, limits.MODEL_WIDTH_MAX),
            "mlp_dim": (1, limits.MODEL_MLP_DIM_MAX),
            "vocab_size": (limits.MODEL_VOCAB_MIN, limits.MODEL_VOCAB_MAX),
            "context_length": (3, limits.MODEL_CONTEXT_MAX),  # start, end and one token
        })
        _check_heads(self, "text")


def _block_parameters(width: int, mlp_dim: int) -> int:
    """A transformer block: fused q/k/v and output projections, two layer norms, the MLP."""
    return 4 * width * width + 2 * width * mlp_dim + 9 * width + mlp_dim


@dataclass(frozen=True)
class ClipSegConfig:
    """CLIP ViT-B/16 (QuickGELU) + CLIPSeg decoder. Defaults are the released rd64-refined model.

    Every field is checked (type, range, divisibility, and the parameter count it implies) on
    construction: a corrupt config.json is refused with the field's name before a module is built.
    """

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
        for name, kind in (("vision", VisionConfig), ("text", TextConfig)):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"{name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}")
        layers = self.extract_layers
        label = _label("", "extract_layers")
        if isinstance(layers, (str, bytes)) or not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError(f"{label} must be a non-empty list of backbone block indices, got {layers!r}")
        for index in layers:
            limits.check_count(label, index, 0, self.vision.layers - 1)
        object.__setattr__(self, "extract_layers", tuple(layers))
        _check_ints(self, "", {
            "projection_dim": (1, limits.MODEL_WIDTH_MAX),
            "reduce_dim": (1, limits.MODEL_WIDTH_MAX),
            "decoder_heads": (1, limits.MODEL_WIDTH_MAX),
            "decoder_mlp_dim": (1, limits.MODEL_MLP_DIM_MAX),
            "conditional_layer": (0, len(self.extract_layers) - 1),
        })
        if not isinstance(self.refined_head, bool):
            raise ValueError(f"{_label('', 'refined_head')} must be true or false, got {self.refined_head!r}")
        if self.reduce_dim % self.decoder_heads:
            raise ValueError(
                f"{_label('', 'reduce_dim')} {self.reduce_dim} is not divisible by "
                f"{_label('', 'decoder_heads')} {self.decoder_heads}"
            )
        if self.refined_head and self.vision.patch_size % 4:
            raise ValueError(
                f"{_label('vision', 'patch_size')} {self.vision.patch_size}: the refined head upsamples by 4 x 4, "
                "so it must be a multiple of 4"
            )
        count = self.parameter_count()
        if count > limits.MAX_MODEL_PARAMETERS:
            raise ValueError(
                f"this shape has {count:,} parameters, above the limit of {limits.MAX_MODEL_PARAMETERS:,} "
                "(check hidden_size, intermediate_size, num_hidden_layers, vocab_size and the decoder sizes)"
            )

    def parameter_count(self) -> int:
        """The number of parameters of the model this describes, computed without building it."""
        v, t, d, n = self.vision, self.text, self.reduce_dim, len(self.extract_layers)
        vision = (
            3 * v.patch_size**2 * v.width  # patch embedding (no bias)
            + (v.grid**2 + 2) * v.width  # positional embeddings and the class token
            + 4 * v.width  # pre and post layer norms
            + v.layers * _block_parameters(v.width, v.mlp_dim)
            + v.width * self.projection_dim
        )
        text = (
            (t.vocab_size + t.context_length) * t.width
            + 2 * t.width  # final layer norm
            + t.layers * _block_parameters(t.width, t.mlp_dim)
            + t.width * self.projection_dim
            + 1  # logit scale
        )
        film = 2 * (self.projection_dim + 1) * d
        decoder = film + n * ((v.width + 1) * d + _block_parameters(d, self.decoder_mlp_dim))
        if self.refined_head:
            k2, half = (v.patch_size // 4) ** 2, d // 2
            head = (9 * d + 1) * d + (d * k2 + 1) * half + half * k2 + 1
        else:
            head = d * v.patch_size**2 + 1
        return vision + text + decoder + head

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
    def from_hf_dict(cls, d: Any) -> ClipSegConfig:
        """From a parsed config.json; anything but a usable CLIPSeg shape raises ValueError naming the key."""
        if not isinstance(d, dict):
            raise ValueError(f"config.json must hold a JSON object, got a JSON {_json_kind(d)}")
        sections = {"": d}
        for section in ("vision", "text"):
            sub = d.get(f"{section}_config", {})
            if not isinstance(sub, dict):
                raise ValueError(f"config.json {section}_config must be a JSON object, got a JSON {_json_kind(sub)}")
            act = sub.get("hidden_act")
            if act not in (None, "quick_gelu"):
                raise ValueError(f"config.json {section}_config.hidden_act={act!r}: CLIPSeg's CLIP uses quick_gelu")
            sections[section] = sub

        def read(section: str, table: dict[str, tuple[str, Any]]) -> dict[str, Any]:
            values = {ours: sections[section].get(key, default) for ours, (key, default) in table.items()}
            for name in ("patch_size", "image_size"):
                if name in values:
                    values[name] = _scalar(_label(section, name), values[name])
            return values

        return cls(
            vision=VisionConfig(**read("vision", _HF_VISION)),
            text=TextConfig(**read("text", _HF_TEXT)),
            **read("", _HF_TOP),
        )

    def to_hf_dict(self) -> dict[str, Any]:
        def write(config: Any, table: dict[str, tuple[str, Any]]) -> dict[str, Any]:
            values = {key: getattr(config, ours) for ours, (key, _) in table.items()}
            return {key: list(v) if isinstance(v, tuple) else v for key, v in values.items()}

        return {
            "architectures": ["CLIPSegForImageSegmentation"],
            "model_type": "clipseg",
            **write(self, _HF_TOP),
            "decoder_hidden_act": "quick_gelu",  # HF's default; its decoder blocks use ReLU regardless
            "vision_config": {
                "model_type": "clipseg_vision_model",
                **write(self.vision, _HF_VISION),
                "hidden_act": "quick_gelu",
            },
            "text_config": {
                "model_type": "clipseg_text_model",
                **write(self.text, _HF_TEXT),
                "hidden_act": "quick_gelu",
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scalar(label: str, value: Any) -> Any:
    """HF allows [h, w] for patch and image sizes; only square ones are supported."""
    if isinstance(value, list):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"{label} must be one size or a square [size, size], got {value!r}")
        return value[0]
    return value


def _json_kind(value: Any) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return kinds.get(type(value), "null" if value is None else type(value).__name__)
