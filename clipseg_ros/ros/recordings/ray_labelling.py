"""clipseg-label-bags --ray: bags and their spans spread over a Ray cluster, written here exactly as a local run
writes them.

Each worker is an actor that loads the model once and labels one span per task, as `label_locally` does in
this process; it returns the span's frames and counts. The driver alone writes, each bag with `BagJob.write`
in span order, so the outputs are the local run's bytes. A span whose worker dies is handed to another worker
(the dead one restarts, reloads the model and rejoins), a few times, then its bag fails and the others go on.

The only module of the package that imports Ray (an optional dependency).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import clipseg_ros
from clipseg_ros.engine.progress import Progress
from clipseg_ros.ros.recordings.bag_io import BagError, BagReader
from clipseg_ros.ros.recordings.bag_job import BagJob, BagOutcome, Span, describe, frames_in, plan_spans
from clipseg_ros.ros.recordings.labeller import CameraTopics, LabelledFrame, SpanCounts
from clipseg_ros.ros.recordings.run_config import RunConfig

try:
    import ray
    from ray.exceptions import ActorDiedError, ObjectLostError, RayActorError, RayError, RayTaskError
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "clipseg-label-bags --ray needs Ray: pip install ray (or pip install 'clipseg_ros[ray]')"
    ) from exc

log = logging.getLogger("clipseg-label-bags")

SPAN_TRIES = 3  # a span whose worker died this many times fails its bag: it may be what kills them
WORKER_RESTARTS = 3  # a worker process that dies is started again (model reloaded) this many times
TASKS_PER_WORKER = 2  # one running, one queued behind it: a worker does not wait for the driver between spans
SPANS_AHEAD_PER_WORKER = 4  # spans labelled ahead of the writer, which wait in Ray's object store
# Set by the tests only: each span takes at least this long, so that a worker can be killed in the middle of one.
SPAN_DELAY_ENV = "CLIPSEG_RAY_TEST_SPAN_DELAY_S"


class SpanWorker:
    """One model on one GPU or a few CPUs, labelling any span of any bag it is given (a Ray actor)."""

    def __init__(self, config: RunConfig) -> None:
        self.labeller = config.labeller(logging.getLogger("clipseg-label-bags.worker").info)
        self.delay_s = float(os.environ.get(SPAN_DELAY_ENV, "0"))

    @ray.method(max_task_retries=-1)  # waits through a restart; ends with ActorDiedError when none is left
    def ready(self) -> int:
        return os.getpid()

    @ray.method(num_returns=2)
    def label(self, bag: str, cameras: Sequence[CameraTopics], span: Span) -> tuple[SpanCounts, list[LabelledFrame]]:
        """The span's counts (small: the driver reads them at once) and frames (left in the object store until
        their bag is written)."""
        started = time.monotonic()
        counts = SpanCounts()
        with BagReader(Path(bag)) as reader:
            frames = list(self.labeller.label(reader, cameras, span[0], span[1], counts))
        time.sleep(max(0.0, self.delay_s - (time.monotonic() - started)))
        return counts, frames


@dataclass
class _Bag:
    job: BagJob
    cameras: list[CameraTopics]
    warnings: list[str]
    spans: list[Span]
    frames: int  # colour frames, for the progress
    first: int  # the run-wide order of its first span
    done: dict[int, tuple[_Task, SpanCounts, object]] = field(default_factory=dict)  # index -> ..., frames ref
    failure: str = ""
    retried: int = 0
    started: float | None = None


@dataclass(order=True)
class _Task:
    order: int  # run-wide: bags in order, spans in order; the writer takes them so
    bag: _Bag = field(compare=False)
    index: int = field(compare=False)
    tries: int = field(default=0, compare=False)


def label_on_ray(
    jobs: list[BagJob], config: RunConfig, address: str, workers: int | None, cpus_per_worker: float, show: bool
) -> list[BagOutcome]:
    """Label `jobs` on Ray: `address` "local" starts a Ray instance here (shut down at the end), "auto",
    "host:port" or "ray://host:port" joins a cluster. Outcomes in the order of `jobs`."""
    outcomes: dict[int, BagOutcome] = {}
    bags: dict[int, _Bag] = {}
    order = up_to_date = 0
    for number, job in enumerate(jobs):
        if (part := job.finished()) is not None:
            outcomes[number] = BagOutcome(job.bag, "up to date", job.output, part["frames"], export=part)
            up_to_date += frames_in(job.bag, config.cameras)
            continue
        try:
            with BagReader(job.bag) as reader:
                cameras, warnings = config.cameras.resolve(reader.topics)
                spans = plan_spans(reader, config.chunk_s, config.continuous)
                frames = sum(reader.count(c.image) for c in cameras)
        except BagError as exc:
            outcomes[number] = BagOutcome(job.bag, "failed", reason=_naming(job.bag, str(exc)))
            continue
        bags[number] = _Bag(job, cameras, warnings, spans, frames, order)
        order += len(spans)
    if bags:
        # Ray's driver prints what its raylets report (a worker died) on stdout: the outcome table's.
        with contextlib.redirect_stdout(sys.stderr):
            connected = _connect(address)
            try:
                run = _Run(config, workers, cpus_per_worker, order)
                try:
                    total = up_to_date + sum(b.frames for b in bags.values())
                    progress = Progress(total, "all bags", "frame", initial=up_to_date, enabled=show)
                    outcomes |= run.label(bags, progress)
                finally:
                    run.close()
            finally:
                if connected:
                    ray.shutdown()
    return [outcomes[number] for number in range(len(jobs))]


def _connect(address: str) -> bool:
    """Connect this process to Ray unless it is (a notebook, a test: their connection is theirs); whether it
    connected, and so disconnects at the end (which stops a local instance)."""
    if ray.is_initialized():
        return False
    # Ray puts the driver's working directory first on its workers' import path (not through Ray Client).
    source = Path.cwd() / "clipseg_ros"
    if not address.startswith("ray://") and source.is_dir() and source != Path(clipseg_ros.__path__[0]).absolute():
        raise RuntimeError(
            f"{Path.cwd()} holds a clipseg_ros source folder that Ray's workers would import instead of the "
            "installed package: run clipseg-label-bags --ray from another directory"
        )
    # The workers' log lines stay in Ray's log files: this process's output is the outcome table.
    ray.init(address=address, log_to_driver=False)
    return True


def _naming(bag: Path, reason: str) -> str:
    """`reason` in one line that names the bag (a worker names it by its absolute path)."""
    line = " ".join(reason.split())
    return line if str(bag) in line or str(bag.resolve()) in line else f"{bag}: {line}"


class _Run:
    """The workers and the spans handed to them; pumped by the writer whenever it waits for a span."""

    def __init__(self, config: RunConfig, workers: int | None, cpus_per_worker: float, spans: int) -> None:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if config.value("device") != "cpu" else 0
        if gpus:
            options = {"num_gpus": 1}
            fit = gpus
            if str(config.value("device")).startswith("cuda:"):  # Ray shows a worker its one GPU as cuda:0
                config = dataclasses.replace(config, parameters={**config.parameters, "device": "cuda"})
        else:
            options = {"num_cpus": cpus_per_worker}
            fit = int(resources.get("CPU", 0) // cpus_per_worker)
            if not fit:
                raise ValueError(
                    f"the Ray cluster has {resources.get('CPU', 0):g} CPUs, fewer than a worker's "
                    f"{cpus_per_worker:g} (--ray-cpus-per-worker)"
                )
        count = max(1, min(workers or fit, spans))
        log.info("Ray: %d workers, %s each", count, "a GPU" if gpus else f"{cpus_per_worker:g} CPUs")
        worker = ray.remote(SpanWorker).options(max_restarts=WORKER_RESTARTS, max_task_retries=0, **options)
        self.workers = [worker.remote(config) for _ in range(count)]
        # A worker takes spans once its model is loaded: one that cannot be placed or started holds none back.
        self.waking = {w.ready.remote(): w for w in self.workers}  # ready probe -> worker loading or restarting
        self.load: dict[object, int] = {}  # worker taking spans -> its spans not back yet
        # Deaths seen per worker: a span handed to a life that has ended says nothing about the one running now.
        self.lives: dict[object, int] = dict.fromkeys(self.workers, 0)
        self.running: dict[object, tuple[object, int, _Task, object]] = {}  # counts ref -> worker, life, ...
        self.queue: list[_Task] = []
        self.writing = 0  # the order of the span the writer waits for
        self.lost = ""  # why the last worker left for good

    def label(self, bags: dict[int, _Bag], progress: Progress) -> dict[int, BagOutcome]:
        for bag in bags.values():
            for index in range(len(bag.spans)):
                heapq.heappush(self.queue, _Task(bag.first + index, bag, index))
        with progress:
            return {number: self._write(bag, progress) for number, bag in bags.items()}

    def close(self) -> None:
        for worker in self.workers:
            ray.kill(worker)

    def _write(self, bag: _Bag, progress: Progress) -> BagOutcome:
        counts = SpanCounts()
        try:
            if bag.failure:  # before its first span was written: nothing to undo
                raise BagError(bag.failure)
            output, export = bag.job.write(bag.cameras, self._spans(bag, counts), progress.update)
        except BagError as exc:
            return BagOutcome(bag.job.bag, "failed", reason=str(exc), seconds=self._seconds(bag))
        notes = describe(counts, bag.warnings)
        if bag.retried:
            notes = "; ".join(filter(None, [notes, f"spans retried after their worker died: {bag.retried}"]))
        return BagOutcome(bag.job.bag, "labelled", output, counts.frames, self._seconds(bag), notes, export)

    def _spans(self, bag: _Bag, counts: SpanCounts) -> Iterator[list[LabelledFrame]]:
        for index in range(len(bag.spans)):
            self.writing = bag.first + index
            frames = None
            while frames is None:
                while index not in bag.done and not bag.failure:
                    self._pump()
                if bag.failure:
                    raise BagError(bag.failure)
                task, span_counts, ref = bag.done.pop(index)
                try:
                    frames = ray.get(ref)
                except ObjectLostError as exc:  # the node that held them is gone
                    self._retry(task, exc)
            counts.add(span_counts)
            yield frames

    def _pump(self) -> None:
        """Hand out what workers can take, then take in one finished span or one worker back."""
        self._hand_out()
        if not self.running and not self.waking:
            self._fail_all(f"no Ray worker left ({self.lost or 'none could start'})")
            return
        (ref,), _ = ray.wait([*self.running, *self.waking], num_returns=1)
        if ref in self.waking:
            worker = self.waking.pop(ref)
            try:
                ray.get(ref)
                self.load[worker] = 0
            except RayActorError as exc:
                self._leave(exc)
            return
        worker, life, task, frames = self.running.pop(ref)
        if life == self.lives[worker] and worker in self.load:
            self.load[worker] -= 1
        try:
            counts = ray.get(ref)
        except (RayTaskError, RayActorError) as exc:
            with contextlib.suppress(RayError):  # the same error: read, so that Ray does not print it as lost
                ray.get(frames)
            if isinstance(exc, RayActorError):
                self._retry(task, exc)
                if life == self.lives[worker]:
                    self._rest(worker, exc)
            elif isinstance(exc.cause, BagError):
                self._fail(task.bag, str(exc.cause))
            else:
                raise
        else:
            if not task.bag.failure:
                task.bag.done[task.index] = (task, counts, frames)

    def _hand_out(self) -> None:
        while self.queue and self.queue[0].order < self.writing + SPANS_AHEAD_PER_WORKER * len(self.workers):
            if self.queue[0].bag.failure:
                heapq.heappop(self.queue)
                continue
            free = [w for w, n in self.load.items() if n < TASKS_PER_WORKER]
            if not free:
                return
            worker = min(free, key=self.load.__getitem__)
            task = heapq.heappop(self.queue)
            bag = task.bag
            if bag.started is None:
                bag.started = time.monotonic()
            counts, frames = worker.label.remote(str(bag.job.bag.resolve()), bag.cameras, bag.spans[task.index])
            self.running[counts] = (worker, self.lives[worker], task, frames)
            self.load[worker] += 1

    def _retry(self, task: _Task, exc: Exception) -> None:
        task.tries += 1
        task.bag.retried += 1
        what = f"span {task.index + 1} of {len(task.bag.spans)}"
        if task.tries >= SPAN_TRIES:
            self._fail(task.bag, f"{what} lost {task.tries} times; the last: {_first_line(exc)}")
            return
        log.warning("%s: %s lost (%s); handed to another worker", task.bag.job.bag, what, _first_line(exc))
        heapq.heappush(self.queue, task)

    def _rest(self, worker, exc: RayActorError) -> None:
        """No more spans for a worker that died until Ray has restarted it, or for good when it will not."""
        self.lives[worker] += 1
        del self.load[worker]
        if isinstance(exc, ActorDiedError):
            self._leave(exc)
        else:
            self.waking[worker.ready.remote()] = worker

    def _leave(self, exc: RayActorError) -> None:
        self.lost = _first_line(exc)
        log.warning("a Ray worker is gone for good: %s", self.lost)

    def _fail(self, bag: _Bag, reason: str) -> None:
        if not bag.failure:
            bag.failure = _naming(bag.job.bag, reason)
            bag.done.clear()

    def _fail_all(self, reason: str) -> None:
        for task in self.queue:
            self._fail(task.bag, reason)
        self.queue.clear()

    @staticmethod
    def _seconds(bag: _Bag) -> float:
        return time.monotonic() - bag.started if bag.started is not None else 0.0


def _first_line(exc: BaseException) -> str:
    """Ray's error in one line; for a worker that could not start, the exception its traceback ends with."""
    text = str(exc).strip()
    lines = text.splitlines() or [type(exc).__name__]
    raised = [line for line in lines if re.match(r"[A-Za-z_][\w.]*: ", line)]
    return raised[-1] if raised and "Traceback (most recent call last)" in text else lines[0]
