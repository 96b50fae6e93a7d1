"""`reco` command line: worker, replay, topics, demo, publish, snapshot, train, rollback,
benchmark, segments, status, ab-report."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from schemas.errors import RecommenderError
from streams.settings import Settings


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default=None,
        help="online_retail, toys, sports, video_games, ml-100k, synthetic or a file path "
        "(default: online_retail when ../shared/data has it, else synthetic)",
    )
    p.add_argument("--limit", type=int, default=None, help="publish only the first N events")


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker import run_worker

    run_worker(settings, loglevel=args.loglevel)
    return 0


def _cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.topics import ensure_topics
    from streams.worker import require_services

    bootstrap, _ = require_services(settings)
    asyncio.run(ensure_topics(bootstrap, settings.topic_partitions(), settings.replication_factor))
    for name, parts in settings.topic_partitions().items():
        print(f"{name}\t{parts} partitions")
    return 0


def default_dataset() -> str:
    from models.datasets import available

    return "online_retail" if "online_retail" in available() else "synthetic"


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from models.datasets import load, to_messages
    from schemas.codec import Codec
    from streams.replay import encoded, publish
    from streams.topics import ensure_topics
    from streams.worker import require_services

    bootstrap, _ = require_services(settings)
    ds = load(args.dataset or default_dataset(), limit=args.limit)
    msgs = list(to_messages(ds))
    asyncio.run(ensure_topics(bootstrap, settings.topic_partitions(), settings.replication_factor))
    stats = asyncio.run(
        publish(
            bootstrap,
            encoded(msgs, settings, Codec(settings.wire_format)),
            rate=args.rate,
            total=len(msgs),
        )
    )
    print(
        f"published {stats.total} messages {dict(stats.sent)} in {stats.seconds:.1f}s "
        f"({stats.rate:,.0f}/s)"
    )
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.demo import run_demo

    return run_demo(settings, args)


def _require_kafka(settings: Settings) -> str:
    from schemas.errors import ConfigError

    if not settings.kafka_bootstrap_servers:
        raise ConfigError("this command needs KAFKA_BOOTSTRAP_SERVERS")
    return settings.kafka_bootstrap_servers


def _cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from models.checkpoint import load_checkpoint
    from models.registry import Registry
    from streams.announce import announce
    from streams.topics import ensure_topics

    ckpt = load_checkpoint(args.checkpoint)
    if args.check:
        # A version no worker can build would only be rejected by every one of them.
        ckpt.build()
    if args.announce:
        bootstrap = _require_kafka(settings)  # before publishing: no silent, unannounced version
        topic = {settings.topic_model_updates: settings.partitions}
        asyncio.run(ensure_topics(bootstrap, topic, settings.replication_factor))
    version = Registry(args.registry).publish(ckpt, args.name)
    print(f"published {version.name} {version.version} at {version.uri}")
    if args.announce:
        sent = asyncio.run(announce(version, settings))
        print(f"announced on {sent.topic} partition {sent.partition} offset {sent.offset}")
    return 0


def _cmd_snapshot(args: argparse.Namespace, settings: Settings) -> int:
    from streams.snapshot import snapshot

    _require_kafka(settings)
    stats = asyncio.run(snapshot(settings, args.out, name=args.name, progress=not args.no_progress))
    print(f"wrote {args.out}: {stats.summary()}")
    return 0


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from streams.trainer import TrainerConfig, parse_model_overrides, retrain, run_schedule

    model = parse_model_overrides(args.set)
    if args.epochs is not None:
        model["epochs"] = args.epochs
    if args.max_minutes is not None:
        model["max_minutes"] = args.max_minutes
    given = {
        "tolerance": args.tolerance,
        "min_events": args.min_events,
        "window_share": args.window_share,
    }
    config = TrainerConfig(
        model=model, refit=args.refit, **{k: v for k, v in given.items() if v is not None}
    )
    _require_kafka(settings)
    registry = args.registry or settings.model_registry
    if args.every is None:
        outcome = asyncio.run(retrain(settings, config, registry, args.work_dir))
        print(outcome.summary())
        if outcome.version is not None:
            print(f"version at {outcome.version.uri}")
        if outcome.announced is not None:
            sent = outcome.announced
            print(f"announced on {sent.topic} partition {sent.partition} offset {sent.offset}")
        return 0
    try:
        asyncio.run(run_schedule(settings, config, registry, args.every, work_dir=args.work_dir))
    except KeyboardInterrupt:
        print("reco train: stopped", file=sys.stderr)
    return 0


def _cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import Registry
    from streams.announce import announce
    from streams.trainer import ensure_updates_topic

    name = args.name or settings.model_name
    registry = Registry(args.registry or settings.model_registry)
    if args.announce:
        _require_kafka(settings)  # before moving LATEST: no silent, unannounced rollback
        asyncio.run(ensure_updates_topic(settings))
    current = registry.latest_version(name)
    version = registry.rollback(name)
    print(f"rolled back {name} from {current} to {version.version} in {registry.root}")
    if args.announce:
        sent = asyncio.run(announce(version, settings))
        print(f"announced on {sent.topic} partition {sent.partition} offset {sent.offset}")
    return 0


def _cmd_benchmark(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from models.benchmark import DEFAULT_MODELS, parse_overrides, run, save

    models = args.models.split(",") if args.models else list(DEFAULT_MODELS)
    try:
        overrides = parse_overrides(args.set)
        for dataset in args.datasets:
            result = run(dataset, models, args.split, overrides)
            md, js = save(result, Path(args.out))
            print(f"\n{result.summary()}\n\n{result.markdown()}\n\nwrote {md} and {js}")
    except (ValueError, FileNotFoundError) as exc:
        print(f"reco benchmark: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_segments(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from models.segments.report import ReportConfig, parse_k_range, run, save

    try:
        config = ReportConfig(
            embedding=args.embedding,
            k=args.k,
            k_range=parse_k_range(args.k_range),
            limit=args.limit,
            personas_of=args.personas,
            checkpoint=args.checkpoint,
            sequence_epochs=args.epochs,
        )
        report = run(args.dataset, config)
        suffix = "" if args.embedding == "profile" else f"-{args.embedding}"
        out = Path(args.out or f"demo-out/segments/{report.dataset}{suffix}")
        files = save(report, out, Path(args.results) if args.results else None)
    except (ValueError, FileNotFoundError) as exc:
        print(f"reco segments: {exc}", file=sys.stderr)
        return 2
    print(f"{report.source}: {report.users:,} users\n\n{report.table()}\n")
    print("\n".join(report.notes()))
    print("\nwrote " + ", ".join(str(f) for f in files))
    return 0


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from streams.status import show

    print(asyncio.run(show(settings, as_json=args.json, with_lag=not args.no_lag)))
    return 0


def _cmd_ab_report(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from streams.abreport import Options, run

    result, files = run(settings, Options(args.window_s, args.k, Path(args.out)))
    print(result.markdown())
    print("\nwrote " + ", ".join(str(f) for f in files))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reco", description=__doc__)
    parser.add_argument("--loglevel", default="info")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run a stream worker (needs KAFKA_BOOTSTRAP_SERVERS, REDIS_URL)")
    sub.add_parser("topics", help="create every topic with its partition count")

    rp = sub.add_parser("replay", help="publish a data set to the input topics")
    _add_dataset_args(rp)
    rp.add_argument("--rate", type=float, default=None, help="messages per second (default: max)")

    dp = sub.add_parser("demo", help="end-to-end run on a local broker and Redis")
    _add_dataset_args(dp)
    dp.add_argument("--rate", type=float, default=None, help="messages per second (default: max)")
    dp.add_argument(
        "--unbounded",
        action="store_true",
        help="replay the whole data set and keep running until Ctrl-C",
    )
    dp.add_argument("--users", type=int, default=3, help="users whose recommendations are shown")
    dp.add_argument(
        "--model-epochs",
        type=int,
        default=3,
        help="train SASRec for this many epochs and serve it (0: the co-occurrence baseline)",
    )

    pp = sub.add_parser(
        "publish", help="publish a checkpoint to the model registry and announce it"
    )
    pp.add_argument("checkpoint", help="checkpoint file (.pt) written by a trainer")
    pp.add_argument("--name", required=True, help="model name in the registry, e.g. sasrec")
    pp.add_argument(
        "--registry", default="registry", help="registry directory (default: ./registry)"
    )
    pp.add_argument(
        "--no-announce",
        dest="announce",
        action="store_false",
        help="only write to the registry; do not send a ModelUpdate on the model-updates topic",
    )
    pp.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="skip rebuilding the model from the checkpoint before publishing",
    )

    sp = sub.add_parser(
        "snapshot", help="write the purchase, review and catalog topics to an event-log file"
    )
    sp.add_argument("out", help="output file: .jsonl, or .jsonl.gz for gzip")
    sp.add_argument("--name", default=None, help="data set name (default: from the file name)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    tp = sub.add_parser(
        "train",
        help="snapshot the event log, train SASRec, and publish and announce it if not worse",
    )
    tp.add_argument(
        "--every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="retrain on this schedule until stopped (default: once)",
    )
    tp.add_argument(
        "--registry", default=None, help="registry directory (default: RECO_MODEL_REGISTRY)"
    )
    tp.add_argument("--epochs", type=int, default=None, help="most epochs to train")
    tp.add_argument(
        "--max-minutes", type=float, default=None, help="wall-clock cap on training, in minutes"
    )
    tp.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="publish when new NDCG@10 >= serving x (1 - T) (default: 0; negative demands a gain)",
    )
    tp.add_argument(
        "--no-refit",
        dest="refit",
        action="store_false",
        help="publish the model as evaluated (trained on the past windows only) instead of "
        "training it again on every event",
    )
    tp.add_argument(
        "--min-events",
        type=int,
        default=None,
        help="refuse to train on fewer interactions (default: 1000)",
    )
    tp.add_argument(
        "--window-share",
        type=float,
        default=None,
        help="share of events in each held-back window, validation and test (default: 0.1)",
    )
    tp.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a SASRec setting, e.g. hidden=32 (repeatable)",
    )
    tp.add_argument(
        "--work-dir",
        default=None,
        help="where the snapshot is written (default: a temporary directory, removed after)",
    )

    rb = sub.add_parser(
        "rollback",
        help="point the registry back at the previous version and announce it",
    )
    rb.add_argument("--name", default=None, help="model name (default: RECO_MODEL_NAME)")
    rb.add_argument(
        "--registry", default=None, help="registry directory (default: RECO_MODEL_REGISTRY)"
    )
    rb.add_argument(
        "--no-announce",
        dest="announce",
        action="store_false",
        help="only move the registry's LATEST pointer; send no ModelUpdate",
    )

    bp = sub.add_parser("benchmark", help="train and evaluate every model on data sets")
    bp.add_argument("datasets", nargs="+", help="data set names or files the importers read")
    bp.add_argument(
        "--models", default=None, help="comma-separated (default: all baselines, sasrec, bert4rec)"
    )
    bp.add_argument(
        "--split",
        choices=["leave-one-out", "temporal"],
        default=None,
        help="default: the data set's own (temporal for online_retail and a shop's "
        "event log, leave-one-out for the public benchmark sets)",
    )
    bp.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="MODEL.FIELD=VALUE",
        help="override a model's config, e.g. sasrec.max_minutes=10 (repeatable)",
    )
    bp.add_argument("--out", default="bench/results", help="where the table and JSON go")

    st = sub.add_parser(
        "status", help="throughput, lag, model versions, online hit rate, drift, segments"
    )
    st.add_argument("--json", action="store_true", help="the whole view as JSON")
    st.add_argument("--no-lag", action="store_true", help="skip the Kafka lag (Redis only)")

    ab = sub.add_parser(
        "ab-report",
        help="compare the A/B arms from the purchases and recommendations topics",
    )
    ab.add_argument("--window-s", type=float, default=None, help="attribution window")
    ab.add_argument("--k", type=int, default=None, help="list length judged (default: top_k)")
    ab.add_argument("--out", default="demo-out/ab", help="where the markdown and PNG go")

    gp = sub.add_parser(
        "segments", help="segment users online and offline, compare, and write personas"
    )
    gp.add_argument("dataset", help="data set name or file the importers read")
    gp.add_argument(
        "--embedding",
        choices=["profile", "als", "sequence"],
        default="profile",
        help="user embedding the batch models cluster (the online model always uses profiles)",
    )
    ks = gp.add_mutually_exclusive_group()
    ks.add_argument("--k", type=int, default=None, help="segments for every model")
    ks.add_argument(
        "--k-range",
        default="2-10",
        help="choose k by K-means silhouette over this range (default: 2-10)",
    )
    gp.add_argument(
        "--out",
        default=None,
        help="report directory (default: demo-out/segments/<set>, <set>-<embedding> for als "
        "and sequence)",
    )
    gp.add_argument("--limit", type=int, default=None, help="only the first N events")
    gp.add_argument(
        "--personas",
        choices=["kmeans", "gmm", "hdbscan", "online"],
        default="kmeans",
        help="segmentation the personas describe (default: batch K-means)",
    )
    gp.add_argument(
        "--checkpoint",
        default=None,
        help="sequence model checkpoint for --embedding sequence (default: train a small SASRec)",
    )
    gp.add_argument(
        "--epochs", type=int, default=3, help="epochs of that small SASRec (default: 3)"
    )
    gp.add_argument(
        "--results",
        default="bench/results",
        help="also write the JSON here (default: bench/results; '' to skip)",
    )
    return parser


COMMANDS = {
    "worker": _cmd_worker,
    "topics": _cmd_topics,
    "replay": _cmd_replay,
    "demo": _cmd_demo,
    "publish": _cmd_publish,
    "snapshot": _cmd_snapshot,
    "train": _cmd_train,
    "rollback": _cmd_rollback,
    "benchmark": _cmd_benchmark,
    "segments": _cmd_segments,
    "status": _cmd_status,
    "ab-report": _cmd_ab_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return COMMANDS[args.command](args, Settings())
    except RecommenderError as exc:
        print(f"reco {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
