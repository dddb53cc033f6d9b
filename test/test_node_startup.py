"""The node started on a checkpoint whose config.json is broken: exit code 3 and the field named, never a traceback.

Each case is a checkpoint directory the test writes: the tiny checkpoint's weights with a config.json
an attacker or a careless edit could leave behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from ros_helpers import NodeProcess

EXIT_WEIGHTS_UNAVAILABLE = 3  # the README's exit code for weights that cannot be used
# Generous: one process importing torch on a loaded 2-core machine. The bug this guards was a hang.
END_S = 60.0


def _config(tiny_checkpoint, edit) -> str:
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


@pytest.mark.parametrize(("case", "edit", "names"), CASES, ids=[c[0] for c in CASES])
def test_broken_config_exits_3_naming_the_field(tiny_checkpoint, tmp_path, case, edit, names):
    checkpoint = tmp_path / case
    checkpoint.mkdir()
    shutil.copy(tiny_checkpoint / "model.safetensors", checkpoint)
    (checkpoint / "config.json").write_text(_config(tiny_checkpoint, edit))

    started = time.monotonic()
    node = NodeProcess(tmp_path, "clipseg_startup", {"weights": str(checkpoint), "device": "cpu"})
    try:
        node.process.wait(timeout=END_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {END_S:.0f} s:\n{node.log()}")
    finally:
        code = node.stop()
    log = node.log()
    print(f"{case}: exit {code} after {time.monotonic() - started:.1f} s")
    assert code == EXIT_WEIGHTS_UNAVAILABLE, log
    assert "Traceback" not in log, log
    assert names in log and "config.json" in log, log
