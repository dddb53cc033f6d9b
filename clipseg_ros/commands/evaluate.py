"""clipseg-eval: score a CLIPSeg checkpoint on PhraseCut or a folder dataset, as the paper does.

Writes eval_report.json (mIoU, IoU_FG, AP, IoU_BIN at the threshold, the threshold sweep, the paper's
numbers for reference) and eval_curves.png (precision-recall, IoU vs threshold) into --out.

    clipseg-eval --weights out/train --data ~/datasets/VGPhraseCut_v0 --split test --out out/eval
"""

from __future__ import annotations

import argparse
import logging
import sys

from clipseg_ros.commands.segment import threshold_arg
from clipseg_ros.engine.checkpoints import DEFAULT_WEIGHTS, OPENAI_CLIP, CheckpointError
from clipseg_ros.engine.limits import PRECISIONS
from clipseg_ros.engine.segmenter import Segmenter
from clipseg_ros.train.dataset_opener import open_source
from clipseg_ros.train.evaluate import MIOU_GROUPS, PROMPT_KINDS, EvalOptions, evaluate
from clipseg_ros.train.metrics import DEFAULT_THRESHOLD
from clipseg_ros.train.report import build_report, summary_lines, write_report

log = logging.getLogger("clipseg-eval")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clipseg-eval", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="hub id, HF checkpoint directory, or original .pth")
    p.add_argument("--clip-weights", default=OPENAI_CLIP, help="CLIP weights for an original .pth decoder")
    p.add_argument("--data", required=True, help="PhraseCut directory (VGPhraseCut_v0) or folder dataset")
    p.add_argument("--split", default="test", help="PhraseCut split, or the folder format's split column")
    p.add_argument("--out", default="out/eval", help="directory for eval_report.json and eval_curves.png")
    p.add_argument("--threshold", type=threshold_arg, default=DEFAULT_THRESHOLD)
    p.add_argument("--prompt", choices=PROMPT_KINDS, default="text",
                   help="text: the phrases (PhraseCut); visual: one-shot, another image's mask of the phrase")
    p.add_argument("--template", default="{}", help="text prompt template, e.g. 'a photo of a {}.'")
    p.add_argument("--miou-over", choices=MIOU_GROUPS, default="sample",
                   help="mIoU averages over phrase-region samples (PhraseCut) or over distinct phrases")
    p.add_argument("--negative-rate", type=float, default=0.0,
                   help="add absent-phrase samples with empty targets at this rate per annotation")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many images")
    p.add_argument("--input-size", type=int, default=352, help="model input side in pixels (multiple of 16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--seed", type=int, default=0, help="seed of the negative samples")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        options = EvalOptions(
            threshold=args.threshold,
            prompt=args.prompt,
            template=args.template,
            miou_over=args.miou_over,
            negative_rate=args.negative_rate,
            limit=args.limit,
            seed=args.seed,
            progress=not args.quiet,
        )
        source = open_source(args.data, args.split)
        segmenter = Segmenter.from_pretrained(
            args.weights, args.clip_weights, device=args.device, precision=args.precision, input_size=args.input_size
        )
        metrics = evaluate(segmenter, source, options)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    info = {
        "model": args.weights,
        "data": {"name": source.name, "split": args.split, "annotations": len(source)},
        "options": {
            "prompt": args.prompt,
            "template": args.template,
            "miou_over": args.miou_over,
            "negative_rate": args.negative_rate,
            "limit": args.limit,
            "input_size": args.input_size,
            "precision": segmenter.precision,  # what auto resolved to
            "device": str(segmenter.device),
        },
    }
    report = build_report(metrics, args.threshold, info)
    json_path, png_path = write_report(report, args.out)
    for line in summary_lines(report):
        print(line)
    print(f"report: {json_path}\nfigure: {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
