"""clipseg-label-bags --ray against the local run: the same bytes, with a worker killed in the middle of the run,
a bag that cannot be opened and one that breaks in a worker."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from background import LAST_TIERS_NICENESS, Background
from tiny_clipseg import save_tiny_checkpoint

from clipseg_ros.ros.recordings.sample_bags import SampleBagSpec, corrupt_copy, write_sample_bag

pytest.importorskip("ray")

WORKER_LABELLING = b"ray::SpanWorker.label"  # the title Ray gives an actor process while it runs `label`


def _params(path: Path, weights: Path) -> Path:
    parameters = {
        "weights": str(weights),
        "device": "cpu",
        "precision": "fp32",
        "input_size": [64, 64],
        "prompts": ["cube", "ball"],
        "tracking": {"enabled": False},  # otherwise a bag is one span
        "depth": {"enabled": True},
    }
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
    return path


def _bags(folder: Path) -> list[Path]:
    folder.mkdir()
    specs = {
        "a": SampleBagSpec(frames=40, namespace="/", depth="16UC1"),
        "b": SampleBagSpec(frames=30, namespace="/", depth=None, seed=1),
        "c": SampleBagSpec(frames=50, namespace="/", depth=None, seed=2, image="compressed"),
    }
    for name, spec in specs.items():
        write_sample_bag(folder / name, spec)
    corrupt_copy(folder / "b", folder / "cut", keep=0.5)
    return [folder / name for name in ("a", "b", "c", "cut")]


def _table(text: str) -> dict[str, list[str]]:
    """The outcome table's rows by bag name, cut at its header's columns."""
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["bag", "status"])
    starts = [lines[header].index(name) for name in ("bag", "status", "frames", "seconds", "output", "notes")]
    cut = list(zip(starts, [*starts[1:], None], strict=True))
    rows = [[line[a:b].strip() for a, b in cut] for line in lines[header + 1 :]]
    return {Path(row[0]).name: row for row in rows}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def _labelling_workers() -> list[int]:
    """This test's Ray workers (its local instance's processes descend from it) in the middle of a span."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(WORKER_LABELLING):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if _descends_from(pid, os.getpid())]


class _Killer(threading.Thread):
    """Kills one worker while it labels a span, once the first bag is written (so: mid-run, work left)."""

    def __init__(self, written: Path) -> None:
        super().__init__(daemon=True)
        self.written, self.stop, self.killed_at, self.pid = written, threading.Event(), None, None

    def run(self) -> None:
        while not self.stop.wait(0.02):
            if not self.written.is_dir():
                continue
            if workers := _labelling_workers():
                self.pid, self.killed_at = workers[0], time.monotonic()
                os.kill(self.pid, signal.SIGKILL)
                return


def run_scenario(work: Path) -> None:
    """The local run, then the Ray run with a worker killed mid-span, in `work`; prints their results as JSON.

    Run by start_early in a process of its own (background.py): Ray's local instance, its workers and their model
    loads take most of the time, and run beside the tests before this one."""
    from clipseg_ros.commands import label_bags
    from clipseg_ros.ros.recordings import ray_labelling

    os.chdir(work)  # Ray's workers import from here: not from a source checkout
    checkpoint = save_tiny_checkpoint(work / "weights")
    _bags(work / "bags")
    doomed = work / "doomed"
    write_sample_bag(doomed, SampleBagSpec(frames=20, namespace="/", depth=None, seed=3))
    common = ["--params-file", str(_params(work / "params.yaml", checkpoint)), "--chunk-s", "1.0", "--quiet"]
    # Ray gives each worker OMP_NUM_THREADS = its CPUs (1 here); the local run the same: a product's float sums
    # depend on how the threads split it, in their last bits.
    torch.set_num_threads(1)
    results = {}
    with contextlib.redirect_stdout(io.StringIO()) as table:
        results["local_code"] = label_bags.main(["bags", *common, "--output", "local"])
    results["local"] = table.getvalue()

    planned = ray_labelling.plan_spans

    def plan_then_break(reader, chunk_s, continuous):
        """`doomed` is cut once planned: its worker cannot open it."""
        spans = planned(reader, chunk_s, continuous)
        if reader.path == doomed:
            (data,) = doomed.glob("*.mcap")
            data.write_bytes(data.read_bytes()[:1000])
        return spans

    ray_labelling.plan_spans = plan_then_break
    os.environ[ray_labelling.SPAN_DELAY_ENV] = "0.4"
    killer = _Killer(work / "ray" / "a_labels")
    killer.start()
    started = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()) as table:
        results["ray_code"] = label_bags.main(
            ["bags", str(doomed), *common, "--output", "ray"]
            + ["--ray", "--ray-workers", "2", "--ray-cpus-per-worker", "1"]
        )
    ended = time.monotonic()
    killer.stop.set()
    killer.join()
    results["ray"] = table.getvalue()
    results["killed"] = killer.pid is not None and killer.killed_at < ended
    results["timing"] = f"Ray run {ended - started:.1f} s, killed after {(killer.killed_at or ended) - started:.1f} s"
    print(json.dumps(results))


def start_early() -> Background:
    background = Background(LAST_TIERS_NICENESS)
    here = Path(__file__).resolve().parent
    code = f"import test_label_bags_ray as t; t.run_scenario(__import__('pathlib').Path({str(background.directory)!r}))"
    env = {**os.environ, "PYTHONPATH": f"{here}{os.pathsep}{here.parent}"}
    background.start("scenario", [sys.executable, "-P", "-c", code], env=env, cwd=background.directory)
    return background


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes in /proc")
def test_ray_run_writes_the_local_bytes_with_a_worker_killed(early, monkeypatch, capsys):
    run = early.result("scenario", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.splitlines()[-1])
    work = early.directory
    print(results["timing"], file=sys.stderr)
    assert results["local_code"] == 1  # `cut` cannot be opened
    local, table = _table(results["local"]), _table(results["ray"])
    assert [local[name][1] for name in "abc"] == ["labelled"] * 3
    assert results["ray_code"] == 1
    assert results["killed"], "no worker was killed during the run"
    out = results["ray"]
    assert [table[name][1] for name in "abc"] == ["labelled"] * 3
    assert "retried" in " ".join(table[name][5] for name in "abc"), out
    for name in ("cut", "doomed"):
        assert table[name][1] == "failed" and name in table[name][-1], out
        assert not (work / "ray" / f"{name}_labels").exists()
    assert not list((work / "ray").glob("*.partial"))
    for name in "abc":
        ours, theirs = (_files(work / run / f"{name}_labels") for run in ("ray", "local"))
        assert sorted(ours) == sorted(theirs)
        assert {f for f in ours if ours[f] != theirs[f]} == set(), name
        assert int(table[name][2]) == int(local[name][2]) > 0

    from clipseg_ros.commands import label_bags
    from clipseg_ros.ros.recordings import ray_labelling

    monkeypatch.chdir(work)
    monkeypatch.setattr(ray_labelling, "_connect", lambda address: pytest.fail("Ray started with nothing to label"))
    common = ["--params-file", str(work / "params.yaml"), "--chunk-s", "1.0", "--quiet"]
    assert label_bags.main(["bags", *common, "--output", "ray", "--ray"]) == 1
    again = _table(capsys.readouterr().out)
    assert [again[name][1] for name in ("a", "b", "c", "cut")] == ["up to date"] * 3 + ["failed"]


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "clipseg_ros.ros.recordings.ray_labelling", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"pip install ray .*pip install 'clipseg_ros\[ray\]'"):
        import clipseg_ros.ros.recordings.ray_labelling  # noqa: F401
