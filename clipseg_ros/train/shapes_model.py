"""A small CLIPSeg trained here on synthetic shapes: what the demo runs when the released weights cannot be had.

The engine's model in a tiny shape (`ClipSegConfig.tiny()`, random CLIP, frozen as the paper trains), its
decoder trained by the project's trainer on coloured shapes named by colour and shape ("red circle") with the
PhraseCut+ sampling (text and visual supports, negatives), and scored by the evaluation code on held-out
scenes. Trained once: the result is cached in a directory named by a digest of everything it depends on (the
recipe, the model configuration, the seed and the code that generates, trains and runs it), so the next run
loads it at once and a change to any of them trains anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from clipseg_ros.engine import preprocess, prompts, visual_prompt
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig, backbone, clipseg, config, decoder
from clipseg_ros.engine.segmenter import Segmenter
from clipseg_ros.train import phrasecut_plus, synthetic, trainer
from clipseg_ros.train.dataset_opener import open_source
from clipseg_ros.train.evaluate import EvalOptions, evaluate
from clipseg_ros.train.metrics import DEFAULT_THRESHOLD
from clipseg_ros.train.phrasecut_plus import PhraseCutPlus, SamplingOptions
from clipseg_ros.train.report import REPORT_JSON, REPORT_PNG, build_report, write_report
from clipseg_ros.train.synthetic import generate_synthetic
from clipseg_ros.train.trainer import STATE_FILE, Trainer, TrainOptions

log = logging.getLogger(__name__)

DESCRIPTION = "small model trained here on synthetic shapes; for real scenes pass the released weights"
EVAL_DIR = "eval"
# The code a trained model depends on besides this module: a change to any of these files trains anew.
_CODE = (synthetic, phrasecut_plus, trainer, preprocess, prompts, visual_prompt, backbone, clipseg, config, decoder)


@dataclass(frozen=True)
class ShapesRecipe:
    """What the model depends on besides the code."""

    steps: int = 800  # held-out text IoU_FG 0.72-0.75 over three seeds (0.72 after 600 steps, 0.75 after 1000)
    batch_size: int = 16
    lr: float = 3e-3  # higher than the paper's 1e-3: a short run
    images: int = 300  # scenes generated; the last fifth are held out for evaluation
    size: int = 96  # scene side in pixels, the model's input side (the node's input_size)
    negative_rate: float = 0.2
    # A random CLIP's text and image embeddings are unrelated, so mixed conditionals (w < 0.5 text) teach the
    # decoder visual prompts only (held-out IoU_FG 0.13 for text, 0.75 visual); half the samples on text alone
    # teach both (0.71 and 0.71, measured with the tiny shape's blocks 1-3 and D = 16).
    text_only_rate: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.images < 10:
            raise ValueError(f"need at least 1 step and 10 images, got {self.steps} and {self.images}")

    def model_config(self) -> ClipSegConfig:
        """The tiny test shape, cut to what learns shapes fastest here: the decoder reads the first three blocks
        (a random CLIP's deeper blocks only blur colour and place: held-out IoU_FG 0.75 from blocks 0-2 and
        0.73 from blocks 1-3, D = 32) and is twice as wide; positional embeddings for the input's own grid."""
        tiny = ClipSegConfig.tiny()
        vision = replace(tiny.vision, layers=3, image_size=self.size)
        return tiny.with_changes(vision=vision, extract_layers=(0, 1, 2), reduce_dim=32)

    def sampling(self) -> SamplingOptions:
        # Plain phrases, no "a photo of a {}." templates: a random CLIP's text encoder gives templated phrases
        # nearly one embedding (the shared words dominate), and people type "red circle".
        return SamplingOptions(
            image_size=self.size,
            negative_rate=self.negative_rate,
            text_only_rate=self.text_only_rate,
            templates=("{}",),
            seed=self.seed,
        )

    def training(self, device: str, progress: bool) -> TrainOptions:
        return TrainOptions(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            lr_min=self.lr / 10,
            workers=0,  # batches of 16 small scenes load faster in-process than through a worker's pipe
            checkpoint_every=self.steps,  # a minute's run: no intermediate states
            device=device,
            progress=progress,
        )


