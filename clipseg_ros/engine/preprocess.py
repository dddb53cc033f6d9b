"""Images in, model input out; logits in, probabilities at the caller's size out."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# The released CLIPSeg weights were trained with ImageNet statistics, not CLIP's.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageLike = np.ndarray | torch.Tensor


def as_rgb_tensor(image: ImageLike) -> torch.Tensor:
    """A (3, H, W) uint8 or float tensor from HxWx3 uint8 numpy/torch or a 3xHxW float tensor in [0, 1].

    numpy input is wrapped, not copied.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"image must be an HxWx3 uint8 RGB array, got shape {image.shape} dtype {image.dtype}"
            )
        image = torch.from_numpy(image).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        if image.ndim == 3 and image.shape[-1] == 3 and image.dtype == torch.uint8:
            image = image.permute(2, 0, 1)
        elif not (image.ndim == 3 and image.shape[0] == 3):
            raise ValueError(
                f"tensor image must be HxWx3 uint8 or 3xHxW float in [0, 1], got shape {tuple(image.shape)}"
            )
    else:
        raise ValueError(f"image must be a numpy array or torch tensor, got {type(image).__name__}")
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"image has no pixels: {tuple(image.shape)}")
    return image


@functools.cache
def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: a fresh CUDA tensor every frame would be a blocking host-to-device copy.
    # Outside inference mode, so that training code may use them too.
    with torch.inference_mode(False):
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return mean, std


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] to ImageNet-normalised float."""
    mean, std = _mean_std(images.device)
    return (images - mean) / std


def to_unit_float(image: ImageLike, device: torch.device | str = "cpu") -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] on `device`; uint8 crosses to the device before widening."""
    x = as_rgb_tensor(image).to(device, non_blocking=True)[None]
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def to_model_input(
    images: Sequence[ImageLike],
    size: tuple[int, int],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(B, 3, size) normalised batch, resized (antialiased bilinear, like the PIL resize the
    released weights were used with) and normalised on the device."""
    batch = []
    for image in images:
        x = to_unit_float(image, device)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        batch.append(x)
    return normalize(torch.cat(batch)).to(dtype)


def logits_to_probabilities(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) logits to (N, H, W) float32 probabilities at `size`, batched over N."""
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return torch.sigmoid(logits.float()).cpu().numpy()
