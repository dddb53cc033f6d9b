"""Whether bf16 pays on this CPU: its matrix products timed against fp32's, once per process.

A CPU flag does not say it. Measured with torch on 2 threads: AMX (Intel Xeon, Sapphire Rapids on) runs bf16
products at about 6x fp32's speed; AVX512-BF16 without AMX at about 2x on AMD EPYC (Zen 4) and at 0.6x on an
Intel Xeon. So precision auto times one product of the shape that dominates a frame, the backbone's linear layers
at 352x352 (485 tokens of width 768), in both dtypes.

Timed on one thread in that thread's own CPU time: wall-clock time on torch's threads swung from 0.2x to 4.5x on
a machine whose cores other processes kept busy, so a robot's busy CPU picked a precision at random; one thread's
CPU time gave 1.9x to 2.0x there, as on the quiet machine (where 2 threads measure the same ratio).
"""

from __future__ import annotations

import functools
import time

import torch

# bf16 changes the probabilities a little (masks IoU 0.994 against fp32 on random full-size weights): worth it
# only for a clear gain.
BF16_MIN_SPEEDUP = 1.3
PROBE_SHAPE = (485, 768, 768)  # rows, inner, out: the backbone's output projection at 352x352
_ROUNDS = 5


@functools.cache
def bf16_speedup() -> float:
    """fp32's time over bf16's for one backbone-sized matrix product on this CPU: best of five alternated rounds
    each, about 50 ms in all, once per process. torch runs on one thread meanwhile (its thread count is process-wide:
    call it before frames run, as the Segmenter does when it is made)."""
    rows, inner, out = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(rows, inner, generator=generator), torch.randn(inner, out, generator=generator)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the product runs in this thread, so that its CPU time is the product's
    try:
        with torch.inference_mode():
            torch.mm(a16, b16)  # oneDNN compiles its bf16 kernel at the first call
            for _ in range(_ROUNDS):
                for dtype, (a, b) in ((torch.float32, (a32, b32)), (torch.bfloat16, (a16, b16))):
                    start = time.thread_time()
                    torch.mm(a, b)
                    best[dtype] = min(best[dtype], time.thread_time() - start)
    finally:
        torch.set_num_threads(threads)
    return best[torch.float32] / best[torch.bfloat16]