def cache_key(recipe: ShapesRecipe) -> str:
    digest = hashlib.sha256(
        json.dumps({"recipe": asdict(recipe), "config": recipe.model_config().to_hf_dict()}, sort_keys=True).encode()
    )
    for source in (__file__, *(module.__file__ for module in _CODE)):
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ShapesModel:
    directory: Path  # the checkpoint in the Hugging Face layout: the node's `weights`
    report: dict[str, Any]  # held-out evaluation with text prompts, as clipseg-eval writes it
    trained_now: bool
    input_size: int

    @property
    def threshold(self) -> float:
        """The threshold of the held-out scores (clipseg-eval's, the paper's)."""
        return self.report["metrics"]["threshold"]

    @property
    def curves(self) -> Path:
        """The report's figure: precision-recall and IoU against the threshold."""
        return self.directory / EVAL_DIR / REPORT_PNG

    def summary(self) -> str:
        m, one_shot = self.report["metrics"], self.report["one_shot"]
        return (
            f"held-out synthetic scenes ({self.report['samples']} shapes, threshold {m['threshold']}): "
            f"text prompts IoU_FG {m['IoU_FG']:.1f} mIoU {m['mIoU']:.1f} AP {m['AP']:.1f}; "
            f"visual prompts IoU_FG {one_shot['IoU_FG']:.1f}"
        )


def shapes_model(
    cache: str | Path, recipe: ShapesRecipe = ShapesRecipe(), device: str = "cpu", progress: bool = True
) -> ShapesModel:
    """The cached model of `recipe` under `cache`, trained and evaluated first if there is none."""
    cache = Path(cache)
    directory = cache / f"shapes-{cache_key(recipe)}"
    report_path = directory / EVAL_DIR / REPORT_JSON
    if report_path.is_file():
        return ShapesModel(directory, json.loads(report_path.read_text()), False, recipe.size)
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{directory.name}.", suffix=".partial", dir=cache))
    try:
        report = _train_and_evaluate(recipe, work, device, progress)
        try:
            os.replace(work, directory)  # complete or absent, whatever stops this process
        except OSError:  # a concurrent run got there first: its model serves as well
            log.info("%s was written meanwhile; using it", directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ShapesModel(directory, report, True, recipe.size)


@contextmanager
def _one_thread():
    # A model this small trains far faster on one thread than on two shared cores, where threads wait on each
    # other (1000 steps on the 2-core CI machine under load: 25-43 s on one thread, 454 s on two).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_and_evaluate(recipe: ShapesRecipe, work: Path, device: str, progress: bool) -> dict[str, Any]:
    data = generate_synthetic(work / "data", recipe.images, recipe.size, recipe.seed, positional=False)
    torch.manual_seed(recipe.seed)  # the decoder's initial weights and the random CLIP
    start = time.perf_counter()
    with _one_thread():
        model = Trainer(
            ClipSeg(recipe.model_config()),
            PhraseCutPlus(open_source(data, "train"), recipe.sampling()),
            recipe.training(device, progress),
            work,
        ).run(resume=False)
        seconds = time.perf_counter() - start
        report = held_out_report(model, data, recipe)
    report["training"] = {"recipe": asdict(recipe), "seconds": round(seconds, 1)}
    write_report(report, work / EVAL_DIR)
    (work / STATE_FILE).unlink()  # the run is complete: nothing to resume
    shutil.rmtree(data)
    return report


def held_out_report(model: ClipSeg, data: Path, recipe: ShapesRecipe) -> dict[str, Any]:
    """clipseg-eval's report on the held-out scenes with text prompts, and visual prompts' headline."""
    segmenter = Segmenter(model, device="cpu", input_size=recipe.size, model_id=DESCRIPTION)
    source = open_source(data, "test")
    text = evaluate(segmenter, source, EvalOptions(progress=False, seed=recipe.seed))
    visual = evaluate(segmenter, source, EvalOptions(prompt="visual", progress=False, seed=recipe.seed))
    info = {
        "model": "small model trained here on synthetic shapes (for real scenes pass the released weights)",
        "data": {"name": "held-out synthetic scenes", "split": "test", "annotations": len(source)},
        "options": {"prompt": "text", "template": "{}", "input_size": recipe.size},
    }
    report = build_report(text, DEFAULT_THRESHOLD, info)
    report["one_shot"] = build_report(visual, DEFAULT_THRESHOLD, {})["metrics"]
    return report
