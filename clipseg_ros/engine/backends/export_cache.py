"""The on-disk cache of what the backends build on first use: ONNX exports and TensorRT engines.

A cached file is named after everything it is made from: a digest of the weights, the input size, the
precision, and the code that wrote it (the model's and the exporter's source, torch's and ONNX Runtime's
versions), so a change to any of them makes a new file instead of reusing a stale one. Beside each file
goes its sha256, written once the file is complete and compared before every use: a truncated or corrupt
file (a full disk, a copy cut short) is rebuilt, never handed to a runtime.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

import torch

from clipseg_ros.engine import model as model_package
from clipseg_ros.engine.backends import onnx_export
from clipseg_ros.engine.backends.base import ONNX_INSTALL, import_optional
from clipseg_ros.engine.backends.onnx_export import (
    _export,
    atomic_file,
    check_exportable,
    quantize_dynamic,
    weights_digest,
)
from clipseg_ros.engine.model import ClipSeg

log = logging.getLogger(__name__)

CACHED_PRECISIONS = ("fp32", "fp16", "int8-dynamic")
_CHECKSUM_SUFFIX = ".sha256"


def runtime_cache_dir() -> Path:
    """$CLIPSEG_ROS_CACHE, else $XDG_CACHE_HOME/clipseg_ros, else ~/.cache/clipseg_ros."""
    if os.environ.get("CLIPSEG_ROS_CACHE"):
        return Path(os.environ["CLIPSEG_ROS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clipseg_ros"


@functools.cache
def code_key() -> str:
    """What shapes a cached file besides the weights: the model's and the exporter's source, and the versions
    of torch (its exporter writes the graph) and ONNX Runtime (it verifies and quantises it)."""
    ort = import_optional("onnxruntime", "the export cache", ONNX_INSTALL)
    digest = hashlib.sha256(f"torch {torch.__version__}; onnxruntime {ort.__version__}".encode())
    sources = sorted(Path(model_package.__file__).parent.glob("*.py")) + [Path(onnx_export.__file__)]
    for source in sources:
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def cached_export(model: ClipSeg, input_size: int | tuple[int, int], precision: str = "fp32") -> tuple[Path, str]:
    """The ONNX file of `model` at `input_size` in `precision` (fp32; fp16 for TensorRT; int8-dynamic for
    ONNX Runtime), exported once into the cache; and the weights' digest it is keyed by."""
    if precision not in CACHED_PRECISIONS:
        raise ValueError(f"cached exports are {', '.join(CACHED_PRECISIONS)}, not {precision!r}; a static int8 "
                         f"file comes from `clipseg-export --int8 static --calibration-images ...`")
    size = check_exportable(model, input_size)
    digest = weights_digest(model)
    fp32 = runtime_cache_dir() / "onnx" / digest[:16] / f"image_path_{size[0]}x{size[1]}_code{code_key()}.onnx"
    target = fp32 if precision == "fp32" else fp32.with_name(f"{fp32.stem}_{precision}.onnx")
    if precision == "int8-dynamic":
        if not intact(target):
            if not intact(fp32):
                seal(_export(model, fp32, size, digest))
            seal(quantize_dynamic(fp32, target))
    elif not intact(target):
        seal(_export(model, target, size, digest, fp16=precision == "fp16"))
    return target, digest


def intact(path: Path) -> bool:
    """Whether `path` is there as it was written: its checksum, stored beside it, matches. A missing checksum
    (a file from before this check, or a writer stopped between file and checksum) counts as damage."""
    checksum = path.with_name(path.name + _CHECKSUM_SUFFIX)
    if not path.is_file():
        return False
    if checksum.is_file() and checksum.read_text().strip() == _sha256(path):
        return True
    log.warning("%s is incomplete or corrupt (its checksum differs): building it again", path)
    return False


def seal(path: Path) -> Path:
    """Store `path`'s checksum beside it, once the file is complete."""
    with atomic_file(path.with_name(path.name + _CHECKSUM_SUFFIX)) as partial:
        partial.write_text(_sha256(path) + "\n")
    return path


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
