"""The image path of a CLIPSeg (backbone through decoder) as an ONNX file, and its int8 versions.

The graph takes normalised pixels (B, 3, H, W), conditional vectors (N, projection_dim) and the image
each conditional segments (N,), and gives logits (N, H, W). B and N are free; H and W are fixed at
export. The text and visual prompt encoders stay in torch: they run once per prompt, cached.

Beside the file goes the model's config.json (Hugging Face layout). Inside it, in the ONNX metadata,
go the input size, the precision and a digest of the weights it was made from, so that a runtime
refuses a file that belongs to other weights or another input size instead of giving wrong masks.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clipseg_ros.engine import limits
from clipseg_ros.engine.backends.base import ONNX_INSTALL, import_optional
from clipseg_ros.engine.checkpoints import _listing
from clipseg_ros.engine.model import ClipSeg

OPSET = 18
INPUT_NAMES = ("pixels", "conditionals", "image_index")
OUTPUT_NAME = "logits"
# Every export is run in ONNX Runtime against torch (fp32) before it is kept: max |difference| of the
# logits relative to their spread (max - min). fp32 graphs land near 1e-6, fp16 ones near 1e-3.
VERIFY_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
# A single ONNX file is one protobuf message, which cannot exceed 2 GiB.
ONNX_FILE_LIMIT = 2**31 - 1
_META = "clipseg_ros."


class ExportError(RuntimeError):
    """A model that cannot be exported, or an ONNX file that does not belong to the model it is given."""


@dataclass(frozen=True)
class ExportInfo:
    """What an exported file was made from; stored in its ONNX metadata."""

    input_size: tuple[int, int]
    precision: str  # "fp32", "fp16", "int8-dynamic" or "int8-static"
    weights_digest: str

    def metadata(self) -> dict[str, str]:
        h, w = self.input_size
        return {f"{_META}input_size": f"{h}x{w}", f"{_META}precision": self.precision,
                f"{_META}weights_digest": self.weights_digest}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str | os.PathLike) -> ExportInfo:
        try:
            h, w = (int(side) for side in metadata[f"{_META}input_size"].split("x"))
            return cls((h, w), metadata[f"{_META}precision"], metadata[f"{_META}weights_digest"])
        except (KeyError, ValueError) as exc:
            raise ExportError(
                f"{source} was not written by clipseg-export (no clipseg_ros metadata): export the model "
                f"with `clipseg-export` or clipseg_ros.engine.backends.onnx_export.export_onnx"
            ) from exc

    def check_belongs(self, digest: str, input_size: tuple[int, int], source: str | os.PathLike) -> None:
        """Refuse a file made from other weights or for another input size."""
        if self.weights_digest != digest:
            raise ExportError(
                f"{source} was exported from other weights (digest {self.weights_digest[:12]}, this model's is "
                f"{digest[:12]}): export this model with `clipseg-export`, or load the weights it was made from"
            )
        if tuple(self.input_size) != tuple(input_size):
            raise ExportError(
                f"{source} was exported for input size {self.input_size[0]}x{self.input_size[1]}, the Segmenter "
                f"uses {input_size[0]}x{input_size[1]}: export again with --input-size {input_size[0]} "
                f"{input_size[1]}, or use the file's size"
            )


def image_path_tensors(model: ClipSeg) -> Iterator[tuple[str, torch.Tensor]]:
    """The parameters and buffers the image path reads: the vision tower and the decoder."""
    for name, tensor in model.state_dict(keep_vars=True).items():
        if name.startswith(("backbone.clip.visual.", "decoder.")):
            yield name, tensor


def weights_digest(model: ClipSeg, tensors: Iterable[tuple[str, torch.Tensor]] | None = None) -> str:
    """sha256 of the model's config and `tensors` (default: the image path's, the key of an export and of a
    TensorRT engine), in any dtype bf16 included."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in image_path_tensors(model) if tensors is None else tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{str(tensor.dtype).removeprefix('torch.')}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def check_exportable(model: ClipSeg, input_size: int | tuple[int, int]) -> tuple[int, int]:
    """The input size as (height, width), or ExportError saying why this model has no faithful ONNX graph."""
    if not isinstance(model, ClipSeg):
        raise ExportError(f"the export takes a clipseg_ros ClipSeg model, got {type(model).__name__}")
    size = limits.check_input_size(input_size)
    model.backbone.token_grid(*size)  # ValueError for a size that is not a multiple of the patch size
    tensors = dict(image_path_tensors(model))
    problems = []
    unloaded = [name for name, t in tensors.items() if t.is_meta]
    if unloaded:
        problems.append(f"no values for {_listing(unloaded)} (weights never loaded)")
    not_fp32 = [f"{name} ({t.dtype})" for name, t in tensors.items() if not t.is_meta and t.dtype != torch.float32]
    if not_fp32:
        problems.append(f"the graph is written in fp32 from fp32 weights, and these are not: {_listing(not_fp32)} "
                        f"(export the weights as loaded, or call model.float() first)")
    broken = [name for name, t in tensors.items() if not t.is_meta and not torch.isfinite(t).all()]
    if broken:
        problems.append(f"NaN or infinite values in {_listing(broken)}: every mask would be NaN")
    size_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    if size_bytes > ONNX_FILE_LIMIT:
        problems.append(f"the image path holds {size_bytes / 2**30:.1f} GiB of weights, over the 2 GiB an ONNX file "
                        f"can hold")
    if problems:
        raise ExportError("this checkpoint cannot be exported to ONNX: " + "; ".join(problems))
    return size


