"""Visual prompt engineering: the default against an implementation of the original's description, and small
arrays whose answers can be worked out by hand."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from clipseg_ros.engine.visual_prompt import VisualPrompt, VisualPromptStyle, crop_box, engineer_visual_prompt

SQUARE_WINDOW = VisualPromptStyle(name="square_window")


def crop_blur_highlight352(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The original's best visual prompt, written from its description (issue 9 item 10), in numpy and cv2.

    image: (H, W, 3) float32, ImageNet-normalised; mask: (H, W) bool. Returns (3, 352, 352).
    """
    blurred = cv2.GaussianBlur(image, (15, 15), 3)  # OpenCV's default border, as the original
    m = mask.astype(np.float32)[..., None]
    highlighted = image * m + 0.1 * blurred * (1 - m)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    height, width = bottom - top, right - left
    top, bottom = int(max(0, top - 0.1 * height)), int(min(mask.shape[0], bottom + 0.1 * height))
    left, right = int(max(0, left - 0.1 * width)), int(min(mask.shape[1], right + 0.1 * width))
    crop = highlighted[top:bottom, left:right]
    side = max(crop.shape[:2])
    square = np.zeros((side, side, 3), np.float32)  # zero is the mean colour after normalisation
    y, x = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    # Nearest-neighbour as torch's interpolate (the original's resize) computes it: floor(i * in / out) in float32.
    index = np.minimum(np.floor(np.arange(352, dtype=np.float32) * (np.float32(side) / np.float32(352))), side - 1)
    index = index.astype(np.int64)
    return square[index][:, index].transpose(2, 0, 1)


def support(h: int, w: int, top: int, left: int, bottom: int, right: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(h, w, 3)).astype(np.float32)  # already "normalised": around 0, unit spread
    mask = np.zeros((h, w), bool)
    mask[top:bottom, left:right] = True
    mask[top + (bottom - top) // 2, left] = False  # not a plain rectangle
    return image, mask


@pytest.mark.parametrize(
    "case",
    [
        (120, 120, 30, 40, 70, 100),  # square support, object inside
        (90, 200, 20, 150, 60, 195),  # wide support, object near the right edge (beyond the height)
        (200, 90, 150, 10, 195, 50),  # tall support, object near the bottom (beyond the width)
        (64, 80, 0, 0, 25, 80),  # object on the top edge, as wide as the image
        (50, 70, 37, 61, 50, 70),  # object in the bottom-right corner
        (33, 47, 5, 9, 14, 11),  # odd sides, a thin object: crops padded on the short side
        (400, 300, 100, 120, 103, 190),  # large support: blur at its own resolution, then nearest down
    ],
)
def test_default_is_the_originals_crop_blur_highlight352(case):
    image, mask = support(*case)
    expected = crop_blur_highlight352(image, mask)
    out = engineer_visual_prompt(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask).float())
    assert out.shape == (3, 352, 352)
    torch.testing.assert_close(out, torch.from_numpy(expected), atol=1e-5, rtol=1e-5)


def test_default_clamps_to_the_image_and_pads_the_short_side_with_the_mean():
    # object rows 20..59, cols 160..199 of a 90x200 support: widened by 4 -> rows 16..63 (48), cols 156..199
    # (44: clamped to the width, where the original clamped columns by the height); 2 zero columns each side
    image, mask = support(90, 200, 20, 160, 60, 200)
    out = engineer_visual_prompt(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask).float())
    nonzero_cols = out.abs().sum(dim=(0, 1)) > 0
    # nearest from 48 to 352: output column i shows column floor(i * 48 / 352); 0..14 -> 0..1, 338.. -> 46..47
    assert not nonzero_cols[:15].any() and not nonzero_cols[338:].any() and nonzero_cols[15:338].all()
    assert (out.abs().sum(dim=(0, 2)) > 0).all()  # no padded rows


def box_mask(h, w, top, left, bottom, right) -> torch.Tensor:
    mask = torch.zeros(h, w)
    mask[top:bottom, left:right] = 1
    return mask


def test_crop_box_adds_context_and_squares_around_the_object():
    # object rows 10..29 (20 tall), cols 20..59 (40 wide); context 0.1 -> 2 and 4 px each side
    top, left, side = crop_box(box_mask(100, 100, 10, 20, 30, 60), context=0.1)  # "square_window"
    # widened box: rows 8..32 (24), cols 16..64 (48); squared to 48, centred vertically
    assert (top, left, side) == (8 - 12, 16, 48)


def test_crop_reaching_outside_the_image_is_padded():
    image = torch.ones(3, 20, 20)
    mask = box_mask(20, 20, 0, 0, 10, 20)  # touches the top edge, wider than tall
    style = VisualPromptStyle(name="square_window", blur=False, background=1.0, size=24, context=0.0)
    out = engineer_visual_prompt(image, mask, style)
    # square of side 20 centred on rows 0..9 starts at row -5: the top quarter is zero padding
    assert out.shape == (3, 24, 24)
    assert torch.all(out[:, :5] == 0) and torch.all(out[:, 8:16] == 1)


@pytest.mark.parametrize("name", ["crop_blur_highlight352", "square_window"])
def test_background_is_darkened_to_ten_percent_and_the_object_kept(name):
    image = torch.rand(3, 32, 32)
    mask = box_mask(32, 32, 8, 8, 24, 24)
    out = engineer_visual_prompt(image, mask, VisualPromptStyle(name=name, crop=False, blur=False, size=32))
    torch.testing.assert_close(out[:, 8:24, 8:24], image[:, 8:24, 8:24])
    torch.testing.assert_close(out[:, :8], 0.1 * image[:, :8])


@pytest.mark.parametrize("name", ["crop_blur_highlight352", "square_window"])
def test_blur_reaches_the_background_only(name):
    image = torch.rand(3, 32, 32)
    mask = box_mask(32, 32, 8, 8, 24, 24)
    out = engineer_visual_prompt(image, mask, VisualPromptStyle(name=name, crop=False, size=32))
    blurred = gaussian_blur(image, [15, 15], [3.0, 3.0])
    torch.testing.assert_close(out[:, 8:24, 8:24], image[:, 8:24, 8:24])
    torch.testing.assert_close(out[:, :8], 0.1 * blurred[:, :8])
    assert not torch.allclose(out[:, :8], 0.1 * image[:, :8])


def test_the_style_is_named_and_unknown_names_refused():
    assert VisualPromptStyle().name == "crop_blur_highlight352"
    with pytest.raises(ValueError, match="crop_blur_highlight352, square_window"):
        VisualPromptStyle(name="fancy")
    image, mask = support(60, 80, 10, 20, 30, 50)
    x, m = torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask).float()
    assert not torch.allclose(engineer_visual_prompt(x, m), engineer_visual_prompt(x, m, SQUARE_WINDOW))


def test_visual_prompt_validation():
    img = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(ValueError, match="mask is 10x10 but its image is 12x10"):
        VisualPrompt(img, np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="marks no pixel"):
        VisualPrompt(img, np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match="needs a text"):
        VisualPrompt(img, np.ones((10, 12), bool), text_weight=0.5)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        VisualPrompt(img, np.ones((10, 12), bool), text="cup", text_weight=1.5)


def test_content_key_follows_pixels_and_mask():
    img = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:7] = 255
    other = mask.copy()
    other[6, 6] = 255
    assert VisualPrompt(img, mask).content_key == VisualPrompt(img.copy(), mask > 0).content_key
    assert VisualPrompt(img, mask).content_key != VisualPrompt(img, other).content_key
