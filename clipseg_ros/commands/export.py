"""clipseg-export: write the image path of a CLIPSeg checkpoint to ONNX (and int8), for the onnxruntime
and tensorrt backends.

Writes OUT/model.onnx (fp32) and OUT/config.json; with --int8 also OUT/model_int8_dynamic.onnx or
OUT/model_int8_static.onnx (activation ranges measured on your calibration images and prompts); with --fp16
also OUT/model_fp16.onnx, the source of a TensorRT fp16 engine. Pass a file to the Segmenter as onnx_file=...
with backend onnxruntime (tensorrt for the fp16 file); the node takes the same as its parameters `backend`,
`onnx_file` and `input_size` (the file's size): `backend` and `onnx_file` are also launch arguments,
`input_size` goes in the params file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from clipseg_ros.engine.backends import BackendUnavailable
from clipseg_ros.engine.backends.onnx_export import (
    ExportError,
    export_onnx,
    quantize_dynamic,
    quantize_static,
    read_info,
)
from clipseg_ros.engine.checkpoints import DEFAULT_WEIGHTS, OPENAI_CLIP, CheckpointError, load_model
from clipseg_ros.engine.image_io import read_rgb
from clipseg_ros.engine.limits import INT8_MODES
from clipseg_ros.engine.model import ClipSeg
from clipseg_ros.engine.preprocess import to_model_input
from clipseg_ros.engine.segmenter import Segmenter

log = logging.getLogger("clipseg-export")
# What the commands catch and report in one line: bad input, missing files, unusable weights or runtimes.
COMMAND_ERRORS = (CheckpointError, ExportError, BackendUnavailable, FileNotFoundError, ValueError)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="hub id, HF checkpoint directory, or original .pth")
    parser.add_argument("--clip-weights", default=OPENAI_CLIP, help="CLIP weights for an original .pth decoder")
    parser.add_argument("--input-size", type=int, nargs="+", default=[352], metavar="PX",
                        help="model input size, fixed in the file: one value (square) or HEIGHT WIDTH, multiples of 16")


def input_size_of(args: argparse.Namespace) -> int | tuple[int, int]:
    return args.input_size[0] if len(args.input_size) == 1 else tuple(args.input_size)


def calibration_feeds(
    model: ClipSeg, input_size: int | tuple[int, int], images: Sequence[str], prompts: Sequence[str]
) -> Iterator[dict[str, np.ndarray]]:
    """One graph input per calibration image: its pixels and every prompt's conditional vector."""
    if not images or not prompts:
        raise ValueError("static int8 needs --calibration-images and --calibration-prompts: images like the "
                         "robot's camera sees, and the prompts it will be asked")
    segmenter = Segmenter(model, device="cpu", input_size=input_size)
    conditionals, _ = segmenter.conditionals(list(prompts))
    index = np.zeros(len(prompts), dtype=np.int64)
    for path in images:
        with torch.inference_mode():
            pixels = to_model_input([read_rgb(path)], segmenter.input_size)
        yield {"pixels": pixels.numpy(), "conditionals": conditionals.float().numpy(), "image_index": index}


def write_exports(
    model: ClipSeg,
    out: Path,
    input_size: int | tuple[int, int],
    int8: str | None = None,
    calibration_images: Sequence[str] = (),
    calibration_prompts: Sequence[str] = (),
    fp16: bool = False,
) -> dict[str, Path]:
    """OUT/model.onnx, and the int8 and fp16 files asked for; by precision."""
    # Calibration input first: missing or unreadable, it is refused before minutes of export, not after.
    if int8 == "static":
        feeds = list(calibration_feeds(model, input_size, calibration_images, calibration_prompts))
    files = {"fp32": export_onnx(model, out / "model.onnx", input_size)}
    if fp16:
        files["fp16"] = export_onnx(model, out / "model_fp16.onnx", input_size, fp16=True)
    if int8 == "dynamic":
        files["int8-dynamic"] = quantize_dynamic(files["fp32"], out / "model_int8_dynamic.onnx")
    elif int8 == "static":
        files["int8-static"] = quantize_static(files["fp32"], out / "model_int8_static.onnx", feeds)
    return files


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clipseg-export", description=__doc__.splitlines()[0])
    add_model_args(p)
    p.add_argument("--out", default="out/export", help="output directory (one model per directory)")
    p.add_argument("--int8", choices=INT8_MODES, help="also write an int8 file for ONNX Runtime on the CPU")
    p.add_argument("--calibration-images", nargs="+", default=[], metavar="IMAGE",
                   help="static int8: images like the camera's, to measure activation ranges on")
    p.add_argument("--calibration-prompts", nargs="+", default=[], metavar="PROMPT",
                   help="static int8: the text prompts the robot will use")
    p.add_argument("--fp16", action="store_true", help="also write an fp16 file for the tensorrt backend")
    return p.parse_args(argv)


def advice(weights: str, path: Path) -> list[str]:
    """How the engine and the node run `path`: the arguments and parameters a user passes, by name."""
    info = read_info(path)
    backend = "tensorrt" if info.precision == "fp16" else "onnxruntime"
    (h, w), file = info.input_size, path.resolve()
    return [
        f"engine: Segmenter.from_pretrained({weights!r}, backend={backend!r}, onnx_file={str(file)!r}, "
        f"input_size=({h}, {w}))",
        f"node: --ros-args -p weights:={weights} -p backend:={backend} -p onnx_file:={file} -p input_size:=[{h},{w}] "
        f"(or the same in its params file; `ros2 launch clipseg_ros segment.launch.py` takes weights:=, backend:= "
        f"and onnx_file:=)",
    ]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        model = load_model(args.weights, args.clip_weights)
        files = write_exports(model, Path(args.out), input_size_of(args), args.int8,
                              args.calibration_images, args.calibration_prompts, args.fp16)
    except COMMAND_ERRORS as exc:
        log.error("%s", exc)
        return 2
    for precision, path in files.items():
        log.info("%s: %s (%.0f MiB)", precision, path, path.stat().st_size / 2**20)
    for line in advice(args.weights, files[list(files)[-1]]):  # the int8 or fp16 file when one was asked for
        log.info("%s", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
