"""The image path in ONNX Runtime: on the CPU, or on CUDA through onnxruntime-gpu's CUDA provider."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..export import INPUT_NAMES, OUTPUT_NAME, ExportInfo
from .base import ONNX_INSTALL, BackendUnavailable, import_optional


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
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.info = ExportInfo.from_metadata(self.session.get_modelmeta().custom_metadata_map, path)

    def __call__(self, pixels: torch.Tensor, conditionals: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        inputs = (pixels.float().contiguous(), conditionals.float().contiguous(), image_index.long().contiguous())
        if self.device.type != "cuda":
            feeds = {name: tensor.numpy() for name, tensor in zip(INPUT_NAMES, inputs, strict=True)}
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
