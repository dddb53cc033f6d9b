"""Checkpoint formats and the loader's refusals."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import torch
from safetensors.torch import save_file

from clipseg_ros.checkpoints import (
    CheckpointError,
    load_hf,
    load_model,
    load_original,
    read_state_dict,
    save_hf,
    state_dict_to_hf,
)
from clipseg_ros.model import ClipSeg


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


# -- hub ids without a hub: each case in its own process, with the environment a robot would have ---------

HUB_ID = "CIDAS/clipseg-rd64-refined"
_LOAD = """
import json, sys, time
from clipseg_ros.checkpoints import CheckpointError, load_hf
started = time.monotonic()
try:
    model = load_hf(sys.argv[1])
    outcome = {"loaded": model.config.to_hf_dict()}
except CheckpointError as exc:
    outcome = {"error": str(exc)}
outcome["seconds"] = time.monotonic() - started
print(json.dumps(outcome))
"""


def load_in_process(repo_id: str, hf_home, **env) -> dict:
    environment = {**os.environ, "HF_HOME": str(hf_home), **env}
    environment.pop("HF_HUB_OFFLINE", None) if "HF_HUB_OFFLINE" not in env else None
    done = subprocess.run(
        [sys.executable, "-P", "-c", _LOAD, repo_id], env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    print(f"{repo_id} with {env}: {outcome['seconds']:.2f} s")
    return outcome


@pytest.fixture
def silent_hub():
    """An endpoint that accepts connections and never answers: a hub behind a dead link."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def refused_hub():
    """An endpoint nobody listens on: no network route, connection refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("hub", ["offline", "refused", "silent"])
def test_hub_id_without_a_hub_fails_at_once_with_the_way_out(tmp_path, request, hub):
    env = {"HF_HUB_OFFLINE": "1"} if hub == "offline" else {"HF_ENDPOINT": request.getfixturevalue(f"{hub}_hub")}
    outcome = load_in_process(HUB_ID, tmp_path / "hf", **env)
    message = outcome["error"]
    assert f"`hf download {HUB_ID} --local-dir DIR`" in message and "--weights DIR" in message
    assert "cannot be reached" in message and "not in the local cache" in message
    assert "huggingface-cli" not in message
    # Loose: guards the 23 s of retries the hub client spends before giving up, not the speed.
    assert outcome["seconds"] < 10.0


def test_a_hub_that_answers_is_asked_through_the_download_path(tmp_path):
    """A reachable hub that has no such repository: the download's own error, not the offline one."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - http.server's naming
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD  # noqa: N815

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        outcome = load_in_process(HUB_ID, tmp_path / "hf", HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}")
        server.shutdown()
    # huggingface_hub's own answer to an HTTP error (it looked in its cache too), not our offline short cut
    assert "the hub cannot be reached" not in outcome["error"] and "LocalEntryNotFoundError" in outcome["error"]
    assert f"`hf download {HUB_ID} --local-dir DIR`" in outcome["error"]


def test_hub_id_in_the_local_cache_is_used_without_a_hub(tmp_path, tiny_model, refused_hub):
    snapshot = tmp_path / "hf" / "hub" / "models--someone--tiny-clipseg" / "snapshots" / ("0" * 40)
    save_hf(tiny_model, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    for env in ({"HF_ENDPOINT": refused_hub}, {"HF_HUB_OFFLINE": "1"}):
        outcome = load_in_process("someone/tiny-clipseg", tmp_path / "hf", **env)
        assert outcome.get("loaded") == tiny_model.config.to_hf_dict(), outcome


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
