"""Visual prompts: a support image + mask, prepared as the released weights saw them before CLIP sees it.

The default is the original code's best visual prompt engineering, `crop_blur_highlight352`: on the
ImageNet-normalised support at its own resolution, the background is blurred and darkened to 10 %
(`img * mask + 0.1 * blur(img) * (1 - mask)`, so it tends to the mean colour, not to black); then the
object's box, widened by 0.1 of its height and width and clamped to the image, is cropped, padded to a
square with zeros (the mean colour) and resized to 352 x 352 with nearest-neighbour.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from clipseg_ros.engine import limits
from clipseg_ros.engine.prompts import EXCLUDE_MARK, is_exclusion, prompt_subject


@dataclass(frozen=True)
class VisualPromptStyle:
    """How a support image and its mask become CLIP's input.

    `name` picks the preparation (limits.VISUAL_PROMPT_STYLES):
    - "crop_blur_highlight352" (default): the original's, as described above; the released weights
      were trained and evaluated on it.
    - "square_window": this package's earlier one: a square window around the widened box, not clamped
      (blurred real background where the original pads with the mean), resized (bilinear) before the
      blur and darkening.
    """

    name: str = "crop_blur_highlight352"
    crop: bool = True
    context: float = 0.1  # margin around the object's box, as a fraction of its size
    blur: bool = True
    blur_kernel: int = 15
    blur_sigma: float = 3.0
    background: float = 0.1  # brightness left to the background (1.0: unchanged)
    size: int = 352

    def __post_init__(self) -> None:
        if self.name not in limits.VISUAL_PROMPT_STYLES:
            raise ValueError(
                f"visual prompt style {self.name!r} is not one of {', '.join(limits.VISUAL_PROMPT_STYLES)}"
            )
        if self.context < 0 or not 0 <= self.background <= 1:
            raise ValueError("context must be >= 0 and background in [0, 1]")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0 or self.blur_sigma <= 0:
            raise ValueError("blur_kernel must be odd and positive, blur_sigma > 0")
        if self.size < 16:
            raise ValueError(f"visual prompt size {self.size} is too small")


@dataclass(frozen=True, eq=False)
class VisualPrompt:
    """A support image (HxWx3 uint8 RGB) and a mask of the object in it (HxW bool, uint8 or float).

    With `text` and `text_weight` w > 0 the conditional is (1 - w) * visual + w * text. With `exclude` (or a label
    written with the exclusion mark, "-hand") its pixels are removed from every other prompt's.
    The arrays are taken as they are at construction (their digest is cached): make a new prompt
    rather than changing them in place.
    """

    image: np.ndarray
    mask: np.ndarray
    text: str = ""
    text_weight: float = 0.0
    label: str = ""
    exclude: bool = False

    def __post_init__(self) -> None:
        if is_exclusion(self.label):  # one syntax with text prompts: the mark on the label
            object.__setattr__(self, "label", prompt_subject(self.label))
            object.__setattr__(self, "exclude", True)
        image, mask = self.image, self.mask
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("visual prompt image must be an HxWx3 uint8 RGB array")
        if not isinstance(mask, np.ndarray) or mask.ndim != 2:
            raise ValueError("visual prompt mask must be an HxW array")
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"visual prompt mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{image.shape[1]}x{image.shape[0]}: they must have the same size"
            )
        if not 0.0 <= self.text_weight <= 1.0:
            raise ValueError(f"text_weight must be in [0, 1], got {self.text_weight}")
        if self.text_weight > 0 and not self.text.strip():
            raise ValueError("text_weight > 0 needs a text to mix with the visual prompt")
        if not (self.mask_float() >= 0.5).any():
            raise ValueError("visual prompt mask marks no pixel of the object")

    @property
    def name(self) -> str:
        name = self.label or (f"visual+{self.text}" if self.text_weight > 0 else "visual")
        return EXCLUDE_MARK + name if self.exclude else name

    def mask_float(self) -> np.ndarray:
        """The mask as float32 in [0, 1]: non-zero integers are the object."""
        if self.mask.dtype == np.bool_ or np.issubdtype(self.mask.dtype, np.integer):
            return (self.mask > 0).astype(np.float32)
        return np.clip(self.mask.astype(np.float32), 0.0, 1.0)

    @cached_property
    def content_key(self) -> str:
        """A digest of the pixels and the mask: equal prompts share one cached embedding.

        Computed once per prompt: the node looks its visual prompts up on every frame.
        """
        digest = hashlib.blake2b(digest_size=16)
        for array in (self.image, self.mask_float()):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def object_box(mask: torch.Tensor, context: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the mask's box widened by `context` of its height (rows) and width
    (columns) on each side, clamped to the image: the original's arithmetic, rows and columns each by their own.
    """
    h, w = mask.shape
    rows = torch.nonzero(mask.amax(dim=1) >= 0.5).flatten()
    cols = torch.nonzero(mask.amax(dim=0) >= 0.5).flatten()
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    height, width = bottom - top, right - left
    # int() of a float, as the original: the widened edges are floored, in the same floating point.
    return (
        int(max(0, top - context * height)),
        int(min(h, bottom + context * height)),
        int(max(0, left - context * width)),
        int(min(w, right + context * width)),
    )


