"""Our loader + model + engine against transformers' CLIPSegForImageSegmentation on the same weights."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from background import Background

from clipseg_ros import Segmenter
from clipseg_ros.engine.checkpoints import load_hf, save_hf
from clipseg_ros.engine.preprocess import normalize
from clipseg_ros.engine.prompts import Tokenizer

transformers = pytest.importorskip("transformers")

TEXTS = ("a cup", "the handle of a red mug")
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


def compare(hf_model, ours, texts=TEXTS):
    image, support = inputs()
    pixels = normalize(image.permute(2, 0, 1)[None].float() / 255)
    tokens = Tokenizer()(list(texts))
    with torch.no_grad():
        ref_text = hf_model(pixel_values=pixels.expand(len(texts), -1, -1, -1), input_ids=tokens).logits
        ours_text = ours(pixels, ours.backbone.encode_text(tokens), torch.zeros(len(texts), dtype=torch.long))
        ref_visual = hf_model(pixel_values=pixels.expand(2, -1, -1, -1), conditional_pixel_values=support).logits
        ours_visual = ours(pixels.expand(2, -1, -1, -1), ours.backbone.encode_image(support))
    return image, ref_text, ours_text, ref_visual, ours_visual


def full_size_report() -> dict:
    """The full-size rd64-refined model in transformers and ours loaded from its saved files, compared: what the
    two tests below assert on. Eight forward passes at 352x352: it runs in the background (start_early)."""
    config = transformers.CLIPSegConfig(vision_config=dict(patch_size=16), reduce_dim=64,
                                        use_complex_transposed_convolution=True)
    hf_model = build_hf(config)
    with tempfile.TemporaryDirectory() as directory:
        hf_model.save_pretrained(directory)
        ours = load_hf(directory)
    image, ref_text, ours_text, ref_visual, ours_visual = compare(hf_model, ours)
    result = Segmenter(ours, device="cpu", input_size=352).segment(image.numpy(), list(TEXTS))
    return {
        "config": [ours.config.reduce_dim, ours.config.refined_head, list(ours.config.extract_layers)],
        "shapes": [list(ours_text.shape), list(ref_text.shape)],
        "reference_max": ref_text.abs().max().item(),
        "text_difference": (ours_text - ref_text).abs().max().item(),
        "visual_difference": (ours_visual - ref_visual).abs().max().item(),
        "probabilities_shape": list(result.probabilities.shape),
        "probabilities_difference": float(np.abs(result.probabilities - torch.sigmoid(ref_text).numpy()).max()),
    }


def start_early() -> Background:
    """full_size_report() in a process of its own, on one thread, started with the session (background.py)."""
    background = Background()
    here = Path(__file__).resolve().parent
    report = "import json, test_parity; print(json.dumps(test_parity.full_size_report()))"
    env = {**os.environ, "PYTHONPATH": f"{here}{os.pathsep}{here.parent}", "OMP_NUM_THREADS": "1"}
    background.start("full_size", [sys.executable, "-P", "-c", report], env=env, cwd=background.directory)
    return background


def full_size(early: Background) -> dict:
    done = early.result("full_size", timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    print(report)
    return report


def test_full_size_rd64_refined_logits_match_transformers(early):
    report = full_size(early)
    assert report["config"] == [64, True, [3, 6, 9]]
    assert report["shapes"] == [[2, 352, 352], [2, 352, 352]]
    assert report["reference_max"] > 1.0  # the comparison is not between two near-zero maps
    assert report["text_difference"] <= 1e-4
    assert report["visual_difference"] <= 1e-4


def test_full_size_engine_probabilities_match_transformers(early):
    report = full_size(early)
    assert report["probabilities_shape"] == [2, 352, 352]
    assert report["probabilities_difference"] <= 2e-5


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
