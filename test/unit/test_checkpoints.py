"""Checkpoint formats and the loader's refusals."""

from __future__ import annotations

import http.server
import json
import os
import socket
import sys
import threading

import pytest
import torch
from background import Background
from safetensors.torch import save_file
from tiny_clipseg import save_tiny_checkpoint

from clipseg_ros.engine.checkpoints import (
    CheckpointError,
    load_hf,
    load_model,
    load_original,
    read_state_dict,
    save_hf,
    state_dict_to_hf,
)
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig


def logits(model: ClipSeg, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(1, 3, 96, 96, generator=g)
    cond = torch.randn(2, model.config.projection_dim, generator=g)
    with torch.no_grad():
        return model(pixels, cond, torch.zeros(2, dtype=torch.long))


def write_original(model: ClipSeg, directory) -> tuple[str, str]:
    """The original repository's split: a decoder-only .pth (with its unused `reduce` layer) and
    CLIP weights in open_clip naming, made from `model`'s weights."""
    decoder = {k.removeprefix("decoder."): v.clone() for k, v in model.state_dict().items() if k.startswith("decoder.")}
    decoder["reduce.weight"] = torch.zeros(model.config.reduce_dim, model.config.vision.width)
    decoder["reduce.bias"] = torch.zeros(model.config.reduce_dim)
    clip = {k.removeprefix("backbone.clip."): v.clone() for k, v in model.state_dict().items()
            if k.startswith("backbone.clip.")}
    decoder_path, clip_path = str(directory / "rd16-uni.pth"), str(directory / "clip.safetensors")
    torch.save(decoder, decoder_path)
    save_file(clip, clip_path)
    return decoder_path, clip_path


def test_save_and_load_hf_round_trip(tmp_path, tiny_model):
    save_hf(tiny_model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["extract_layers"] == [1, 2, 3]
    reloaded = load_hf(str(tmp_path))
    assert reloaded.config == tiny_model.config
    assert torch.equal(logits(reloaded), logits(tiny_model))


def test_pytorch_model_bin_is_read_too(tmp_path, tiny_model):
    save_hf(tiny_model, tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(state_dict_to_hf(tiny_model), tmp_path / "pytorch_model.bin")
    assert torch.equal(logits(load_hf(str(tmp_path))), logits(tiny_model))


def test_original_decoder_file_with_clip_weights_gives_the_same_logits(tmp_path, tiny_config):
    torch.manual_seed(3)
    reference = ClipSeg(tiny_config(reduce_dim=16, refined_head=False)).eval()
    decoder_path, clip_path = write_original(reference, tmp_path)
    # The original files carry no CLIP shape (they assume ViT-B/16): the tiny test passes its own.
    loaded = load_original(decoder_path, clip_path, base_config=tiny_config(reduce_dim=64, refined_head=True))
    assert loaded.config.reduce_dim == 16 and not loaded.config.refined_head
    assert torch.equal(logits(loaded), logits(reference))


def test_original_refined_file_is_detected(tmp_path, tiny_config):
    reference = ClipSeg(tiny_config(refined_head=True)).eval()
    decoder_path, clip_path = write_original(reference, tmp_path)
    loaded = load_model(decoder_path, clip_path, base_config=tiny_config())
    assert loaded.config.refined_head
    assert torch.equal(logits(loaded), logits(reference))


def test_missing_unexpected_and_misshaped_keys_are_listed(tmp_path, tiny_model):
    save_hf(tiny_model, tmp_path)
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "model.safetensors")
    del weights["decoder.film_mul.weight"]
    weights["decoder.extra_layer.weight"] = torch.zeros(3)
    weights["decoder.film_add.bias"] = torch.zeros(5)
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as error:
        load_hf(str(tmp_path))
    message = str(error.value)
    assert "1 missing: decoder.film_mul.weight" in message
    assert "1 unexpected: decoder.extra_layer.weight" in message
    assert "decoder.film_add.bias: (5,), expected (16,)" in message


def test_a_pickle_carrying_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"film_mul.weight": Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(path)
    assert not marker.exists()


def test_corrupt_and_absent_files_get_clear_errors(tmp_path):
    corrupt = tmp_path / "model.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        read_state_dict(corrupt)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="needs config.json"):
        load_hf(str(tmp_path))
    with pytest.raises(CheckpointError, match="not a hub id"):
        load_hf(str(tmp_path / "no" / "such" / "dir"))


# -- hub ids without a hub: each hub condition in its own process, with the environment a robot would have --
# (huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT when imported), started with the session: most of each
# one's life is importing torch (background.py).

HUB_ID = "CIDAS/clipseg-rd64-refined"
CACHED_ID = "someone/tiny-clipseg"
_LOAD = """
import json, sys, time
from clipseg_ros.engine.checkpoints import CheckpointError, load_hf
for repo_id in sys.argv[1:]:
    started = time.monotonic()
    try:
        outcome = {"loaded": load_hf(repo_id).config.to_hf_dict()}
    except CheckpointError as exc:
        outcome = {"error": str(exc)}
    outcome.update(repo_id=repo_id, seconds=time.monotonic() - started)
    print(json.dumps(outcome))
"""


class NotFound(http.server.BaseHTTPRequestHandler):
    """A reachable hub that has no such repository."""

    def do_HEAD(self):  # noqa: N802 - http.server's naming
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD  # noqa: N815

    def log_message(self, *args):
        pass


def cached_hub_home(directory) -> str:
    """An HF_HOME whose hub cache holds CACHED_ID: a tiny model, as `hf download` leaves it."""
    snapshot = directory / "hub" / "models--someone--tiny-clipseg" / "snapshots" / ("0" * 40)
    save_tiny_checkpoint(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    return str(directory)


def start_early() -> Background:
    """A process per hub condition, started with the session (background.py). Offline and with the hub refused,
    the process loads an id its cache lacks, then one it holds."""
    background = Background()
    silent = socket.socket()  # accepts connections and never answers: a hub behind a dead link
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    background.close_at_end(silent.close)
    with socket.socket() as probe:  # nobody listens here: no network route, connection refused
        probe.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{probe.getsockname()[1]}"
    answers = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=answers.serve_forever, daemon=True).start()
    background.close_at_end(answers.shutdown)
    background.close_at_end(answers.server_close)
    tmp = background.directory
    cases = {
        "offline": ((HUB_ID, CACHED_ID), {"HF_HUB_OFFLINE": "1"}),
        "refused": ((HUB_ID, CACHED_ID), {"HF_ENDPOINT": refused}),
        "silent": ((HUB_ID,), {"HF_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}"}),
        "answers": ((HUB_ID,), {"HF_ENDPOINT": f"http://127.0.0.1:{answers.server_port}"}),
    }
    for case, (repo_ids, env) in cases.items():
        environment = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
        environment.update(HF_HOME=cached_hub_home(tmp / case), **env)
        background.start(case, [sys.executable, "-P", "-c", _LOAD, *repo_ids], env=environment)
    return background


def load_outcome(early: Background, case: str, repo_id: str = HUB_ID) -> dict:
    """The load of `repo_id` under the case's hub: {"loaded": config} or {"error": message}, and "seconds" (the
    load alone, not the imports)."""
    done = early.result(case)
    assert done.returncode == 0, done.stderr
    [outcome] = [o for o in map(json.loads, done.stdout.splitlines()) if o["repo_id"] == repo_id]
    print(f"{case}, {repo_id}: {outcome['seconds']:.2f} s")
    return outcome


@pytest.mark.parametrize("hub", ["offline", "refused", "silent"])
def test_hub_id_without_a_hub_fails_at_once_with_the_way_out(early, hub):
    outcome = load_outcome(early, hub)
    message = outcome["error"]
    assert f"`hf download {HUB_ID} --local-dir DIR`" in message and "--weights DIR" in message
    assert "cannot be reached" in message and "not in the local cache" in message
    assert "huggingface-cli" not in message
    # Loose: guards the 23 s of retries the hub client spends before giving up, not the speed.
    assert outcome["seconds"] < 10.0


def test_a_hub_that_answers_is_asked_through_the_download_path(early):
    """A reachable hub that has no such repository: the download's own error, not the offline one."""
    outcome = load_outcome(early, "answers")
    # huggingface_hub's own answer to an HTTP error (it looked in its cache too), not our offline short cut
    assert "the hub cannot be reached" not in outcome["error"] and "LocalEntryNotFoundError" in outcome["error"]
    assert f"`hf download {HUB_ID} --local-dir DIR`" in outcome["error"]


def test_hub_id_in_the_local_cache_is_used_without_a_hub(early):
    for case in ("refused", "offline"):
        outcome = load_outcome(early, case, CACHED_ID)
        assert outcome.get("loaded") == ClipSegConfig.tiny().to_hf_dict(), outcome


def _with(config: dict, key: str, value) -> dict:
    """`config` with `key` ("vision_config.hidden_size" or a top-level key) set to `value`."""
    config = json.loads(json.dumps(config))
    *section, name = key.split(".")
    (config[section[0]] if section else config)[name] = value
    return config


# Each: what config.json says, and the key the refusal must name.
BROKEN_CONFIGS = [
    ("vision_config.hidden_size", 1e9, "vision_config.hidden_size"),
    ("vision_config.hidden_size", 10**9, "vision_config.hidden_size"),
    ("vision_config.hidden_size", -1, "vision_config.hidden_size"),
    ("vision_config.hidden_size", "768", "vision_config.hidden_size"),
    ("vision_config.patch_size", 0, "vision_config.patch_size"),
    ("vision_config.patch_size", [16, 32], "vision_config.patch_size"),
    ("vision_config.num_attention_heads", 0, "vision_config.num_attention_heads"),
    ("vision_config.num_attention_heads", 5, "vision_config.num_attention_heads"),  # 48 not divisible by 5
    ("vision_config.num_hidden_layers", 10**6, "vision_config.num_hidden_layers"),
    ("vision_config.image_size", 8, "vision_config.image_size"),
    ("vision_config", [1, 2], "vision_config"),
    ("text_config.vocab_size", 10**12, "text_config.vocab_size"),
    ("text_config.vocab_size", 100, "text_config.vocab_size"),
    ("text_config.max_position_embeddings", None, "text_config.max_position_embeddings"),
    ("text_config.num_hidden_layers", True, "text_config.num_hidden_layers"),
    ("extract_layers", [1, 2, 9], "extract_layers"),
    ("extract_layers", [], "extract_layers"),
    ("extract_layers", "123", "extract_layers"),
    ("conditional_layer", 3, "conditional_layer"),
    ("decoder_num_attention_heads", 3, "decoder_num_attention_heads"),
    ("use_complex_transposed_convolution", "yes", "use_complex_transposed_convolution"),
    # Every field in range, together far too big: the bound on the parameter count refuses it.
    ("text_config.intermediate_size", 32768, "parameters"),
]


@pytest.mark.parametrize(("key", "value", "names"), BROKEN_CONFIGS)
def test_config_fields_are_checked_before_anything_is_built(tmp_path, tiny_model, key, value, names):
    save_hf(tiny_model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    if names == "parameters":
        config["text_config"].update(hidden_size=8192, num_hidden_layers=64, num_attention_heads=8)
    (tmp_path / "config.json").write_text(json.dumps(_with(config, key, value)))
    with pytest.raises(CheckpointError, match="is not a usable CLIPSeg config") as error:
        load_hf(str(tmp_path))
    assert names in str(error.value)


@pytest.mark.parametrize("content", ["[1, 2, 3]", '"clipseg"', "null", "{"])
def test_config_json_that_is_not_an_object_is_refused(tmp_path, tiny_model, content):
    save_hf(tiny_model, tmp_path)
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(CheckpointError, match="config"):
        load_hf(str(tmp_path))


def test_parameter_count_is_that_of_the_built_model(tiny_config):
    for config in (tiny_config(), tiny_config(refined_head=False), tiny_config(extract_layers=(0, 4), reduce_dim=8)):
        assert config.parameter_count() == sum(p.numel() for p in ClipSeg(config).parameters())
