"""Our loader + model + engine against transformers' CLIPSegForImageSegmentation on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipseg_ros import Segmenter
from clipseg_ros.checkpoints import load_hf, save_hf
from clipseg_ros.preprocess import normalize
from clipseg_ros.prompts import Tokenizer

transformers = pytest.importorskip("transformers")

TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
TINY_VISION = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=5, num_attention_heads=2,
                   patch_size=16, image_size=64)


def build_hf(config, seed: int = 0):
    """A random CLIPSeg whose logits have a realistic spread (about +-10, not HF init's +-3000),
    so an absolute tolerance means what it means on real weights."""
    torch.manual_seed(seed)
    model = transformers.CLIPSegForImageSegmentation(config).eval()
    head = model.decoder.transposed_convolution
    last = head[-1] if isinstance(head, torch.nn.Sequential) else head
    with torch.no_grad():
        probe = model(pixel_values=torch.randn(1, 3, 352, 352), input_ids=Tokenizer()(["probe"])).logits
        scale = 5.0 / probe.std()
        last.weight.mul_(scale)
        last.bias.mul_(scale)
    return model


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (352, 352, 3), generator=g, dtype=torch.uint8)
    support = torch.randint(0, 256, (2, 3, 352, 352), generator=g, dtype=torch.uint8)
    return image, normalize(support.float() / 255)


def compare(hf_model, ours, texts=("a cup", "the handle of a red mug")):
    image, support = inputs()
    pixels = normalize(image.permute(2, 0, 1)[None].float() / 255)
    tokens = Tokenizer()(list(texts))
    with torch.no_grad():
        ref_text = hf_model(pixel_values=pixels.expand(len(texts), -1, -1, -1), input_ids=tokens).logits
        ours_text = ours(pixels, ours.backbone.encode_text(tokens), torch.zeros(len(texts), dtype=torch.long))
        ref_visual = hf_model(pixel_values=pixels.expand(2, -1, -1, -1), conditional_pixel_values=support).logits
        ours_visual = ours(pixels.expand(2, -1, -1, -1), ours.backbone.encode_image(support))
    return image, ref_text, ours_text, ref_visual, ours_visual


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    config = transformers.CLIPSegConfig(vision_config=dict(patch_size=16), reduce_dim=64,
                                        use_complex_transposed_convolution=True)
    hf_model = build_hf(config)
    directory = tmp_path_factory.mktemp("rd64-refined")
    hf_model.save_pretrained(directory)
    return hf_model, load_hf(str(directory))


def test_full_size_rd64_refined_logits_match_transformers(full_size):
    hf_model, ours = full_size
    assert ours.config.reduce_dim == 64 and ours.config.refined_head and ours.config.extract_layers == (3, 6, 9)
    _, ref_text, ours_text, ref_visual, ours_visual = compare(hf_model, ours)
    assert ours_text.shape == ref_text.shape == (2, 352, 352)
    assert ref_text.abs().max() > 1.0  # the comparison is not between two near-zero maps
    assert (ours_text - ref_text).abs().max().item() <= 1e-4
    assert (ours_visual - ref_visual).abs().max().item() <= 1e-4


def test_full_size_engine_probabilities_match_transformers(full_size):
    hf_model, ours = full_size
    segmenter = Segmenter(ours, device="cpu", input_size=352)
    image, ref_text, *_ = compare(hf_model, ours)
    result = segmenter.segment(image.numpy(), ["a cup", "the handle of a red mug"])
    assert result.probabilities.shape == (2, 352, 352)
    np.testing.assert_allclose(result.probabilities, torch.sigmoid(ref_text).numpy(), atol=2e-5)


@pytest.mark.parametrize("refined,reduce_dim", [(False, 64), (False, 16), (True, 16)])
def test_small_configs_match_transformers(tmp_path, refined, reduce_dim):
    config = transformers.CLIPSegConfig(text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=24,
                                        extract_layers=[1, 2, 3], reduce_dim=reduce_dim,
                                        decoder_intermediate_size=32,
                                        use_complex_transposed_convolution=refined)
    hf_model = build_hf(config, seed=reduce_dim)
    hf_model.save_pretrained(tmp_path)
    ours = load_hf(str(tmp_path))
    assert ours.config.refined_head is refined and ours.config.reduce_dim == reduce_dim
    _, ref_text, ours_text, ref_visual, ours_visual = compare(hf_model, ours)
    assert (ours_text - ref_text).abs().max().item() <= 1e-4
    assert (ours_visual - ref_visual).abs().max().item() <= 1e-4


def test_our_checkpoints_load_in_transformers(tmp_path, tiny_model):
    save_hf(tiny_model, tmp_path)
    hf_model = transformers.CLIPSegForImageSegmentation.from_pretrained(tmp_path).eval()
    _, ref_text, ours_text, ref_visual, ours_visual = compare(hf_model, tiny_model)
    assert (ours_text - ref_text).abs().max().item() <= 1e-4
    assert (ours_visual - ref_visual).abs().max().item() <= 1e-4
