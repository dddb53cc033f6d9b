"""Loading and saving CLIPSeg weights: Hugging Face layout, the original decoder files, hub download.

Weights are read with safetensors or `torch.load(weights_only=True)` only: a pickle that would
run code is refused. Loading is strict: missing, unexpected or mis-shaped keys are an error
that lists them.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from clipseg_ros.engine import limits
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = "CIDAS/clipseg-rd64-refined"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
ORIGINAL_SUFFIXES = (".pth", ".pt")
# Buffers some exports carry that hold no learned state.
_IGNORABLE = re.compile(r"(^|\.)position_ids$|(^|\.)reduce\.(weight|bias)$")


class CheckpointError(RuntimeError):
    """Weights that cannot be found, read or matched to the model; the message says what to do."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a torch file read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} was refused: it is a pickle that needs more than plain tensors to load "
            f"(only weights_only loading is allowed, so code inside a checkpoint never runs): "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    except Exception as exc:  # corrupt, truncated or foreign files fail in many ways
        raise CheckpointError(f"cannot read weights from {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    return data


# --- key map between our modules and the Hugging Face CLIPSegForImageSegmentation ------------

_PREFIX_RULES = (
    (r"^backbone\.clip\.visual\.transformer\.resblocks\.(\d+)\.", r"clip.vision_model.encoder.layers.\1."),
    (r"^backbone\.clip\.transformer\.resblocks\.(\d+)\.", r"clip.text_model.encoder.layers.\1."),
    (r"^decoder\.blocks\.(\d+)\.", r"decoder.layers.\1."),
    (r"^decoder\.trans_conv\.", "decoder.transposed_convolution."),
)
_LAYER_RULES = (
    (r"\.(ln_1|norm1)\.", ".layer_norm1."),
    (r"\.(ln_2|norm2)\.", ".layer_norm2."),
    (r"\.(mlp\.c_fc|linear1)\.", ".mlp.fc1."),
    (r"\.(mlp\.c_proj|linear2)\.", ".mlp.fc2."),
    (r"\.(attn|self_attn)\.out_proj\.", ".self_attn.out_proj."),
)
_FIXED = {
    "backbone.clip.token_embedding.weight": "clip.text_model.embeddings.token_embedding.weight",
    "backbone.clip.positional_embedding": "clip.text_model.embeddings.position_embedding.weight",
    "backbone.clip.ln_final.weight": "clip.text_model.final_layer_norm.weight",
    "backbone.clip.ln_final.bias": "clip.text_model.final_layer_norm.bias",
    "backbone.clip.text_projection": "clip.text_projection.weight",
    "backbone.clip.logit_scale": "clip.logit_scale",
    "backbone.clip.visual.class_embedding": "clip.vision_model.embeddings.class_embedding",
    "backbone.clip.visual.conv1.weight": "clip.vision_model.embeddings.patch_embedding.weight",
    "backbone.clip.visual.positional_embedding": "clip.vision_model.embeddings.position_embedding.weight",
    "backbone.clip.visual.ln_pre.weight": "clip.vision_model.pre_layrnorm.weight",
    "backbone.clip.visual.ln_pre.bias": "clip.vision_model.pre_layrnorm.bias",
    "backbone.clip.visual.ln_post.weight": "clip.vision_model.post_layernorm.weight",
    "backbone.clip.visual.ln_post.bias": "clip.vision_model.post_layernorm.bias",
    "backbone.clip.visual.proj": "clip.visual_projection.weight",
}
# open_clip keeps projections as (in, out) matrices, transformers as Linear weights (out, in).
_TRANSPOSED = {"backbone.clip.text_projection", "backbone.clip.visual.proj"}
_IN_PROJ = re.compile(r"^(.*)\.(?:attn|self_attn)\.in_proj_(weight|bias)$")


def hf_names(key: str) -> list[str]:
    """The Hugging Face key(s) holding our parameter `key` (three for a fused q/k/v projection)."""
    if key in _FIXED:
        return [_FIXED[key]]
    name = key
    for pattern, repl in _PREFIX_RULES:
        name = re.sub(pattern, repl, name)
    fused = _IN_PROJ.match(name)
    if fused:
        prefix, kind = fused.groups()
        return [f"{prefix}.self_attn.{p}_proj.{kind}" for p in "qkv"]
    for pattern, repl in _LAYER_RULES:
        name = re.sub(pattern, repl, name)
    return [name]


def state_dict_from_hf(model: ClipSeg, hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict built from a transformers CLIPSegForImageSegmentation state dict (strict)."""

    def gather(key: str, names: list[str]) -> torch.Tensor:
        tensors = [hf[n] for n in names]
        value = torch.cat(tensors, dim=0) if len(tensors) > 1 else tensors[0]
        return value.t().contiguous() if key in _TRANSPOSED else value

    return _remap(model, hf, hf_names, gather, source="Hugging Face checkpoint")


def state_dict_to_hf(model: ClipSeg) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        names = hf_names(key)
        value = value.t() if key in _TRANSPOSED else value
        parts = value.chunk(len(names), dim=0) if len(names) > 1 else (value,)
        for name, part in zip(names, parts, strict=True):
            out[name] = part.contiguous()
    return out


def _remap(
    model: ClipSeg,
    source_sd: dict[str, torch.Tensor],
    names_of: Callable[[str], list[str]],
    gather: Callable[[str, list[str]], torch.Tensor],
    source: str,
) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    bad_shapes: list[str] = []
    for key, ref in expected.items():
        names = names_of(key)
        absent = [n for n in names if n not in source_sd]
        if absent:
            missing.extend(absent)
            continue
        used.update(names)
        value = gather(key, names)
        if value.shape != ref.shape:
            bad_shapes.append(f"{'+'.join(names)}: {tuple(value.shape)}, expected {tuple(ref.shape)}")
            continue
        out[key] = value.to(ref.dtype)
    unexpected = [k for k in source_sd if k not in used and not _IGNORABLE.search(k)]
    problems = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shapes)):
        if items:
            problems.append(f"{len(items)} {title}: {_listing(items)}")
    if problems:
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(problems))
    return out


def _listing(items: Iterable[str], limit: int = 12) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


# --- Hugging Face layout ---------------------------------------------------------------------


def _resolve_hf_files(source: str, revision: str | None) -> tuple[Path, Path]:
    directory = Path(source).expanduser()
    if directory.is_dir():
        config = directory / "config.json"
        weights = next((directory / f for f in HF_WEIGHT_FILES if (directory / f).is_file()), None)
        if not config.is_file() or weights is None:
            raise CheckpointError(
                f"{directory} is not a CLIPSeg checkpoint directory: it needs config.json and one of "
                f"{', '.join(HF_WEIGHT_FILES)}"
            )
        return config, weights
    if Path(source).suffix or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise CheckpointError(
            f"weights {source!r}: no such directory, and not a hub id like {DEFAULT_WEIGHTS!r}"
        )
    return _download_hf(source, revision)


def _download_hf(repo_id: str, revision: str | None) -> tuple[Path, Path]:
    # Unreachable, huggingface_hub retries with backoff for about 23 s before it looks in its cache: ask once,
    # quickly, and when nobody answers take the cache alone, as HF_HUB_OFFLINE=1 does.
    unreachable = _hub_unreachable(repo_id, revision)
    try:
        files = _cached_hf(repo_id, revision) if unreachable else _fetched_hf(repo_id, revision)
    except Exception as exc:  # no such repo, gated, network down mid-way: one message for all
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}"
    else:
        if files is not None:
            return files
        reason = f"the hub cannot be reached ({unreachable}) and the files are not in the local cache"
    raise CheckpointError(
        f"cannot get {repo_id!r} from the Hugging Face hub ({reason}). On a machine with access run "
        f"`hf download {repo_id} --local-dir DIR`, copy DIR here and pass its path "
        f"as the weights (--weights DIR, or the node's `weights` parameter)"
    )


def _hub_unreachable(repo_id: str, revision: str | None) -> str:
    """Why the hub cannot be reached (offline mode, no network, no answer in time), or "" when it answers."""
    from huggingface_hub import get_session, hf_hub_url, is_offline_mode

    if is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    try:  # one request, no retries; any HTTP answer (even 401 or 404) means the hub is there
        get_session().head(hf_hub_url(repo_id, "config.json", revision=revision), timeout=limits.HUB_PROBE_S)
    except Exception as exc:  # DNS, refused, timeout, proxy: the transport's errors
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no answer'}"
    return ""


def _cached_hf(repo_id: str, revision: str | None) -> tuple[Path, Path] | None:
    """config.json and weights of `repo_id` from the local hub cache, without a request; None if not there."""
    from huggingface_hub import try_to_load_from_cache

    found = [try_to_load_from_cache(repo_id, name, revision=revision) for name in ("config.json", *HF_WEIGHT_FILES)]
    config, weights = found[0], next((f for f in found[1:] if isinstance(f, str)), None)
    return (Path(config), Path(weights)) if isinstance(config, str) and weights else None


def _fetched_hf(repo_id: str, revision: str | None) -> tuple[Path, Path]:
    """config.json and weights through huggingface_hub's download (its cache, its checks for updates)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    config = Path(hf_hub_download(repo_id, "config.json", revision=revision))
    for filename in HF_WEIGHT_FILES:
        try:
            return config, Path(hf_hub_download(repo_id, filename, revision=revision))
        except EntryNotFoundError:
            continue
    raise CheckpointError(f"hub repository {repo_id!r} has none of {', '.join(HF_WEIGHT_FILES)}")


def load_hf(source: str = DEFAULT_WEIGHTS, revision: str | None = None) -> ClipSeg:
    """A model from a Hugging Face CLIPSeg checkpoint: a local directory or a hub id."""
    config_path, weights_path = _resolve_hf_files(source, revision)
    try:
        config = ClipSegConfig.from_hf_dict(json.loads(config_path.read_text()))
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not a usable CLIPSeg config: {exc}") from exc
    model = empty_model(config)
    return assign_state(model, state_dict_from_hf(model, read_state_dict(weights_path)))


def empty_model(config: ClipSegConfig) -> ClipSeg:
    """The model's structure on the meta device: no memory and no random init for weights about to be loaded."""
    with torch.device("meta"):
        return ClipSeg(config)


def assign_state(model: ClipSeg, state: dict[str, torch.Tensor]) -> ClipSeg:
    """Make the loaded tensors the model's own (no second copy) and rebuild what is not saved."""
    model.load_state_dict(state, strict=True, assign=True)
    clip = model.backbone.clip
    context = clip.positional_embedding.shape[0]
    # open_clip's causal mask of the text encoder is a non-persistent buffer: built here as open_clip does.
    clip.attn_mask = torch.full((context, context), float("-inf")).triu_(1)
    leftovers = [name for name, t in model.state_dict(keep_vars=True).items() if t.is_meta]
    leftovers += [name for name, t in model.named_buffers() if t.is_meta]
    if leftovers:
        raise CheckpointError(f"nothing in the checkpoint for {', '.join(leftovers)}")
    return model.eval()


def save_hf(model: ClipSeg, directory: str | os.PathLike) -> Path:
    """Write config.json + model.safetensors, loadable by `load_hf` and by transformers."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(model.config.to_hf_dict(), indent=2) + "\n")
    save_file(state_dict_to_hf(model), str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


# --- the original repository's decoder files + OpenAI CLIP ---------------------------------------

OPENAI_CLIP = "openai"


def load_clip_state_dict(source: str = OPENAI_CLIP) -> dict[str, torch.Tensor]:
    """OpenAI ViT-B/16 weights in open_clip naming: a local file, or open_clip's own download."""
    if source != OPENAI_CLIP:
        return read_state_dict(source)
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    try:
        path = download_pretrained(get_pretrained_cfg("ViT-B-16-quickgelu", "openai"), prefer_hf_hub=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot download OpenAI ViT-B/16 CLIP weights through open_clip ({type(exc).__name__}: {exc}). "
            "Pass a local open_clip state dict file (safetensors or a weights-only torch file) as clip weights"
        ) from exc
    if not path:
        raise CheckpointError("open_clip found no download for OpenAI ViT-B/16; pass a local clip weights file")
    return read_state_dict(path)


def load_original(
    decoder_path: str | os.PathLike,
    clip_weights: str = OPENAI_CLIP,
    base_config: ClipSegConfig | None = None,
) -> ClipSeg:
    """A model from the original repository's decoder file (rd64-uni.pth, ...) and CLIP weights.

    The decoder file says its reduce_dim and head; the rest (CLIP's shape, extract_layers)
    comes from `base_config`, by default ViT-B/16 with the released (3, 6, 9).
    """
    decoder_sd = read_state_dict(decoder_path)
    if "film_mul.weight" not in decoder_sd:
        raise CheckpointError(f"{decoder_path} is not a CLIPSeg decoder state dict (no film_mul.weight)")
    config = (base_config or ClipSegConfig()).with_changes(
        reduce_dim=decoder_sd["film_mul.weight"].shape[0],
        refined_head="trans_conv.0.weight" in decoder_sd,
    )
    model = empty_model(config)
    combined = {f"decoder.{k}": v for k, v in decoder_sd.items()}
    combined.update({f"backbone.clip.{k}": v for k, v in load_clip_state_dict(clip_weights).items()})
    state = _remap(
        model,
        combined,
        lambda key: [key],
        lambda key, names: combined[names[0]],
        source=f"{decoder_path} + CLIP weights {clip_weights!r}",
    )
    return assign_state(model, state)


def load_model(
    weights: str = DEFAULT_WEIGHTS,
    clip_weights: str = OPENAI_CLIP,
    base_config: ClipSegConfig | None = None,
) -> ClipSeg:
    """Any supported checkpoint: a .pth/.pt decoder file of the original repository, else HF layout."""
    if Path(weights).suffix in ORIGINAL_SUFFIXES:
        return load_original(weights, clip_weights, base_config)
    return load_hf(weights)