def pad_to_square(x: torch.Tensor) -> torch.Tensor:
    """(..., side, side): zeros added to the short side, split evenly (the extra one after)."""
    h, w = x.shape[-2:]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return F.pad(x, (left, side - w - left, top, side - h - top))


def _reflect101(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of 0..n-1 extended by `pad` on each side, mirrored without repeating the edge (OpenCV's
    default border); for any n, where torch's reflect padding needs n > pad."""
    index = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    index = index.abs() % period
    return torch.where(index >= n, period - index, index)


def gaussian_blur_reflect101(image: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """(C, H, W) blurred as cv2.GaussianBlur(img, (kernel, kernel), sigma) does, which the original used."""
    x = torch.arange(kernel, dtype=image.dtype, device=image.device) - (kernel - 1) / 2
    weights = torch.exp(-(x**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    pad, channels = kernel // 2, image.shape[0]
    h, w = image.shape[-2:]
    padded = image[:, _reflect101(h, pad, image.device)][:, :, _reflect101(w, pad, image.device)]
    out = F.conv2d(padded[None], weights.view(1, 1, -1, 1).expand(channels, 1, kernel, 1), groups=channels)
    return F.conv2d(out, weights.view(1, 1, 1, -1).expand(channels, 1, 1, kernel), groups=channels)[0]


def _crop_blur_highlight(image: torch.Tensor, mask: torch.Tensor, style: VisualPromptStyle) -> torch.Tensor:
    background = gaussian_blur_reflect101(image, style.blur_kernel, style.blur_sigma) if style.blur else image
    highlighted = image * mask + style.background * background * (1 - mask)
    if style.crop:
        top, bottom, left, right = object_box(mask, style.context)
        highlighted = pad_to_square(highlighted[:, top:bottom, left:right])
    return F.interpolate(highlighted[None], size=(style.size, style.size), mode="nearest")[0]


def crop_box(mask: torch.Tensor, context: float) -> tuple[int, int, int]:
    """(top, left, side) of the square around the mask's box, widened by `context` on each side
    ("square_window" style). The square may reach outside the image; the caller pads.
    """
    rows = torch.nonzero(mask.amax(dim=1) >= 0.5).flatten()
    cols = torch.nonzero(mask.amax(dim=0) >= 0.5).flatten()
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    height, width = bottom - top, right - left
    top -= round(context * height)
    left -= round(context * width)
    height += 2 * round(context * height)
    width += 2 * round(context * width)
    side = max(height, width)
    return top - (side - height) // 2, left - (side - width) // 2, side


def _crop_padded(x: torch.Tensor, top: int, left: int, side: int) -> torch.Tensor:
    """x[..., top:top+side, left:left+side] with zeros where the window leaves x."""
    h, w = x.shape[-2:]
    pad = (max(0, -left), max(0, left + side - w), max(0, -top), max(0, top + side - h))
    x = F.pad(x, pad)
    top, left = top + pad[2], left + pad[0]
    return x[..., top : top + side, left : left + side]


def _square_window(image: torch.Tensor, mask: torch.Tensor, style: VisualPromptStyle) -> torch.Tensor:
    if style.crop:
        top, left, side = crop_box(mask, style.context)
        image = _crop_padded(image, top, left, side)
        mask = _crop_padded(mask, top, left, side)
    size = (style.size, style.size)
    image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    mask = F.interpolate(mask[None, None], size=size, mode="bilinear", align_corners=False)[0]
    background = image
    if style.blur:
        # Imported here: torchvision's import (about 1 s, it imports torch._dynamo) is paid by visual prompts, not by
        # every process that imports the engine.
        from torchvision.transforms.functional import gaussian_blur

        background = gaussian_blur(image, [style.blur_kernel] * 2, [style.blur_sigma] * 2)
    return image * mask + style.background * background * (1 - mask)


def engineer_visual_prompt(
    image: torch.Tensor, mask: torch.Tensor, style: VisualPromptStyle = VisualPromptStyle()
) -> torch.Tensor:
    """(3, size, size) CLIP input from an ImageNet-normalised (3, H, W) image and an (H, W) mask in [0, 1]."""
    prepare = _crop_blur_highlight if style.name == "crop_blur_highlight352" else _square_window
    return prepare(image, mask, style)
