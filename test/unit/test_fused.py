"""CPU inference with fewer passes over the activations (engine/model/fused.py): the decoder's linear layers
with bias and ReLU fused by oneDNN, CLIP's MLP with QuickGELU's scales on its matrix products. Taken in CPU
inference, torch's own ops while training or tracing, same numbers either way."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from clipseg_ros.engine.model import ClipSeg, ClipSegConfig
from clipseg_ros.engine.model.fused import PackedBlock, linear, quick_gelu_mlp

FUSED_OP = "mkldnn::_linear_pointwise"


def ran_fused(fn) -> bool:
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        fn()
    return any(event.name == FUSED_OP for event in trace.events())


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("relu", [False, True])
def test_inference_takes_the_fused_op_with_torchs_numbers(dtype, tolerance, relu):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 50, 16, generator=generator).to(dtype)
    weight = (torch.randn(40, 16, generator=generator) / 4).to(dtype)
    bias = torch.randn(40, generator=generator).to(dtype)
    expected = F.linear(x.float(), weight.float(), bias.float())
    expected = F.relu(expected) if relu else expected
    with torch.inference_mode():
        assert ran_fused(lambda: linear(x, weight, bias, relu=relu))
        got = linear(x, weight, bias, relu=relu)
    assert got.dtype == dtype and got.shape == (3, 50, 40)
    torch.testing.assert_close(got.float(), expected, atol=tolerance * expected.abs().max().item(), rtol=0)


def test_training_and_tracing_use_torchs_ops():
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    assert not ran_fused(lambda: linear(x, layer.weight, layer.bias, relu=True).sum().backward())
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    with torch.no_grad():
        exported = torch.export.export(_Relu(layer), (x,))
    assert FUSED_OP.replace("::", ".") not in str(exported.graph)


class _Relu(torch.nn.Module):
    def __init__(self, layer: torch.nn.Linear):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.layer.weight, self.layer.bias, relu=True)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_quick_gelu_mlp_is_open_clips_mlp(tiny_model, dtype, tolerance):
    mlp = tiny_model.backbone.clip.visual.transformer.resblocks[0].mlp
    x = torch.randn(2, 10, mlp.c_fc.in_features, generator=torch.Generator().manual_seed(0))
    expected = mlp(x).detach()  # gradients on: open_clip's own forward, x * sigmoid(1.702 x)
    with torch.inference_mode():
        got = quick_gelu_mlp(mlp.to(dtype), x.to(dtype))
    assert got.dtype == dtype and got.shape == expected.shape
    torch.testing.assert_close(got.float(), expected, atol=tolerance * expected.abs().max().item(), rtol=0)


def test_logits_are_the_same_fused_and_unfused():
    torch.manual_seed(0)
    model = ClipSeg(ClipSegConfig.tiny()).eval()
    pixels, conditionals = torch.randn(2, 3, 64, 96), torch.randn(3, model.config.projection_dim)
    image_index = torch.tensor([0, 1, 1])
    unfused = model(pixels, conditionals, image_index)  # gradients on: torch's ops
    with torch.inference_mode():
        assert ran_fused(lambda: model(pixels, conditionals, image_index))
        fused = model(pixels, conditionals, image_index)
    torch.testing.assert_close(fused, unfused.detach(), atol=1e-5 * unfused.abs().max().item(), rtol=0)


def backbone_output(model: ClipSeg, pixels: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        activations, _ = model.backbone.dense_activations(pixels, model.config.extract_layers)
    return activations[-1].float()


def test_bf16_blocks_run_on_weights_packed_once_and_repacked_when_they_change(tiny_model, monkeypatch):
    model = tiny_model.to(torch.bfloat16)
    pixels = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    blocks = max(model.config.extract_layers) + 1
    with monkeypatch.context() as patch:
        patch.setattr(PackedBlock, "applies", staticmethod(lambda block, x: False))
        unpacked = backbone_output(model, pixels)
    assert model.backbone._packed == {}
    packed = backbone_output(model, pixels)
    assert sorted(model.backbone._packed) == list(range(blocks))
    torch.testing.assert_close(packed, unpacked, atol=3e-2 * unpacked.abs().max().item(), rtol=0)
    first = dict(model.backbone._packed)
    backbone_output(model, pixels)
    assert model.backbone._packed == first  # packed once

    with torch.no_grad():
        model.backbone.clip.visual.transformer.resblocks[0].mlp.c_fc.weight.mul_(-1)
    changed = backbone_output(model, pixels)
    assert model.backbone._packed[0] is not first[0] and model.backbone._packed[1] is first[1]
    with monkeypatch.context() as patch:
        patch.setattr(PackedBlock, "applies", staticmethod(lambda block, x: False))
        expected = backbone_output(model, pixels)
    torch.testing.assert_close(changed, expected, atol=3e-2 * expected.abs().max().item(), rtol=0)
    assert (changed - packed).abs().max() > 0.1 * packed.abs().max()

    model.float()
    assert model.backbone._packed == {}  # a dtype move drops them; fp32 does not pack
    backbone_output(model, pixels.float())
    assert model.backbone._packed == {}


def test_weights_made_in_inference_mode_are_packed_too():
    with torch.inference_mode():
        torch.manual_seed(0)
        model = ClipSeg(ClipSegConfig.tiny()).eval().to(torch.bfloat16)
        pixels = torch.randn(1, 3, 64, 96).to(torch.bfloat16)
        model.backbone.dense_activations(pixels, model.config.extract_layers)
        assert model.backbone._packed


def test_a_block_with_layer_scale_is_not_packed():
    """The packed block adds the residual inside its products, which a LayerScale between them would break."""
    from open_clip.transformer import ResidualAttentionBlock

    x = torch.zeros(1, 5, 16, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert PackedBlock.applies(ResidualAttentionBlock(16, 2), x)
        assert not PackedBlock.applies(ResidualAttentionBlock(16, 2, ls_init_value=0.1), x)