def export_onnx(
    model: ClipSeg, path: str | os.PathLike, input_size: int | tuple[int, int] = 352, fp16: bool = False
) -> Path:
    """Write the image path of `model` at `input_size` to `path`, and the model's config.json beside it; fp16:
    fp16 inside, fp32 in and out, for TensorRT's strongly typed fp16 engines.

    The graph is checked in ONNX Runtime against torch before it is kept; ExportError if it differs.
    """
    size = check_exportable(model, input_size)
    return _export(model, Path(path), size, weights_digest(model), fp16=fp16)


def _export(model: ClipSeg, path: Path, size: tuple[int, int], digest: str, fp16: bool = False) -> Path:
    import_optional("onnxscript", "ONNX export (torch.onnx's exporter)", ONNX_INSTALL)
    model = model.eval()
    probes = [_probe(model, size, images=2, prompts=3), _probe(model, size, images=1, prompts=1)]
    with torch.no_grad():
        # Also fills the positional-embedding table for this grid, which the graph holds as a constant.
        references = [model(*probe) for probe in probes]
        graph = model
        if fp16:
            # For TensorRT's strongly typed fp16 engines: fp16 inside, fp32 in and out.
            graph = _Fp16(model).eval()
            half = graph.model.backbone
            half.positional_embedding(half.token_grid(*size), graph.model.decoder.film_mul.weight)
        images, prompts = torch.export.Dim("images"), torch.export.Dim("prompts")
        with warnings.catch_warnings():
            # The exporter remarks that two inputs share the prompts axis, which is the point.
            warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
            program = torch.onnx.export(
                graph, probes[0], input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: images}, {0: prompts}, {0: prompts}), opset_version=OPSET,
                dynamo=True, verbose=False,
            )
    precision = "fp16" if fp16 else "fp32"
    program.model.metadata_props.update(ExportInfo(size, precision, digest).metadata())
    with atomic_file(path) as tmp:
        program.save(str(tmp), external_data=False)
        _verify(tmp, probes, references, VERIFY_TOLERANCE[precision])
    (path.parent / "config.json").write_text(json.dumps(model.config.to_hf_dict(), indent=2) + "\n")
    return path


