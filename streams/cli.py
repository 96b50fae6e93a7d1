"""`reco` command line: worker, replay, topics, demo."""

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
    return parser


COMMANDS = {
    "worker": _cmd_worker,
    "topics": _cmd_topics,
    "replay": _cmd_replay,
    "demo": _cmd_demo,
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
