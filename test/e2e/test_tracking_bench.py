"""bench/tracking.py as a person runs it, on one sequence: the table, the cost line and the figures it writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from background import LAST_TIERS_NICENESS, Background

ROOT = Path(__file__).resolve().parents[2]


def start_early() -> Background:
    """The bench on one sequence, started with the session (background.py)."""
    background = Background(LAST_TIERS_NICENESS)
    report = background.directory / "tracking.json"
    background.start("tracking", [sys.executable, str(ROOT / "bench" / "tracking.py"), "--seeds", "0", "--json",
                                  str(report)], cwd=background.directory)
    return background


def test_the_tracking_bench_prints_the_table_and_writes_its_figures(early):
    run = early.result("tracking", timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines[2:5]] == [
        "this tracker, masks + 3D", "this tracker, masks only", "ByteTrack (supervision), boxes"], run.stdout
    assert lines[5].startswith("cost: 20 instances per frame") and lines[6].startswith("steady masks"), run.stdout
    figures = json.loads((early.directory / "tracking.json").read_text())
    ours = figures["setting_1"]["this tracker, masks + 3D"]["OVERALL"]
    assert ours["idf1"] >= 0.9 and ours["num_switches"] <= 2
    assert figures["steady"]["flicker_steady"] <= figures["steady"]["flicker_raw"] / 4
