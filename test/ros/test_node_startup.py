"""The node started on a checkpoint whose config.json is broken: exit code 3 and the field named, never a traceback.

Each case is a checkpoint directory the test writes: the tiny checkpoint's weights with a config.json
an attacker or a careless edit could leave behind.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import tiny_clipseg
from ros_helpers import NodeRuns

EXIT_WEIGHTS_UNAVAILABLE = 3  # the README's exit code for weights that cannot be used
# Generous: every case's process imports torch at once on a loaded 2-core machine. The bug this guards was a hang.
END_S = 120.0


def _config(tiny_checkpoint: Path, edit) -> str:
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    edited = edit(config)
    return json.dumps(config if edited is None else edited)


# (case, edit of the tiny checkpoint's config.json, the key the log must name)
CASES = [
    ("json-list", lambda c: [c], "JSON object"),
    ("hidden-1e9", lambda c: c["vision_config"].update(hidden_size=1e9), "vision_config.hidden_size"),
    ("hidden-negative", lambda c: c["vision_config"].update(hidden_size=-1), "vision_config.hidden_size"),
    ("patch-0", lambda c: c["vision_config"].update(patch_size=0), "vision_config.patch_size"),
    ("heads-0", lambda c: c["text_config"].update(num_attention_heads=0), "text_config.num_attention_heads"),
    ("layers-1e6", lambda c: c["vision_config"].update(num_hidden_layers=10**6), "vision_config.num_hidden_layers"),
]


def _node_name(case: str) -> str:
    return "clipseg_startup_" + case.replace("-", "_")


def start_early() -> NodeRuns:
    """Every case's node, started with the session (background.py), each on a checkpoint directory with its
    broken config.json."""
    runs = NodeRuns(early=True)
    tiny_checkpoint = tiny_clipseg.save_tiny_checkpoint(runs.directory / "tiny_checkpoint")
    for case, edit, _ in CASES:
        checkpoint = runs.directory / case
        checkpoint.mkdir()
        shutil.copy(tiny_checkpoint / "model.safetensors", checkpoint)
        (checkpoint / "config.json").write_text(_config(tiny_checkpoint, edit))
        runs.start_node(_node_name(case), {"weights": str(checkpoint), "device": "cpu"})
    return runs


@pytest.mark.parametrize(("case", "names"), [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_broken_config_exits_3_naming_the_field(early, case, names):
    name = _node_name(case)
    code = early.exit_code(name, timeout=max(0.0, early.started + END_S - time.monotonic()))
    log = early[name].log()
    if code is None:
        pytest.fail(f"still running {END_S:.0f} s after it started:\n{log}")
    print(f"{case}: exit {code} within {time.monotonic() - early.started:.1f} s of the start of all cases")
    assert code == EXIT_WEIGHTS_UNAVAILABLE, log
    assert "Traceback" not in log, log
    assert names in log and "config.json" in log, log
