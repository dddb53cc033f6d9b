"""clipseg-segment: segment image files from the command line, no ROS needed.

Per image and prompt it writes a mono8 mask PNG (0/255) and a probability map (16-bit PNG,
probability * 65535, or .npy float32), and per image one overlay PNG. An exclusion prompt (`--prompt=-hand`)
writes no files of its own: its pixels are taken out of every other prompt's.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import cv2
import numpy as np

from clipseg_ros.engine.checkpoints import DEFAULT_WEIGHTS, OPENAI_CLIP, CheckpointError
from clipseg_ros.engine.frame_maps import published_maps
from clipseg_ros.engine.image_io import read_mask, read_rgb
from clipseg_ros.engine.limits import DEFAULT_THRESHOLD, PRECISIONS, check_threshold
from clipseg_ros.engine.overlay import render_overlay
from clipseg_ros.engine.progress import progress
from clipseg_ros.engine.segmenter import Segmenter
from clipseg_ros.engine.visual_prompt import VisualPrompt

log = logging.getLogger("clipseg-segment")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "prompt"


def threshold_arg(text: str) -> float:
    try:
        return check_threshold(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clipseg-segment", description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", help="image files to segment")
    p.add_argument("--prompt", action="append", default=[],
                   help="text prompt (repeatable); a leading '-' excludes what it finds from the others ('-hand')")
    p.add_argument("--visual-prompt", nargs=2, action="append", default=[], metavar=("IMAGE", "MASK"),
                   help="support image and its object mask (repeatable)")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="hub id, HF checkpoint directory, or original .pth")
    p.add_argument("--clip-weights", default=OPENAI_CLIP, help="CLIP weights for an original .pth decoder")
    p.add_argument("--out", default="out/segment", help="output directory")
    p.add_argument("--threshold", type=threshold_arg, default=DEFAULT_THRESHOLD,
                   help="probability above which a pixel is in a mask, in (0, 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--input-size", type=int, nargs="+", default=[352], metavar="PX",
                   help="model input size: one value (square) or HEIGHT WIDTH, multiples of 16")
    p.add_argument("--probability-format", choices=("png16", "npy"), default="png16")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        prompts: list = list(args.prompt)
        prompts += [VisualPrompt(read_rgb(i), read_mask(m), label=f"visual:{Path(i).stem}")
                    for i, m in args.visual_prompt]
        if not prompts:
            raise ValueError("give at least one --prompt or --visual-prompt")
        size = args.input_size[0] if len(args.input_size) == 1 else tuple(args.input_size)
        segmenter = Segmenter.from_pretrained(args.weights, args.clip_weights, device=args.device,
                                              precision=args.precision, input_size=size)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in progress(args.images, "segment", "image", enabled=len(args.images) > 1):
        try:
            image = read_rgb(path)
            result = segmenter.segment(image, prompts, args.threshold)
            maps = published_maps(result.labels, result.probabilities, result.masks, result.threshold)
        except (FileNotFoundError, ValueError) as exc:
            log.error("%s: %s", path, exc)
            failures += 1
            continue
        stem = Path(path).stem
        for k, label in enumerate(maps.labels):
            base = out / f"{stem}_{k}_{slug(label)}"
            cv2.imwrite(f"{base}_mask.png", maps.masks[k].astype(np.uint8) * 255)
            if args.probability_format == "npy":
                np.save(f"{base}_probability.npy", maps.probabilities[k])
            else:
                cv2.imwrite(f"{base}_probability.png", np.round(maps.probabilities[k] * 65535).astype(np.uint16))
        overlay = render_overlay(image, maps.label_image(), list(maps.labels), args.alpha)
        cv2.imwrite(str(out / f"{stem}_overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        scores = zip(maps.labels, maps.scores, strict=True)
        log.info("%s: %s", path, ", ".join(f"{name}={score:.2f}" for name, score in scores))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
