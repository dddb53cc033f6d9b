"""The one entry point: images and prompts in, per-prompt probability maps and masks out.

The backbone runs once per image whatever the number of prompts; the decoder runs once on the
batch of all (image, prompt) pairs; prompt embeddings come from a bounded cache, so a repeated
prompt never runs the text or visual encoder again.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from clipseg_ros.engine import limits
from clipseg_ros.engine.backends import make_image_path
from clipseg_ros.engine.cache import EmbeddingCache
from clipseg_ros.engine.checkpoints import DEFAULT_WEIGHTS, OPENAI_CLIP, load_model
from clipseg_ros.engine.cpu_speed import BF16_MIN_SPEEDUP, bf16_speedup
from clipseg_ros.engine.model import ClipSeg
from clipseg_ros.engine.preprocess import (
    ImageLike,
    as_rgb_tensor,
    logits_to_probabilities,
    normalize,
    to_model_input,
    to_unit_float,
)
from clipseg_ros.engine.prompts import Tokenizer, check_exclusions, clean_prompt, prompt_subject
from clipseg_ros.engine.visual_prompt import VisualPrompt, VisualPromptStyle, engineer_visual_prompt

log = logging.getLogger(__name__)

Prompt = str | VisualPrompt
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# fp16 runs on tensor cores from Volta (compute capability 7.0) on; on older GPUs it is no faster than fp32.
TENSOR_CORES = (7, 0)


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """Per-prompt maps of one image, at the image's own size."""

    labels: list[str]
    probabilities: np.ndarray  # (N, H, W) float32 in [0, 1]
    threshold: float

    @cached_property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool: probability >= threshold."""
        return self.probabilities >= self.threshold

    @cached_property
    def scores(self) -> np.ndarray:
        """(N,) float32: the highest probability of each prompt, how sure the model is it is there."""
        return self.probabilities.reshape(len(self.labels), -1).max(axis=1)

    def label_image(self) -> np.ndarray:
        """(H, W) uint8: 0 background, k for prompt k (1-based) where it is the likeliest above threshold."""
        if len(self.labels) > 255:
            raise ValueError("a uint8 label image holds at most 255 prompts")
        best = self.probabilities.argmax(axis=0)
        above = self.probabilities.max(axis=0) >= self.threshold
        return np.where(above, best + 1, 0).astype(np.uint8)


def resolve_device(device: str) -> torch.device:
    limits.check_device_name(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this machine has no CUDA device; use cpu or auto")
    return resolved


def resolve_precision(precision: str, device: torch.device, backend: str = "torch") -> str:
    """`precision`, or for auto the fastest one whose masks stay those of fp32 here, logged with the reason.

    auto is bf16 on a CPU whose bf16 matrix products run clearly faster than fp32's, timed here (cpu_speed: about
    6x with AMX, 2x with AMD's AVX512-BF16; masks IoU 0.994 against fp32 on random full-size weights), fp16 on a
    GPU with tensor cores (CLIP's weights were released in fp16), and fp32 elsewhere. With
    another backend than torch the file's own precision runs the image path; torch then only encodes prompts,
    once per prompt, in fp32.
    """
    limits.check_choice("precision", precision, limits.PRECISIONS)
    if precision != "auto":
        return precision
    if backend != "torch":
        chosen, why = "fp32", f"the {backend} backend runs the image path in its file's precision"
    elif device.type == "cuda":
        fast = torch.cuda.get_device_capability(device) >= TENSOR_CORES
        chosen, why = ("fp16", "tensor cores") if fast else ("fp32", "a GPU without tensor cores")
    else:
        speedup = bf16_speedup()
        chosen = "bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32"
        why = f"bf16 matrix products run at {speedup:.1f}x fp32's speed on this CPU"
    log.info("precision auto: %s on %s (%s)", chosen, device, why)
    return chosen


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of a resolved precision (not auto), refused where it cannot run."""
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 runs on CUDA only; on the CPU use bf16 or fp32")
    if precision == "bf16" and device.type == "cpu" and (speedup := bf16_speedup()) < 1.0:
        log.warning("bf16 matrix products run at %.1fx fp32's speed on this CPU: fp32 is faster here", speedup)
    return DTYPES[precision]


class Segmenter:
    def __init__(
        self,
        model: ClipSeg,
        device: str = "auto",
        precision: str = "fp32",
        input_size: int | tuple[int, int] = 352,
        cache_size: int = 256,
        model_id: str = "model",
        visual_style: VisualPromptStyle | None = None,
        backend: str = "torch",
        int8: str | None = None,
        onnx_file: str | None = None,
    ):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device, backend)
        self.dtype = resolve_dtype(self.precision, self.device)
        size = limits.check_input_size(input_size)
        model.backbone.token_grid(*size)  # rejects sizes that are not multiples of the patch size
        self.input_size: tuple[int, int] = size
        # Before the model moves: an ONNX export is made from the fp32 weights as loaded. The prompt
        # encoders stay in torch whatever runs the image path (see clipseg_ros.engine.backends).
        self.image_path = make_image_path(backend, model, size, self.device, int8=int8, onnx_file=onnx_file)
        self.model = model.eval().to(device=self.device, dtype=self.dtype)
        self.model_id = model_id
        self.visual_style = visual_style or VisualPromptStyle()
        self.tokenizer = Tokenizer(model.config.text.context_length)
        self.cache = EmbeddingCache(cache_size)
        # One caller at a time: the node's stream worker and its service share the model.
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls, weights: str = DEFAULT_WEIGHTS, clip_weights: str = OPENAI_CLIP, **kwargs
    ) -> Segmenter:
        """Load weights (hub id, HF directory, or an original .pth decoder file + CLIP weights)."""
        return cls(load_model(weights, clip_weights), model_id=weights, **kwargs)

    # -- prompts --------------------------------------------------------------------------------

    def _text_embeddings(self, texts: Sequence[str]) -> list[torch.Tensor]:
        keys = [(self.model_id, "text", t) for t in texts]
        found = {key: self.cache.get(key) for key in dict.fromkeys(keys)}
        todo = [key for key, value in found.items() if value is None]
        if todo:
            tokens = self.tokenizer([key[2] for key in todo]).to(self.device)
            for key, embedding in zip(todo, self.model.backbone.encode_text(tokens), strict=True):
                found[key] = embedding
                self.cache.put(key, embedding)
        return [found[key] for key in keys]

    def _visual_embeddings(self, prompts: Sequence[VisualPrompt]) -> list[torch.Tensor]:
        keys = [(self.model_id, "visual", p.content_key, self.visual_style) for p in prompts]
        found = {key: self.cache.get(key) for key in dict.fromkeys(keys)}
        todo = {key: p for key, p in zip(keys, prompts, strict=True) if found[key] is None}
        if todo:
            inputs = torch.stack([
                engineer_visual_prompt(
                    normalize(to_unit_float(p.image, self.device))[0],
                    torch.from_numpy(p.mask_float()).to(self.device),
                    self.visual_style,
                )
                for p in todo.values()
            ]).to(self.dtype)
            for key, embedding in zip(todo, self.model.backbone.encode_image(inputs), strict=True):
                found[key] = embedding
                self.cache.put(key, embedding)
        return [found[key] for key in keys]

    def conditionals(self, prompts: Sequence[Prompt]) -> tuple[torch.Tensor, list[str]]:
        """(N, projection_dim) conditional vectors and their labels, in prompt order.

        An exclusion prompt ("-hand", or a VisualPrompt with exclude) keeps its mark in its label and has its own
        map; `clipseg_ros.engine.exclusion.apply_exclusions` then takes its pixels out of the others'.
        """
        if isinstance(prompts, (str, VisualPrompt)):
            prompts = [prompts]
        if not prompts:
            raise ValueError("no prompts: give at least one text or visual prompt")
        limits.check_prompt_count(len(prompts))
        texts, visuals = [], []
        for p in prompts:
            if isinstance(p, VisualPrompt):
                visuals.append(p)
                if p.text_weight > 0:
                    texts.append(prompt_subject(clean_prompt(p.text)))
            elif isinstance(p, str):
                texts.append(prompt_subject(clean_prompt(p)))  # "-hand" is encoded as "hand"
            else:
                raise ValueError(f"a prompt is a str or a VisualPrompt, got {type(p).__name__}")
        with torch.inference_mode():
            text_emb = iter(self._text_embeddings(texts))
            visual_emb = iter(self._visual_embeddings(visuals))
        rows, labels = [], []
        for p in prompts:
            if isinstance(p, VisualPrompt):
                row = next(visual_emb)
                if p.text_weight > 0:
                    row = (1 - p.text_weight) * row + p.text_weight * next(text_emb)
                labels.append(p.name)
            else:
                row = next(text_emb)
                labels.append(clean_prompt(p))
            rows.append(row)
        check_exclusions(labels)
        return torch.stack(rows), labels

    # -- segmentation ---------------------------------------------------------------------------

    def segment(
        self, image: ImageLike, prompts: Sequence[Prompt], threshold: float = limits.DEFAULT_THRESHOLD
    ) -> SegmentationResult:
        """Per-prompt probabilities and masks of one HxWx3 uint8 RGB image, at its own size."""
        return self.segment_batch([image], prompts, threshold)[0]

    def segment_batch(
        self, images: Sequence[ImageLike], prompts: Sequence[Prompt], threshold: float = limits.DEFAULT_THRESHOLD
    ) -> list[SegmentationResult]:
        """Every prompt on every image: one backbone pass over the images, one decoder pass in all."""
        threshold = limits.check_threshold(threshold)
        if not images:
            raise ValueError("no images to segment")
        sizes = [tuple(as_rgb_tensor(image).shape[-2:]) for image in images]
        with self._lock, torch.inference_mode():
            conditionals, labels = self.conditionals(prompts)
            n = len(labels)
            pixels = to_model_input(images, self.input_size, self.device, self.dtype)
            image_index = torch.arange(len(images), device=self.device).repeat_interleave(n)
            logits = self.image_path(pixels, conditionals.repeat(len(images), 1), image_index)
            results = []
            for i, size in enumerate(sizes):
                probabilities = logits_to_probabilities(logits[i * n : (i + 1) * n], size)
                results.append(SegmentationResult(labels, probabilities, threshold))
        return results

    def warmup(self) -> None:
        """One pass at the input size, so the first camera frame does not pay for allocation."""
        with self._lock, torch.inference_mode():
            pixels = torch.zeros(1, 3, *self.input_size, device=self.device, dtype=self.dtype)
            cond = torch.zeros(1, self.model.config.projection_dim, device=self.device, dtype=self.dtype)
            self.image_path(pixels, cond, torch.zeros(1, dtype=torch.long, device=self.device))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)

    def cache_stats(self) -> dict[str, float]:
        return self.cache.stats()

    def release(self) -> None:
        """Free the model and cached embeddings now (GPU memory included), not whenever GC gets to them.

        A lifecycle node's cleanup calls this; the segmenter is unusable afterwards.
        """
        with self._lock:
            device = self.device
            self.model = self.image_path = None
            self.cache = EmbeddingCache(0)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            _return_freed_memory()


def _return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them for reuse: RSS would not drop)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator decides
        pass
