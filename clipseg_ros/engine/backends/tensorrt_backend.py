"""The image path in TensorRT: an fp16 engine built from the fp16 ONNX export, cached on disk.

An engine is specific to the weights, the input size, the code that exported it, the TensorRT version and
the GPU, so the cache file is named after all five and checked before use (export_cache); the first start on
a machine builds it (minutes), later starts load it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from clipseg_ros.engine import limits
from clipseg_ros.engine.backends.base import TENSORRT_INSTALL, BackendUnavailable, import_optional
from clipseg_ros.engine.backends.export_cache import code_key, intact, runtime_cache_dir, seal
from clipseg_ros.engine.backends.onnx_export import INPUT_NAMES, OUTPUT_NAME, ExportInfo, atomic_file, read_info


class TensorRtImagePath:
    name = "tensorrt"

    def __init__(self, onnx_path: str | os.PathLike, digest: str, input_size: tuple[int, int], device: torch.device):
        self.trt = import_optional("tensorrt", "the tensorrt backend", TENSORRT_INSTALL)
        if not torch.cuda.is_available():
            raise BackendUnavailable("the tensorrt backend needs a CUDA GPU, and torch sees none here")
        self.device = device
        self.info: ExportInfo = read_info(onnx_path)
        self.info.check_belongs(digest, input_size, onnx_path)
        engine_path = self.engine_path(digest, input_size)
        if not intact(engine_path):
            self._build(Path(onnx_path), engine_path)
            seal(engine_path)
        logger = self.trt.Logger(self.trt.Logger.WARNING)
        with torch.cuda.device(device):
            self.engine = self.trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise BackendUnavailable(f"TensorRT could not load the engine {engine_path} (its log above says why)")
            self.context = self.engine.create_execution_context()

    def engine_path(self, digest: str, input_size: tuple[int, int]) -> Path:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(self.device))
        major, minor = torch.cuda.get_device_capability(self.device)
        name = (f"{digest[:16]}_{input_size[0]}x{input_size[1]}_{self.info.precision}_code{code_key()}"
                f"_trt{self.trt.__version__}_{gpu}")
        return runtime_cache_dir() / "tensorrt" / f"{name}_sm{major}{minor}.engine"

    def _build(self, onnx_path: Path, engine_path: Path) -> None:
        trt = self.trt
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        # Strongly typed: the fp16 graph's own types decide the kernels (TensorRT 11 has no other mode).
        flags = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        network = builder.create_network(0 if flags is None else 1 << int(flags))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailable(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        h, w = self.info.input_size
        most = limits.TENSORRT_MAX_IMAGES * limits.MAX_PROMPTS
        dim = network.get_input(1).shape[1]
        profile.set_shape("pixels", (1, 3, h, w), (1, 3, h, w), (limits.TENSORRT_MAX_IMAGES, 3, h, w))
        profile.set_shape("conditionals", (1, dim), (4, dim), (most, dim))
        profile.set_shape("image_index", (1,), (4,), (most,))
        config.add_optimization_profile(profile)
        with torch.cuda.device(self.device):
            serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendUnavailable(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} "
                                     f"(its log above says why)")
        with atomic_file(engine_path) as partial:
            partial.write_bytes(bytes(serialized))

    def __call__(self, pixels: torch.Tensor, conditionals: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        if pixels.shape[0] > limits.TENSORRT_MAX_IMAGES:
            raise ValueError(f"{pixels.shape[0]} images in one call; the tensorrt backend takes at most "
                             f"{limits.TENSORRT_MAX_IMAGES}")
        inputs = (pixels.float().contiguous(), conditionals.float().contiguous(), image_index.long().contiguous())
        for name, tensor in zip(INPUT_NAMES, inputs, strict=True):
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        logits = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), device=self.device)
        self.context.set_tensor_address(OUTPUT_NAME, logits.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError("TensorRT failed to run the engine")
        return logits
