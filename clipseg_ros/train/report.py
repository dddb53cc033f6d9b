"""The evaluation report: a JSON with the headline metrics, the sweep and the paper's numbers, and a PNG figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clipseg_ros.train.metrics import SegmentationMetrics

REPORT_JSON = "eval_report.json"
REPORT_PNG = "eval_curves.png"

# Lüddecke & Ecker, CVPR 2022, in percent, for comparison with this report's "metrics".
PAPER_REFERENCE = {
    "PhraseCut test, threshold 0.3": {
        "CLIPSeg (PC+)": {"mIoU": 43.4, "IoU_FG": 54.7, "AP": 76.7},
        "CLIPSeg (PC)": {"mIoU": 46.1, "IoU_FG": 56.2, "AP": 78.2},
        "CLIPSeg (PC, D=128)": {"mIoU": 48.2, "IoU_FG": 56.5, "AP": 78.2},
    },
    "one-shot Pascal-5i": {"CLIPSeg (PC+)": {"mIoU": 59.5, "IoU_BIN": 75.0, "AP": 82.3}},
    "zero-shot Pascal-VOC, unseen-10": {"CLIPSeg (PC+)": {"mIoU": 35.7, "IoU_BIN": 43.1}},
}


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 2)


def build_report(metrics: SegmentationMetrics, threshold: float, info: dict[str, Any]) -> dict[str, Any]:
    """`info`: what was evaluated (model, data, options); copied into the report as is."""
    headline = metrics.at(threshold)
    sweep = metrics.sweep()
    best = {}
    for name in ("mIoU", "IoU_FG", "IoU_BIN"):
        values = np.asarray(sweep[name])
        j = int(np.nanargmax(values))
        best[name] = {"value": _percent(float(values[j])), "threshold": sweep["threshold"][j]}
    return {
        **info,
        "samples": metrics.samples,
        "miou_groups": metrics.groups,
        "units": "metrics, best and paper_reference in percent; sweep in fractions",
        "metrics": {"threshold": threshold, **{k: _percent(v) for k, v in headline.items()}},
        "best": best,
        "sweep": sweep,
        "paper_reference": PAPER_REFERENCE,
    }


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Precision-recall curve and IoU vs threshold, side by side."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display (robots and CI have none)
    import matplotlib.pyplot as plt

    sweep, headline = report["sweep"], report["metrics"]
    fig, (pr, iou) = plt.subplots(1, 2, figsize=(11, 4.5))
    ap = headline["AP"]
    pr.plot(sweep["recall"], sweep["precision"], marker=".", markersize=3,
            label=f"AP {ap:.1f}" if ap is not None else "AP n/a (no foreground)")
    pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall (pixels)")
    pr.legend(loc="lower left")
    for name in ("IoU_FG", "mIoU", "IoU_BIN"):
        iou.plot(sweep["threshold"], sweep[name], label=f"{name} {headline[name]:.1f} @ {headline['threshold']}")
    iou.axvline(headline["threshold"], color="grey", linestyle="--", linewidth=1)
    iou.set(xlabel="threshold", ylabel="IoU", xlim=(0, 1), ylim=(0, 1.02), title="IoU vs threshold")
    iou.legend(loc="best")
    fig.suptitle(f"{report.get('model', 'model')} on {report.get('data', {}).get('name', 'data')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / REPORT_JSON
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    return json_path, plot_report(report, out_dir / REPORT_PNG)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:5.1f}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The headline as a short table for the console."""
    m = report["metrics"]
    lines = [
        f"{report['samples']} samples, threshold {m['threshold']}:",
        f"  mIoU {_fmt(m['mIoU'])}  IoU_FG {_fmt(m['IoU_FG'])}  AP {_fmt(m['AP'])}  IoU_BIN {_fmt(m['IoU_BIN'])}",
    ]
    paper = PAPER_REFERENCE["PhraseCut test, threshold 0.3"]["CLIPSeg (PC+)"]
    lines.append(f"  paper, PhraseCut test (PC+): mIoU {paper['mIoU']}  IoU_FG {paper['IoU_FG']}  AP {paper['AP']}")
    return lines
