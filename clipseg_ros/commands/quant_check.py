"""clipseg-quant-check: how closely int8 (ONNX Runtime) agrees with fp32 (torch) on your images, prompts and
weights: per prompt, the IoU of the two masks and the largest probability difference.

int8's accuracy depends on the weights and on what the camera sees, so it is measured where it is used.
Prints a table (worst image per prompt) and writes every (image, prompt) figure to a JSON report.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clipseg_ros.commands.export import COMMAND_ERRORS, add_model_args, input_size_of, write_exports
from clipseg_ros.commands.segment import threshold_arg
from clipseg_ros.engine.checkpoints import load_model
from clipseg_ros.engine.image_io import read_rgb
from clipseg_ros.engine.limits import DEFAULT_THRESHOLD, INT8_MODES
from clipseg_ros.engine.segmenter import SegmentationResult, Segmenter

log = logging.getLogger("clipseg-quant-check")


@dataclass(frozen=True)
class Agreement:
    image: str
    prompt: str
    iou: float  # of the two masks; 1.0 where both are empty
    max_abs_diff: float  # of the probabilities
    fp32_pixels: int  # in the fp32 mask
    int8_pixels: int


def agreement(image: str, reference: SegmentationResult, candidate: SegmentationResult) -> list[Agreement]:
    rows = []
    for k, label in enumerate(reference.labels):
        a, b = reference.masks[k], candidate.masks[k]
        union = int(np.logical_or(a, b).sum())
        iou = float(np.logical_and(a, b).sum()) / union if union else 1.0
        diff = float(np.abs(reference.probabilities[k] - candidate.probabilities[k]).max())
        rows.append(Agreement(image, label, iou, diff, int(a.sum()), int(b.sum())))
    return rows


def summary(rows: Sequence[Agreement]) -> dict[str, dict[str, float]]:
    """Per prompt: worst and mean IoU, largest probability difference, over the images."""
    out = {}
    for prompt in dict.fromkeys(r.prompt for r in rows):
        mine = [r for r in rows if r.prompt == prompt]
        out[prompt] = {"images": len(mine), "min_iou": min(r.iou for r in mine),
                       "mean_iou": float(np.mean([r.iou for r in mine])),
                       "max_abs_diff": max(r.max_abs_diff for r in mine)}
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clipseg-quant-check", description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", help="your images (what the robot's camera sees)")
    p.add_argument("--prompt", action="append", default=[], required=True, help="text prompt (repeatable)")
    add_model_args(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--int8", choices=INT8_MODES, default="dynamic", help="the int8 mode to check")
    which.add_argument("--onnx", help="an int8 file from clipseg-export to check, instead of quantising here")
    p.add_argument("--calibration-images", nargs="+", default=[], metavar="IMAGE",
                   help="static int8: calibration images (better not the images checked)")
    p.add_argument("--threshold", type=threshold_arg, default=DEFAULT_THRESHOLD, help="mask threshold, in (0, 1)")
    p.add_argument("--json", default="out/quant-check.json", help="where to write the report")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        size = input_size_of(args)
        model = load_model(args.weights, args.clip_weights)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_file, int8 = args.onnx, None
            if onnx_file is None and args.int8 == "static":
                onnx_file = write_exports(model, Path(tmp), size, "static", args.calibration_images,
                                          args.prompt)["int8-static"]
            elif onnx_file is None:
                int8 = "dynamic"
            candidate = Segmenter(model, device="cpu", input_size=size, backend="onnxruntime", int8=int8,
                                  onnx_file=onnx_file)
        reference = Segmenter(model, device="cpu", input_size=size)
        rows = []
        for path in args.images:
            image = read_rgb(path)
            rows += agreement(path, reference.segment(image, args.prompt, args.threshold),
                              candidate.segment(image, args.prompt, args.threshold))
    except COMMAND_ERRORS as exc:
        log.error("%s", exc)
        return 2
    per_prompt = summary(rows)
    mode = args.onnx or f"int8 {args.int8}"
    print(f"\n{mode} vs fp32 (torch), {len(args.images)} image(s), threshold {args.threshold:g}")
    print(f"{'prompt':30} {'min IoU':>8} {'mean IoU':>9} {'max |dp|':>9}")
    for prompt, s in per_prompt.items():
        print(f"{prompt[:30]:30} {s['min_iou']:8.3f} {s['mean_iou']:9.3f} {s['max_abs_diff']:9.4f}")
    report = {"weights": args.weights, "int8": mode, "input_size": list(candidate.input_size),
              "threshold": args.threshold, "per_prompt": per_prompt, "per_image": [asdict(r) for r in rows]}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
