"""clipseg-train: train the CLIPSeg decoder (CLIP frozen) on PhraseCut or a folder dataset, as the paper does.

The result in --out is a checkpoint in the Hugging Face layout that the engine, the node (`weights`
parameter) and clipseg-eval load directly. Re-running the same command continues an interrupted run.

    clipseg-train --data my_objects --out out/my_objects --steps 2000 --batch-size 32
    clipseg-train --data VGPhraseCut_v0 --out out/pc --clip-weights openai --extract-layers 3,7,9
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from clipseg_ros.engine.checkpoints import DEFAULT_WEIGHTS, CheckpointError
from clipseg_ros.train.dataset_opener import open_source
from clipseg_ros.train.init_model import initial_model
from clipseg_ros.train.phrasecut_plus import PROMPT_TEMPLATES, PhraseCutPlus, SamplingOptions
from clipseg_ros.train.trainer import LOG_FILE, STATE_FILE, Trainer, TrainOptions

log = logging.getLogger("clipseg-train")

RUN_FILE = "training.json"


def layer_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(" ", "").strip("[]()").split(",") if part)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"extract layers must look like 3,7,9, not {text!r}") from exc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clipseg-train", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="PhraseCut directory (VGPhraseCut_v0) or folder dataset")
    p.add_argument("--split", default="train", help="PhraseCut split, or the folder format's split column")
    p.add_argument("--out", required=True, help="run directory: checkpoint, resumable state, loss log")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--init", default=DEFAULT_WEIGHTS,
                       help="checkpoint to start from: hub id, HF directory or original .pth")
    start.add_argument("--clip-weights", default=None,
                       help="fresh decoder on these CLIP ViT-B/16 weights: 'openai' or an open_clip state dict")
    p.add_argument("--fresh-decoder", action="store_true", help="keep only the CLIP of --init; new decoder")
    p.add_argument("--extract-layers", type=layer_list, default=None,
                   help="CLIP blocks the decoder reads: 3,7,9 (paper) or 3,6,9 (released); implies a fresh decoder")
    p.add_argument("--reduce-dim", type=int, default=None,
                   help="decoder width D (64, 16, 128); implies a fresh decoder")
    p.add_argument("--head", choices=("refined", "plain"), default=None,
                   help="upsampling head: refined (rd64-refined) or plain transposed conv; implies a fresh decoder")
    p.add_argument("--steps", type=int, default=TrainOptions.steps)
    p.add_argument("--batch-size", type=int, default=TrainOptions.batch_size)
    p.add_argument("--lr", type=float, default=TrainOptions.lr)
    p.add_argument("--lr-min", type=float, default=TrainOptions.lr_min, help="end of the cosine decay")
    p.add_argument("--weight-decay", type=float, default=TrainOptions.weight_decay)
    p.add_argument("--image-size", type=int, default=SamplingOptions.image_size, help="training input side (pixels)")
    p.add_argument("--negative-rate", type=float, default=SamplingOptions.negative_rate)
    p.add_argument("--text-only", action="store_true", help="no visual support samples (the paper's PC, not PC+)")
    p.add_argument("--template", action="append", default=None,
                   help="prompt template with {} (repeatable; default: the paper's nine)")
    p.add_argument("--workers", type=int, default=TrainOptions.workers, help="data loading processes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", action="store_true", help="full fp32 on CUDA too")
    p.add_argument("--checkpoint-every", type=int, default=TrainOptions.checkpoint_every)
    p.add_argument("--seed", type=int, default=0, help="seeds the decoder init and the data sampling")
    p.add_argument("--restart", action="store_true", help="ignore a resumable state in --out and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    out = Path(args.out)
    try:
        sampling = SamplingOptions(
            image_size=args.image_size,
            negative_rate=args.negative_rate,
            visual=not args.text_only,
            templates=tuple(args.template) if args.template else PROMPT_TEMPLATES,
            seed=args.seed,
        )
        options = TrainOptions(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            lr_min=args.lr_min,
            weight_decay=args.weight_decay,
            amp=not args.no_amp,
            workers=args.workers,
            checkpoint_every=args.checkpoint_every,
            device=args.device,
            progress=not args.quiet,
        )
        source = open_source(args.data, args.split)
        torch.manual_seed(args.seed)  # a fresh decoder's initial weights
        model = initial_model(
            init=None if args.clip_weights else args.init,
            clip_weights=args.clip_weights,
            fresh_decoder=args.fresh_decoder,
            extract_layers=args.extract_layers,
            reduce_dim=args.reduce_dim,
            refined_head=None if args.head is None else args.head == "refined",
        )
        model.backbone.token_grid(args.image_size, args.image_size)  # a size the patch grid divides
        log.info("training on %s: %d annotations, %d phrases", source.name, len(source), len(source.phrases))
        out.mkdir(parents=True, exist_ok=True)
        if args.restart:
            (out / STATE_FILE).unlink(missing_ok=True)
            (out / LOG_FILE).unlink(missing_ok=True)
        (out / RUN_FILE).write_text(json.dumps(vars(args), indent=2, default=str) + "\n")
        Trainer(model, PhraseCutPlus(source, sampling), options, out).run(resume=True)
    except (CheckpointError, OSError, ValueError) as exc:  # bad options, weights or dataset files
        log.error("%s", exc)
        return 2
    print(f"trained model: {out} (load with --weights {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