class _Fp16(torch.nn.Module):
    """An fp16 copy of the model behind fp32 inputs and outputs."""

    def __init__(self, model: ClipSeg):
        super().__init__()
        self.model = copy.deepcopy(model).half()

    def forward(self, pixels: torch.Tensor, conditionals: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        return self.model(pixels.half(), conditionals.half(), image_index).float()


def _probe(model: ClipSeg, size: tuple[int, int], images: int, prompts: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(images * 100 + prompts)
    pixels = torch.randn(images, 3, *size, generator=generator)
    conditionals = torch.randn(prompts, model.config.projection_dim, generator=generator)
    image_index = torch.arange(prompts) % images
    device = model.decoder.film_mul.weight.device
    return pixels.to(device), conditionals.to(device), image_index.to(device)


def _verify(
    path: Path, probes: list[tuple[torch.Tensor, ...]], references: list[torch.Tensor], tolerance: float
) -> None:
    ort = import_optional("onnxruntime", "checking the exported graph", ONNX_INSTALL)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for probe, reference in zip(probes, references, strict=True):
        feeds = {name: tensor.cpu().numpy() for name, tensor in zip(INPUT_NAMES, probe, strict=True)}
        logits = session.run(None, feeds)[0]
        reference = reference.cpu().numpy()
        error = relative_error(logits, reference)
        if logits.shape != reference.shape or not error <= tolerance:
            raise ExportError(
                f"the exported graph does not reproduce the model: logits {logits.shape} vs {reference.shape}, "
                f"error {error:.2e} of their spread (allowed {tolerance:g})"
            )


def relative_error(values: np.ndarray, reference: np.ndarray) -> float:
    """The largest |values - reference|, relative to the reference's spread (max - min)."""
    spread = float(reference.max() - reference.min()) or 1.0
    return float(np.abs(values - reference).max()) / spread


# -- int8 ------------------------------------------------------------------------------------------------


def quantize_dynamic(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """int8 weights of the matrix products, activations scaled per call: needs no calibration data."""
    quantization = import_optional("onnxruntime.quantization", "int8 quantisation", ONNX_INSTALL)
    info = read_info(source)
    with atomic_file(Path(target)) as tmp, _preprocessed(source) as prepared:
        quantization.quantize_dynamic(str(prepared), str(tmp), weight_type=quantization.QuantType.QInt8,
                                      op_types_to_quantize=["MatMul", "Gemm"])
        _set_info(tmp, ExportInfo(info.input_size, "int8-dynamic", info.weights_digest))
    return Path(target)


def quantize_static(
    source: str | os.PathLike, target: str | os.PathLike, calibration: Iterable[dict[str, np.ndarray]]
) -> Path:
    """int8 weights and activations, with activation ranges measured on `calibration` feeds
    (pixels, conditionals, image_index of the user's own images and prompts)."""
    quantization = import_optional("onnxruntime.quantization", "int8 quantisation", ONNX_INSTALL)
    info = read_info(source)
    feeds = iter(calibration)

    class Reader(quantization.CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    with atomic_file(Path(target)) as tmp, _preprocessed(source) as prepared:
        quantization.quantize_static(
            str(prepared), str(tmp), Reader(), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            weight_type=quantization.QuantType.QInt8, activation_type=quantization.QuantType.QUInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
        _set_info(tmp, ExportInfo(info.input_size, "int8-static", info.weights_digest))
    return Path(target)


@contextmanager
def _preprocessed(source: str | os.PathLike) -> Iterator[Path]:
    """The graph with shapes inferred and fused, as ONNX Runtime's quantiser advises: about a fifth faster
    int8 (measured on the full-size model, dynamic int8, one thread), same numbers."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as directory:
        prepared = Path(directory) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        yield prepared


def read_info(path: str | os.PathLike) -> ExportInfo:
    onnx = import_optional("onnx", "reading an ONNX file", ONNX_INSTALL)
    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, whichever protobuf runtime onnx was built with
        raise unloadable(path, exc) from exc
    return ExportInfo.from_metadata({p.key: p.value for p in model.metadata_props}, path)


def unloadable(path: str | os.PathLike, exc: Exception) -> ExportError:
    """The error for an ONNX file a library cannot read, with the library's reason on one line."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return ExportError(f"cannot load the ONNX file {path} ({reason}); if it is truncated or corrupt, export it "
                       f"again with clipseg-export")


def _set_info(path: Path, info: ExportInfo) -> None:
    onnx = import_optional("onnx", "writing an ONNX file", ONNX_INSTALL)
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if not p.key.startswith(_META)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in info.metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` that replaces it on success: readers never see half a file, and two
    processes exporting the same model into the cache do not corrupt each other's copy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
