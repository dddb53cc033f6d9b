"""Fewer passes over the activations, and weights laid out once, for inference on the CPU, where a pass over a
hidden layer costs about as much as its matrix product.

The decoder's linear layers: F.linear writes the broadcast bias into its output before the product is added to
it, and a ReLU after it is one more pass over the result. For the decoder's hidden layer (prompts x tokens x
2048: 8 MB in bf16 at 4 prompts, more than a core's cache holds) those passes cost more than the product: the
decoder at 4 prompts took 0.69x its time in bf16 and 0.56x in fp32 with every linear layer of its blocks fused
(one thread, random full-size weights, same logits). oneDNN applies bias and ReLU while the product is in cache.

CLIP's MLPs: QuickGELU, h * sigmoid(1.702 h), is three passes over the (tokens x 3072) hidden layer; see
quick_gelu_mlp. In bf16 the backbone's blocks run on PackedBlock: oneDNN reorders a plain weight into the layout
AMX reads at every call (14 MB per block, every frame); packed once, with QuickGELU's scale folded into the
weights so that the activation runs inside the first product, the whole bf16 frame (4 prompts) took 0.87x its
time on one thread, 0.85x on two; adding the residual inside the products, 0.977x of that again. The cost is a
second copy of those weights: 14 MB per block the frame runs (190 MiB more RSS for rd64's ten).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool = False) -> torch.Tensor:
    """F.linear(x, weight, bias), then ReLU if `relu`."""
    if _fusable(x):
        return _pointwise(x, weight, bias, "relu" if relu else "none")
    y = F.linear(x, weight, bias)
    return F.relu(y) if relu else y


QUICK_GELU = 1.702


def quick_gelu_mlp(mlp: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """open_clip's MLP (c_fc, QuickGELU, c_proj) on `x`.

    In inference on the CPU as c_proj(silu(1.702 h) / 1.702) with h = c_fc(x): both scales ride on the matrix
    products (addmm's alpha and beta), and silu is one pass over h: the whole fp32 frame took 0.95x its time (one
    thread, random full-size weights, within 2e-6 of QuickGELU's own result). bf16 runs on PackedBlock instead.
    """
    if not _fusable(x):
        return mlp(x)
    rows = x.reshape(-1, x.shape[-1])
    hidden = torch.addmm(mlp.c_fc.bias, rows, mlp.c_fc.weight.t(), beta=QUICK_GELU, alpha=QUICK_GELU)
    out = torch.addmm(mlp.c_proj.bias, F.silu(hidden, inplace=True), mlp.c_proj.weight.t(), alpha=1 / QUICK_GELU)
    return out.view(*x.shape[:-1], out.shape[-1])


class PackedBlock:
    """The linear layers of an open_clip residual block, packed once for oneDNN, for CPU inference in bf16.

    silu(1.702 h) / 1.702 is QuickGELU(h): the scales go into the MLP's weights, silu into c_fc's product. The
    residual is added inside the attention's output projection and the MLP's second product, which holds for
    CLIP's blocks: they have no LayerScale (see applies).
    """

    def __init__(self, block: torch.nn.Module, rows: int):
        attn, mlp = block.attn, block.mlp
        self._sources = (attn.in_proj_weight, attn.in_proj_bias, attn.out_proj.weight, attn.out_proj.bias,
                         mlp.c_fc.weight, mlp.c_fc.bias, mlp.c_proj.weight, mlp.c_proj.bias)
        self._versions = self._source_versions()
        pack = torch.ops.mkldnn._reorder_linear_weight  # `rows`: the product's rows it is laid out for
        self._qkv = (pack(attn.in_proj_weight, rows), attn.in_proj_bias)
        self._out = (pack(attn.out_proj.weight, rows), attn.out_proj.bias)
        self._fc = (pack(mlp.c_fc.weight * QUICK_GELU, rows), mlp.c_fc.bias * QUICK_GELU)
        self._proj = (pack(mlp.c_proj.weight / QUICK_GELU, rows), mlp.c_proj.bias)

    @staticmethod
    def applies(block: torch.nn.Module, x: torch.Tensor) -> bool:
        no_layer_scale = isinstance(block.ls_1, torch.nn.Identity) and isinstance(block.ls_2, torch.nn.Identity)
        return no_layer_scale and x.dtype == torch.bfloat16 and _fusable(x)

    def current(self) -> bool:
        """Whether the block's weights are those packed (writing into a tensor in place bumps its version)."""
        return self._versions == self._source_versions()

    def qkv(self, x: torch.Tensor) -> torch.Tensor:
        return _pointwise(x, *self._qkv)

    def out(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """The attention's output projection of `x`, plus `residual`."""
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, *self._out, "add")

    def mlp(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """The MLP of `x`, plus `residual`."""
        return torch.ops.mkldnn._linear_pointwise.binary(_pointwise(x, *self._fc, "swish"), residual, *self._proj,
                                                         "add")

    def _source_versions(self) -> tuple[int, ...]:
        # Weights made under inference mode keep no version: they cannot be written outside it.
        return tuple(0 if tensor.is_inference() else tensor._version for tensor in self._sources)


def _pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str = "none") -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], "")


def _fusable(x: torch.Tensor) -> bool:
    # Not while training (the fused op has no gradient), nor under torch.compile or the ONNX export, which
    # trace torch's own operators.
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and torch.backends.mkldnn.is_available()
    )
