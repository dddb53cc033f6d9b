"""Whether bf16 pays on this CPU: its matrix products timed against fp32's, once per process and thread count.

A CPU flag does not say it. Measured with torch on 2 threads: AMX (Intel Xeon, Sapphire Rapids on) runs bf16
products at about 6x fp32's speed; AVX512-BF16 without AMX at about 2x on AMD EPYC (Zen 4) and at 0.6x on an
Intel Xeon. So precision auto times one product of the shape that dominates a frame, the backbone's linear layers
at 352x352 (485 tokens of width 768), in both dtypes.
"""

from __future__ import annotations

import functools
import time

import torch

# bf16 changes the probabilities a little (masks IoU 0.994 against fp32 on random full-size weights): worth it
# only for a clear gain, which also keeps a probe taken under load from flipping the choice.
BF16_MIN_SPEEDUP = 1.3
PROBE_SHAPE = (485, 768, 768)  # rows, inner, out: the backbone's output projection at 352x352
_ROUNDS = 5


def bf16_speedup() -> float:
    """fp32's time over bf16's for one backbone-sized matrix product on this CPU, with torch's threads (best of
    five alternated rounds each, about 30 ms in all; measured once per thread count)."""
    return _speedup(torch.get_num_threads())


@functools.cache
def _speedup(threads: int) -> float:
    rows, inner, out = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(rows, inner, generator=generator), torch.randn(inner, out, generator=generator)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    with torch.inference_mode():
        torch.mm(a16, b16)  # oneDNN compiles its bf16 kernel at the first call
        for _ in range(_ROUNDS):
            for dtype, (a, b) in ((torch.float32, (a32, b32)), (torch.bfloat16, (a16, b16))):
                start = time.perf_counter()
                torch.mm(a, b)
                best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]
