"""The image path in ONNX Runtime: on the CPU, or on CUDA through onnxruntime-gpu's CUDA provider."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from clipseg_ros.engine.backends.base import ONNX_INSTALL, BackendUnavailable, import_optional
from clipseg_ros.engine.backends.onnx_export import INPUT_NAMES, OUTPUT_NAME, ExportInfo, unloadable


class OnnxRuntimeImagePath:
    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, device: torch.device):
        ort = import_optional("onnxruntime", "the onnxruntime backend", ONNX_INSTALL)
        self.device = device
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable(
                    f"the onnxruntime backend on {device} needs ONNX Runtime's CUDA provider, and the installed "
                    f"onnxruntime has only {', '.join(ort.get_available_providers())}: pip uninstall onnxruntime && "
                    f"pip install onnxruntime-gpu, or run it with device cpu"
                )
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        # The same thread count as torch's, so that the node's and the benchmark's thread settings hold here too.
        options.intra_op_num_threads = torch.get_num_threads()
        # Attention this peaked leaves softmax probabilities below fp32's normal range, and x86 computes on those
        # (denormals) up to 20x slower: the decoder's softmax took 15-27 ms instead of 1.3 ms per block with
        # random full-size weights, int8 a third longer in all. Flushed to zero they change no mask.
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        try:
            with _flushing_denormals():
                self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ONNX Runtime's errors (InvalidProtobuf, Fail, ...) derive from Exception only
            raise unloadable(path, exc) from exc
        self.info = ExportInfo.from_metadata(self.session.get_modelmeta().custom_metadata_map, path)

    def __call__(self, pixels: torch.Tensor, conditionals: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        inputs = (pixels.float().contiguous(), conditionals.float().contiguous(), image_index.long().contiguous())
        if self.device.type != "cuda":
            feeds = {name: tensor.numpy() for name, tensor in zip(INPUT_NAMES, inputs, strict=True)}
            with _flushing_denormals():  # the calling thread runs a share of the work
                return torch.from_numpy(self.session.run([OUTPUT_NAME], feeds)[0])
        # Inputs are read where torch holds them on the GPU; the logits come back to the host, where
        # the Segmenter's results end up anyway.
        binding = self.session.io_binding()
        for name, tensor in zip(INPUT_NAMES, inputs, strict=True):
            binding.bind_input(name, "cuda", self.device.index or 0, _NUMPY[tensor.dtype], tuple(tensor.shape),
                               tensor.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cpu")
        torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)
        return torch.from_numpy(binding.copy_outputs_to_cpu()[0])


_NUMPY = {torch.float32: np.float32, torch.int64: np.int64}


@contextmanager
def _flushing_denormals() -> Iterator[None]:
    """Denormals flushed to zero on this thread while ONNX Runtime works on it, as they are on its own threads.

    ONNX Runtime sets the flag on the thread that creates a session and leaves it there; the caller's thread
    (the node's, with its torch and numpy work) gets its own setting back.
    """
    flushing = torch.tensor(1e-39).mul(1.0).item() == 0.0  # a denormal survives unless the flag is set
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(flushing)
