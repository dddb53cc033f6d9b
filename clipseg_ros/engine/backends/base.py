"""What every backend of the image path is, and how a backend says it cannot run here."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol

import torch

ONNX_INSTALL = "pip install onnx onnxscript onnxruntime (or: pip install -r requirements/onnx.txt)"
TENSORRT_INSTALL = "pip install tensorrt (needs an NVIDIA GPU and driver), plus the onnx tools: " + ONNX_INSTALL


class BackendUnavailable(RuntimeError):
    """A backend that cannot run on this machine; the message says why and what to install.

    Never caught to fall back to another backend: the user asked for this one.
    """


class ImagePath(Protocol):
    """Backbone through decoder: (B, 3, H, W) normalised pixels, (N, D) conditionals and the (N,) image
    each conditional segments, to (N, H, W) logits at the input size."""

    name: str

    def __call__(
        self, pixels: torch.Tensor, conditionals: torch.Tensor, image_index: torch.Tensor
    ) -> torch.Tensor: ...


def import_optional(module: str, purpose: str, install: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"{purpose} needs the Python module {module!r}, which is not installed here "
                                 f"({exc}): {install}") from exc
