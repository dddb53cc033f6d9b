"""The overlay people look at: every label tinted, outlined and named, a legend that reads on any image."""

from __future__ import annotations

import numpy as np
import pytest

from clipseg_ros.engine.overlay import BACKDROP, label_colors, render_overlay, with_caption


def scene(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A bright image (white text on it alone would vanish) with label 1 in the top-left quarter."""
    image = np.full((size, size, 3), 250, np.uint8)
    labels = np.zeros((size, size), np.uint8)
    labels[: size // 2, : size // 2] = 1
    labels[size * 3 // 4 :, size * 3 // 4 :] = 2
    return image, labels


@pytest.mark.parametrize("size", [240, 480, 2000])
def test_legend_has_a_swatch_per_label_on_a_dark_backdrop_in_the_emptiest_corner(size):
    image, labels = scene(size)
    out = render_overlay(image, labels, ["red circle", "blue square"])
    assert out.shape == image.shape
    # the top-left and bottom-right corners hold labels: the legend goes top-right, on a dark backdrop
    top_right = out[: size // 6, size // 2 :]
    assert (top_right.sum(axis=2) < 3 * 100).mean() > 0.15
    for color in label_colors(2):  # a swatch of each colour, unblended
        assert (top_right == color).all(axis=2).any()
    assert (out[-5:, :5] == image[-5:, :5]).all()  # the empty corner elsewhere is untouched


def test_each_label_is_tinted_and_outlined_in_its_colour():
    image, labels = scene(480)
    out = render_overlay(image, labels, ["red circle", "blue square"], alpha=0.5)
    color = label_colors(1)[0].astype(float)
    inside = out[200, 40].astype(float)  # in label 1, away from its tag and outline
    np.testing.assert_allclose(inside, 0.5 * 250 + 0.5 * color, atol=1)
    edge = out[239, 100]  # the region's border
    assert np.abs(edge.astype(float) - color).max() < 60


def test_labels_without_pixels_are_in_the_legend_only_and_mismatched_sizes_are_refused():
    image, _ = scene(200)
    out = render_overlay(image, np.zeros((200, 200), np.uint8), ["nothing here"])
    assert (out[100:, :] == image[100:, :]).all()
    assert (out[:40, :100] < np.asarray(BACKDROP) + 60).all(axis=2).any()
    with pytest.raises(ValueError, match="does not match"):
        render_overlay(image, np.zeros((10, 10), np.uint8), ["x"])


def test_caption_is_a_band_below_the_picture_wrapped_to_its_width():
    image = np.zeros((120, 160, 3), np.uint8)
    text = "small model trained here on synthetic shapes; for real scenes pass the released weights"
    out = with_caption(image, [text], (20, 60, 130))
    assert out.shape[1] == 160 and out.shape[0] > 120 + 30  # several lines on a narrow image
    assert (out[:120] == image).all()
    band = out[120:]
    assert (band == (20, 60, 130)).all(axis=2).mean() > 0.5 and (band.min(axis=2) > 200).any()  # white text
