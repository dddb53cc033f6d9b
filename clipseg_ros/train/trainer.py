"""Decoder training as the paper: frozen CLIP, image-text interpolated conditionals, BCE, AdamW + cosine.

The run directory holds, when done, the model in the engine's Hugging Face layout (config.json +
model.safetensors: `load_model(out_dir)`, the node's `weights` parameter and `clipseg-eval --weights` read it),
and while running a resumable state (training_state.pt: decoder, optimizer, scheduler, scaler, step; plain
tensors and containers, read back with torch.load(weights_only=True)) and a loss log (train_log.jsonl).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, default_collate

from clipseg_ros.engine.checkpoints import save_hf
from clipseg_ros.engine.model import ClipSeg
from clipseg_ros.engine.progress import Progress
from clipseg_ros.engine.prompts import Tokenizer
from clipseg_ros.engine.segmenter import resolve_device
from clipseg_ros.train.phrasecut_plus import PhraseCutPlus

log = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"
LOG_FILE = "train_log.jsonl"


@dataclass(frozen=True)
class TrainOptions:
    steps: int = 20_000
    batch_size: int = 64
    lr: float = 1e-3
    lr_min: float = 1e-4  # cosine decay ends here at the last step
    weight_decay: float = 0.01  # AdamW's default
    amp: bool = True  # mixed precision; used on CUDA only
    workers: int = 4
    checkpoint_every: int = 1000
    log_every: int = 50
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        if not 0 < self.lr_min <= self.lr:
            raise ValueError("need 0 < lr_min <= lr")

    def schedule(self) -> dict:
        """What a resumed run must share with the run it continues."""
        return {k: getattr(self, k) for k in ("steps", "batch_size", "lr", "lr_min", "weight_decay")}


def conditionals(model: ClipSeg, tokenizer: Tokenizer, batch: dict, device: torch.device) -> torch.Tensor:
    """`w * text + (1 - w) * visual` per sample; samples without support (w = 1) skip the image encoder."""
    backbone = model.backbone
    with torch.no_grad():
        text = backbone.encode_text(tokenizer(batch["text"]).to(device)).float()
        weight = batch["text_weight"].to(device, torch.float32)[:, None]
        visual = torch.zeros_like(text)
        has_visual = weight[:, 0] < 1.0
        if has_visual.any():
            support = batch["support"].to(device, non_blocking=True)[has_visual]
            visual[has_visual] = backbone.encode_image(support).float()
    return weight * text + (1.0 - weight) * visual


class _Failed:
    """A sample that could not be loaded, carried to the main process as data: raised in a loader worker, the
    error would reach the main process with the worker's whole traceback as its message."""

    def __init__(self, error: Exception):
        self.error = error


class _Reporting(Dataset):
    """`dataset` whose unreadable files and bad annotations come out as _Failed samples."""

    def __init__(self, dataset: PhraseCutPlus):
        self.dataset = dataset

    def __getitem__(self, item: int) -> dict | _Failed:
        try:
            return self.dataset[item]
        except (OSError, ValueError) as exc:
            return _Failed(exc)


def _collate(samples: list) -> dict | _Failed:
    return next((s for s in samples if isinstance(s, _Failed)), None) or default_collate(samples)


class Trainer:
    def __init__(self, model: ClipSeg, dataset: PhraseCutPlus, options: TrainOptions, out_dir: str | Path):
        self.options = options
        self.out_dir = Path(out_dir)
        self.device = resolve_device(options.device)
        self.model = model.to(self.device, torch.float32)
        model.backbone.requires_grad_(False)  # CLIP stays frozen whatever the caller did to the model
        self.dataset = dataset
        self.tokenizer = Tokenizer(model.config.text.context_length)
        self.use_amp = options.amp and self.device.type == "cuda"
        decoder = model.decoder
        self.optimizer = torch.optim.AdamW(decoder.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=options.steps, eta_min=options.lr_min
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0

    # --- resumable state -----------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "step": self.step,
            "decoder": self.model.decoder.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "config": self.model.config.to_hf_dict(),
            "schedule": self.options.schedule(),
        }

    def save_state(self) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / STATE_FILE
        pending = path.with_suffix(".tmp")
        torch.save(self.state(), pending)
        os.replace(pending, path)  # a crash mid-write leaves the previous state intact
        return path

    def load_state(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["config"] != self.model.config.to_hf_dict():
            raise ValueError(f"{path} was written for another model configuration; start a new --out directory")
        if state["schedule"] != self.options.schedule():
            raise ValueError(
                f"{path} continues a run with {state['schedule']}, not {self.options.schedule()}; "
                "use the same options or a new --out directory"
            )
        self.model.decoder.load_state_dict(state["decoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        log.info("resumed from %s at step %d", path, self.step)

    # --- the loop ------------------------------------------------------------------------------

    def train_step(self, batch: dict) -> float:
        device = self.device
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.use_amp):
            cond = conditionals(self.model, self.tokenizer, batch, device)
            logits = self.model(batch["image"].to(device, non_blocking=True), cond)
        target = batch["target"].to(device, non_blocking=True)
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.step}; lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return loss.item()

    def run(self, resume: bool = True) -> ClipSeg:
        """Train to `options.steps`, checkpointing on the way; returns the model (CPU, eval mode) and
        writes it in the Hugging Face layout to the run directory."""
        options = self.options
        state_path = self.out_dir / STATE_FILE
        if resume and state_path.is_file():
            self.load_state(state_path)
        self.model.backbone.eval()  # frozen CLIP: no dropout, no gradients, ever
        self.model.decoder.train()
        batch = options.batch_size
        loader = DataLoader(
            _Reporting(self.dataset),
            batch_size=batch,
            sampler=range(self.step * batch, options.steps * batch),
            num_workers=options.workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
        )
        window: list[float] = []
        bar = Progress(options.steps, "train", "step", initial=self.step, enabled=options.progress)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / LOG_FILE, "a") as log_file:
            for batch_data in loader:
                if isinstance(batch_data, _Failed):
                    raise batch_data.error
                window.append(self.train_step(batch_data))
                bar.update(1)
                bar.set_postfix(loss=f"{sum(window) / len(window):.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                if self.step % options.log_every == 0 or self.step == options.steps:
                    lr = self.scheduler.get_last_lr()[0]
                    record = {"step": self.step, "loss": sum(window) / len(window), "lr": lr}
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    window.clear()
                if self.step % options.checkpoint_every == 0 and self.step < options.steps:
                    self.save_state()
        bar.close()
        self.save_state()
        model = self.model.eval().to("cpu")
        save_hf(model, self.out_dir)
        log.info("trained model written to %s", self.out_dir)
        return model


def train(
    model: ClipSeg, dataset: PhraseCutPlus, options: TrainOptions, out_dir: str | Path, resume: bool = True
) -> ClipSeg:
    return Trainer(model, dataset, options, out_dir).run(resume)

