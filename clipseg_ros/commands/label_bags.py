"""clipseg-label-bags: label recorded bags offline with the node's own parameters and outputs, no ROS needed.

Reads rosbag2 (MCAP, sqlite3) and ROS 1 bags; writes per bag a rosbag2 in MCAP with the node's outputs
(/clipseg/mask, probability, label, segmentation, points, markers, camera_info) at the log times of their
frames. Every frame is segmented. On a Ray cluster with --ray. See docs/recordings.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from clipseg_ros.engine.progress import Progress
from clipseg_ros.ros.node.frame_outputs import OUTPUT_TYPES
from clipseg_ros.ros.node.startup import EXIT_BAD_PARAMETERS, StartupError
from clipseg_ros.ros.recordings.bag_job import BagJob, BagOutcome, frames_in, label_locally
from clipseg_ros.ros.recordings.exports import write_coco, write_summary
from clipseg_ros.ros.recordings.labeller import RECORDED_OUTPUTS, SpanCounts
from clipseg_ros.ros.recordings.run_config import DEFAULT_CHUNK_S, RunConfig, model_digest, read_params_file

log = logging.getLogger("clipseg-label-bags")
EXIT_SOME_FAILED = 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clipseg-label-bags", description=__doc__.splitlines()[0])
    p.add_argument("bags", nargs="+", type=Path, help="bags (a rosbag2 folder or a ROS 1 .bag file) or folders of bags")
    p.add_argument("--params-file", type=Path, help="the node's parameters file (config/segment.yaml)")
    p.add_argument("--prompts", help="prompts separated by `prompt_separator` (';'): 'person; pallet; free floor'")
    p.add_argument(
        "--image-topic",
        action="append",
        default=[],
        metavar="[CAMERA=]TOPIC",
        help="a camera's image topic in the bags (default: the node's names, /image or /<camera>/image)",
    )
    p.add_argument(
        "--depth-topic",
        action="append",
        default=[],
        metavar="[CAMERA=]TOPIC",
        help="a camera's depth topic (default /depth/image); its camera_info is the sibling topic",
    )
    p.add_argument("--weights", help="hub id or local checkpoint (overrides the parameters file)")
    p.add_argument("--backend", help="torch, onnxruntime or tensorrt")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", help="auto, fp32, fp16 or bf16")
    p.add_argument("--output", type=Path, default=Path("labels"), help="folder for the labelled bags (default labels)")
    p.add_argument(
        "--outputs",
        default=",".join(RECORDED_OUTPUTS),
        help=f"outputs to record, comma-separated, of {', '.join(OUTPUT_TYPES)}",
    )
    p.add_argument("--copy-inputs", action="store_true", help="copy the input topics into the labelled bags")
    p.add_argument("--batch", type=int, default=8, help="frames segmented together (default 8)")
    p.add_argument(
        "--chunk-s",
        type=float,
        default=DEFAULT_CHUNK_S,
        help="long bags are labelled in spans this long (seconds; 0: whole bags). With tracking or "
        "steady masks on, a bag is one span",
    )
    p.add_argument("--export", choices=("coco",), help="also write a dataset: coco_instances.json")
    p.add_argument("--export-images", action="store_true", help="with --export: the frames as PNG")
    p.add_argument("--summary", action="store_true", help="write summary.json and summary.png")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="spread bags and spans over Ray: `auto` joins a running cluster, none starts a local one",
    )
    p.add_argument("--ray-cpus-per-worker", type=float, default=1.0, help="CPUs per worker without a GPU")
    p.add_argument("--ray-workers", type=int, help="workers to start (default: as many as the cluster holds)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or lines")
    return p.parse_args(argv)


def find_bags(paths: Sequence[Path]) -> list[Path]:
    """Each path a bag, or a folder whose entries are bags (rosbag2 folders, .bag files), in name order."""
    bags = []
    for path in paths:
        if _is_bag(path) or not path.is_dir():
            bags.append(path)  # a path that is not there is reported with the bags that fail
        else:
            bags += sorted(p for p in path.iterdir() if _is_bag(p))
    return bags


def _is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or (path.is_file() and path.suffix == ".bag")


def _topics_by_camera(given: Sequence[str]) -> dict[str, str]:
    mapped = {}
    for item in given:
        camera, _, topic = item.rpartition("=")
        mapped[camera] = topic
    return mapped


def config_from_args(args: argparse.Namespace) -> RunConfig:
    params = read_params_file(args.params_file) if args.params_file else {}
    separator = params.get("prompt_separator", ";")
    overrides = {
        "weights": args.weights,
        "backend": args.backend,
        "device": args.device,
        "precision": args.precision,
        "prompts": [p.strip() for p in args.prompts.split(separator) if p.strip()] if args.prompts else None,
    }
    outputs = tuple(o.strip() for o in args.outputs.split(",") if o.strip())
    if args.export_images and not args.export:
        raise ValueError("--export-images goes with --export coco")
    return RunConfig.make(
        params,
        overrides,
        image_topics=_topics_by_camera(args.image_topic),
        depth_topics=_topics_by_camera(args.depth_topic),
        outputs=outputs,
        batch=args.batch,
        chunk_s=args.chunk_s or None,
        copy_inputs=args.copy_inputs,
        export_coco=args.export == "coco",
        export_images=args.export_images,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = config_from_args(args)
        for name in config.unknown:
            log.warning("parameters file: %s is not a parameter of the node (ignored)", name)
        labeller = config.labeller(log.info)
    except StartupError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_BAD_PARAMETERS
    bags = find_bags(args.bags)
    if not bags:
        log.error("no bags in %s", ", ".join(map(str, args.bags)))
        return EXIT_BAD_PARAMETERS
    args.output.mkdir(parents=True, exist_ok=True)
    run_key = config.key(model_digest(labeller))
    labels = config.settings().prompts
    jobs = [BagJob(bag, args.output, run_key, labels, config.export_coco) for bag in bags]
    if args.ray:
        try:
            from clipseg_ros.ros.recordings.ray_labelling import label_on_ray  # Ray is an optional extra

            outcomes = label_on_ray(jobs, config, args.ray, args.ray_workers, args.ray_cpus_per_worker, not args.quiet)
        except (ModuleNotFoundError, RuntimeError, ValueError, ConnectionError) as exc:  # no Ray, no cluster, no fit
            log.error("--ray: %s", " ".join(str(exc).split()))
            return EXIT_BAD_PARAMETERS
    else:
        outcomes = _label_here(jobs, config, labeller, not args.quiet)
    _finish(outcomes, args, labels)
    return EXIT_SOME_FAILED if any(o.status == "failed" for o in outcomes) else 0


def _label_here(jobs: list[BagJob], config: RunConfig, labeller, show: bool) -> list[BagOutcome]:
    """Each bag in turn, with a bar for it and one for all frames (log lines off a terminal)."""
    totals = {job.bag: frames_in(job.bag, config.cameras) for job in jobs}
    overall = Progress(sum(totals.values()), "all bags", "frame", enabled=show)
    outcomes = []

    def label_span(reader, cameras, span, counts: SpanCounts):
        return labeller.label(reader, cameras, span[0], span[1], counts)

    for job in jobs:
        if (part := job.finished()) is not None:
            outcomes.append(BagOutcome(job.bag, "up to date", job.output, part["frames"], export=part))
            overall.update(totals[job.bag])
            continue
        bar = Progress(totals[job.bag], job.name, "frame", enabled=show, position=1)

        def on_frame(bar=bar) -> None:
            bar.update()
            overall.update()

        outcomes.append(label_locally(job, label_span, config.cameras, config.chunk_s, config.continuous, on_frame))
        bar.close()
    overall.close()
    return outcomes


def _finish(outcomes: list[BagOutcome], args: argparse.Namespace, labels: Sequence[str]) -> None:
    parts = [o.export for o in outcomes if o.export is not None]
    if args.export == "coco":
        log.info("COCO instances: %s", write_coco(parts, labels, args.output / "coco_instances.json"))
    if args.summary:
        log.info("summary: %s", ", ".join(map(str, write_summary(parts, labels, args.output / "summary.json"))))
    print(outcome_table(outcomes), file=sys.stdout, flush=True)


def outcome_table(outcomes: Sequence[BagOutcome]) -> str:
    rows = [("bag", "status", "frames", "seconds", "output", "notes")]
    for o in outcomes:
        seconds = f"{o.seconds:.1f}" if o.status == "labelled" else "-"
        rows.append((str(o.bag), o.status, str(o.frames), seconds, str(o.output or "-"), o.reason or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[5] for row in rows)


if __name__ == "__main__":
    sys.exit(main())
