"""clipseg-export: write the image path of a CLIPSeg checkpoint to ONNX (and int8), for the onnxruntime
and tensorrt backends.

Writes OUT/model.onnx (fp32) and OUT/config.json; with --int8 also OUT/model_int8_dynamic.onnx or
OUT/model_int8_static.onnx (activation ranges measured on your calibration images and prompts).
Pass a file to the Segmenter as onnx_file=... (the node: its onnx_file parameter) with backend onnxruntime.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .backends import BackendUnavailable
from .checkpoints import DEFAULT_WEIGHTS, OPENAI_CLIP, CheckpointError, load_model
from .export import ExportError, export_onnx, quantize_dynamic, quantize_static
from .image_io import read_rgb
from .limits import INT8_MODES
from .model import ClipSeg
from .preprocess import to_model_input
from .segmenter import Segmenter

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
) -> dict[str, Path]:
    """OUT/model.onnx, and the int8 file asked for; by precision."""
    files = {"fp32": export_onnx(model, out / "model.onnx", input_size)}
    if int8 == "dynamic":
        files["int8-dynamic"] = quantize_dynamic(files["fp32"], out / "model_int8_dynamic.onnx")
    elif int8 == "static":
        feeds = list(calibration_feeds(model, input_size, calibration_images, calibration_prompts))
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        model = load_model(args.weights, args.clip_weights)
        files = write_exports(model, Path(args.out), input_size_of(args), args.int8,
                              args.calibration_images, args.calibration_prompts)
    except COMMAND_ERRORS as exc:
        log.error("%s", exc)
        return 2
    for precision, path in files.items():
        log.info("%s: %s (%.0f MiB)", precision, path, path.stat().st_size / 2**20)
    log.info("use: Segmenter.from_pretrained(%r, backend='onnxruntime', onnx_file=%r, input_size=%s)",
             args.weights, str(files[list(files)[-1]]), input_size_of(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
