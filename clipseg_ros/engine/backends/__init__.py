"""Who runs the image path (backbone through decoder): torch, ONNX Runtime or TensorRT.

The prompt encoders stay in torch whatever the backend. A backend that cannot run here raises
BackendUnavailable saying what to install; nothing falls back silently to another backend.
"""

from __future__ import annotations

import os

import torch

from clipseg_ros.engine import limits
from clipseg_ros.engine.backends.base import BackendUnavailable, ImagePath
from clipseg_ros.engine.model import ClipSeg

__all__ = ["BackendUnavailable", "ImagePath", "make_image_path"]


def make_image_path(
    backend: str,
    model: ClipSeg,
    input_size: tuple[int, int],
    device: torch.device,
    int8: str | None = None,
    onnx_file: str | os.PathLike | None = None,
) -> ImagePath:
    """The image path of `model` at `input_size` on `device`.

    For onnxruntime and tensorrt the ONNX file is `onnx_file` (from clipseg-export; it must have been
    made from these weights at this input size), else the model is exported once into the cache
    (see export_cache). `int8` ("dynamic") asks onnxruntime for the quantised graph; a
    static int8 file comes from clipseg-export with calibration images, passed as `onnx_file`.
    """
    limits.check_choice("backend", backend, limits.BACKENDS)
    if int8 is not None:
        limits.check_choice("int8 mode", int8, limits.INT8_MODES)
        if backend != "onnxruntime":
            raise ValueError(f"int8 runs on the onnxruntime backend only, not {backend}")
        if onnx_file is not None:
            raise ValueError("give int8 or onnx_file, not both: an exported file carries its own precision")
    if backend == "torch":
        if onnx_file is not None:
            raise ValueError("onnx_file is for the onnxruntime and tensorrt backends; the torch backend runs the model")
        from clipseg_ros.engine.backends.torch_backend import TorchImagePath

        return TorchImagePath(model)

    from clipseg_ros.engine.backends.export_cache import cached_export
    from clipseg_ros.engine.backends.onnx_export import check_exportable, weights_digest

    if backend == "tensorrt" and device.type != "cuda":
        raise BackendUnavailable(f"the tensorrt backend runs on an NVIDIA GPU: device is {device}; use device cuda "
                                 f"on a machine with one, or the onnxruntime backend on the CPU")
    if int8 == "static" and onnx_file is None:
        raise ValueError("static int8 needs calibration images: make the file with `clipseg-export --int8 static "
                         "--calibration-images ... --calibration-prompts ...` and pass it as onnx_file")
    if onnx_file is None:
        precision = "fp16" if backend == "tensorrt" else "int8-dynamic" if int8 == "dynamic" else "fp32"
        path, digest = cached_export(model, input_size, precision)
    else:
        if not os.path.isfile(onnx_file):
            raise FileNotFoundError(f"onnx_file {onnx_file} does not exist: make it with clipseg-export")
        check_exportable(model, input_size)
        path, digest = onnx_file, weights_digest(model)
    if backend == "onnxruntime":
        from clipseg_ros.engine.backends.onnxruntime_backend import OnnxRuntimeImagePath

        image_path = OnnxRuntimeImagePath(path, device)
        image_path.info.check_belongs(digest, input_size, path)
        return image_path
    from clipseg_ros.engine.backends.tensorrt_backend import TensorRtImagePath

    return TensorRtImagePath(path, digest, input_size, device)
