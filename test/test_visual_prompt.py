"""Visual prompt engineering on small arrays whose answers can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from clipseg_ros.visual_prompt import VisualPrompt, VisualPromptStyle, crop_box, engineer_visual_prompt


def box_mask(h, w, top, left, bottom, right) -> torch.Tensor:
    mask = torch.zeros(h, w)
    mask[top:bottom, left:right] = 1
    return mask


def test_crop_box_adds_context_and_squares_around_the_object():
    # object rows 10..29 (20 tall), cols 20..59 (40 wide); context 0.1 -> 2 and 4 px each side
    top, left, side = crop_box(box_mask(100, 100, 10, 20, 30, 60), context=0.1)
    # widened box: rows 8..32 (24), cols 16..64 (48); squared to 48, centred vertically
    assert (top, left, side) == (8 - 12, 16, 48)


def test_crop_reaching_outside_the_image_is_padded():
    image = torch.ones(3, 20, 20)
    mask = box_mask(20, 20, 0, 0, 10, 20)  # touches the top edge, wider than tall
    out = engineer_visual_prompt(image, mask, VisualPromptStyle(blur=False, background=1.0, size=24, context=0.0))
    # square of side 20 centred on rows 0..9 starts at row -5: the top quarter is zero padding
    assert out.shape == (3, 24, 24)
    assert torch.all(out[:, :5] == 0) and torch.all(out[:, 8:16] == 1)


def test_background_is_darkened_to_ten_percent_and_the_object_kept():
    image = torch.rand(3, 32, 32)
    mask = box_mask(32, 32, 8, 8, 24, 24)
    out = engineer_visual_prompt(image, mask, VisualPromptStyle(crop=False, blur=False, size=32))
    torch.testing.assert_close(out[:, 8:24, 8:24], image[:, 8:24, 8:24])
    torch.testing.assert_close(out[:, :8], 0.1 * image[:, :8])


def test_blur_reaches_the_background_only():
    image = torch.rand(3, 32, 32)
    mask = box_mask(32, 32, 8, 8, 24, 24)
    out = engineer_visual_prompt(image, mask, VisualPromptStyle(crop=False, size=32))
    blurred = gaussian_blur(image, [15, 15], [3.0, 3.0])
    torch.testing.assert_close(out[:, 8:24, 8:24], image[:, 8:24, 8:24])
    torch.testing.assert_close(out[:, :8], 0.1 * blurred[:, :8])
    assert not torch.allclose(out[:, :8], 0.1 * image[:, :8])


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
