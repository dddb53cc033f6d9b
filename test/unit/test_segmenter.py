"""The engine's behaviour: early stop, batching over prompts and images, sizes, cache, precision."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from clipseg_ros import Segmenter, VisualPrompt
from clipseg_ros.engine.model import ClipSeg


def image(height=120, width=160, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def support() -> VisualPrompt:
    mask = np.zeros((120, 160), np.uint8)
    mask[30:70, 50:110] = 255
    return VisualPrompt(image(seed=5), mask, label="the thing")


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_early_stop_gives_the_activations_of_the_full_pass_and_skips_later_blocks(tiny_model):
    backbone = tiny_model.backbone
    pixels = torch.randn(2, 3, 64, 96)
    last_block = count_calls(backbone.clip.visual.transformer.resblocks[-1].ln_1)
    with torch.no_grad():
        taken, grid = backbone.dense_activations(pixels, (1, 3))
        assert last_block[0] == 0
        # Reference: open_clip's own blocks, all of them.
        x, _ = backbone._embed(pixels)
        full = []
        for block in backbone.clip.visual.transformer.resblocks:
            x = block(x)
            full.append(x)
    assert last_block[0] == 1
    assert grid == (4, 6)
    torch.testing.assert_close(taken[0], full[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(taken[1], full[3], atol=1e-5, rtol=1e-5)


def test_positional_embedding_is_untouched_on_the_native_grid(tiny_model):
    backbone = tiny_model.backbone
    native = backbone.config.vision.image_size // backbone.patch_size
    table = backbone.positional_embedding((native, native), torch.zeros(1))
    assert torch.equal(table, backbone.clip.visual.positional_embedding)
    assert backbone.positional_embedding((3, 7), torch.zeros(1)).shape == (1 + 21, backbone.config.vision.width)


def test_n_prompts_in_one_call_equal_n_single_calls(tiny_model):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=(96, 128))
    prompts = ["cup", "red mug", support()]
    together = segmenter.segment(image(), prompts)
    for k, prompt in enumerate(prompts):
        alone = segmenter.segment(image(), [prompt])
        np.testing.assert_allclose(together.probabilities[k], alone.probabilities[0], atol=1e-6)
    assert together.labels == ["cup", "red mug", "the thing"]


def test_several_images_in_one_call_equal_single_calls(tiny_model):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=96)
    images = [image(), image(90, 200, seed=1)]
    batch = segmenter.segment_batch(images, ["cup", "floor"])
    for img, result in zip(images, batch, strict=True):
        assert result.probabilities.shape == (2, *img.shape[:2])
        np.testing.assert_allclose(result.probabilities, segmenter.segment(img, ["cup", "floor"]).probabilities,
                                   atol=1e-6)


def test_non_square_input_gives_maps_of_the_original_size(tiny_model):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=(352, 480))
    frame = image(480, 640)
    result = segmenter.segment(frame, ["cup"], threshold=0.4)
    assert result.probabilities.shape == result.masks.shape == (1, 480, 640)
    assert result.probabilities.dtype == np.float32
    assert 0.0 <= result.probabilities.min() and result.probabilities.max() <= 1.0
    assert np.array_equal(result.masks, result.probabilities >= 0.4)
    assert result.scores[0] == pytest.approx(result.probabilities.max())


def test_input_size_must_be_a_multiple_of_the_patch(tiny_model):
    with pytest.raises(ValueError, match="multiple of the patch size"):
        Segmenter(tiny_model, device="cpu", input_size=(350, 352))


def test_cached_prompts_never_run_the_encoders_again(tiny_model):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=96)
    text_runs = count_calls(tiny_model.backbone.clip.transformer)
    visual_runs = count_calls(tiny_model.backbone.clip.visual.ln_post)  # run by encode_image only
    prompts = ["cup", "cup", "red mug", support()]
    first = segmenter.segment(image(), prompts)
    assert text_runs[0] == 1 and visual_runs[0] == 1  # one batch each, duplicates encoded once
    stats = segmenter.cache_stats()
    assert stats["misses"] == 3 and stats["size"] == 3
    second = segmenter.segment(image(), prompts)
    assert text_runs[0] == 1 and visual_runs[0] == 1
    assert segmenter.cache_stats()["hits"] == 3
    np.testing.assert_array_equal(first.probabilities, second.probabilities)


def test_cache_is_bounded(tiny_model):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=96, cache_size=2)
    for text in ("a", "b", "c", "a"):
        segmenter.segment(image(), [text])
    stats = segmenter.cache_stats()
    assert stats["size"] == 2 and stats["misses"] == 4 and stats["hits"] == 0


def test_mixed_prompt_interpolates_visual_and_text(tiny_model):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=96)
    visual = support()
    mixed = VisualPrompt(visual.image, visual.mask, text="cup", text_weight=0.25)
    conds, labels = segmenter.conditionals([visual, "cup", mixed])
    torch.testing.assert_close(conds[2], 0.75 * conds[0] + 0.25 * conds[1])
    assert labels[2] == "visual+cup"


def test_label_image_takes_the_likeliest_prompt_above_threshold(tiny_model):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=96)
    result = segmenter.segment(image(), ["a", "b"], threshold=0.5)
    labels = result.label_image()
    probs = result.probabilities
    expected = np.where(probs.max(0) >= 0.5, probs.argmax(0) + 1, 0)
    assert labels.dtype == np.uint8 and np.array_equal(labels, expected)


@pytest.mark.parametrize(
    "prompts,message",
    [([], "no prompts"), (["  "], "empty text prompt"), ([3], "str or a VisualPrompt")],
)
def test_bad_prompts_are_refused_clearly(tiny_model, prompts, message):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=96)
    with pytest.raises(ValueError, match=message):
        segmenter.segment(image(), prompts)


def test_bad_images_are_refused_clearly(tiny_model):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=96)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        segmenter.segment(np.zeros((10, 10), np.uint8), ["cup"])
    with pytest.raises(ValueError, match="no pixels"):
        segmenter.segment(np.zeros((0, 10, 3), np.uint8), ["cup"])


def test_overlong_prompts_are_truncated_with_one_warning_per_new_prompt(tiny_model, caplog):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=96)
    prompts = ["cup " * 200, "x" * 5000]
    with caplog.at_level(logging.WARNING):
        result = segmenter.segment(image(), prompts)
    assert result.probabilities.shape[0] == 2
    assert caplog.text.count("only the first 75 are used") == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for _ in range(5):  # a camera stream: the same prompts every frame, embeddings cached
            segmenter.segment(image(), prompts)
    assert caplog.text == ""


def test_torch_tensors_are_accepted(tiny_model):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=96)
    frame = image()
    from_numpy = segmenter.segment(frame, ["cup"]).probabilities
    from_hwc = segmenter.segment(torch.from_numpy(frame), ["cup"]).probabilities
    from_chw = segmenter.segment(torch.from_numpy(frame).permute(2, 0, 1).float() / 255, ["cup"]).probabilities
    np.testing.assert_array_equal(from_numpy, from_hwc)
    np.testing.assert_allclose(from_numpy, from_chw, atol=1e-6)


def test_device_and_precision_are_validated(tiny_model):
    with pytest.raises(ValueError, match="fp16 runs on CUDA only"):
        Segmenter(tiny_model, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="precision 'fp8'"):
        Segmenter(tiny_model, device="cpu", precision="fp8")
    with pytest.raises(ValueError, match="not one of auto"):
        Segmenter(tiny_model, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            Segmenter(tiny_model, device="cuda")


def test_bf16_on_cpu_stays_close_to_fp32(tiny_config):
    torch.manual_seed(0)
    fp32 = Segmenter(ClipSeg(tiny_config()), device="cpu", input_size=96)
    torch.manual_seed(0)
    bf16 = Segmenter(ClipSeg(tiny_config()), device="cpu", precision="bf16", input_size=96)
    a = fp32.segment(image(), ["cup", "red mug"]).probabilities
    b = bf16.segment(image(), ["cup", "red mug"]).probabilities
    assert b.dtype == np.float32
    assert np.abs(a - b).max() <= 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_on_cuda_stays_close_to_fp32(tiny_config):
    torch.manual_seed(0)
    fp32 = Segmenter(ClipSeg(tiny_config()), device="cpu", input_size=96)
    torch.manual_seed(0)
    fp16 = Segmenter(ClipSeg(tiny_config()), device="cuda", precision="fp16", input_size=96)
    a = fp32.segment(image(), ["cup"]).probabilities
    b = fp16.segment(image(), ["cup"]).probabilities
    assert np.abs(a - b).max() <= 0.02


def test_warmup_runs_without_touching_the_cache(tiny_model):
    segmenter = Segmenter(tiny_model, device="cpu", input_size=96)
    segmenter.warmup()
    assert segmenter.cache_stats()["misses"] == 0
