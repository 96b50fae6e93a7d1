"""Run the benchmarks: ``python -m bench.run [name ...]`` (all of them by default).

Each benchmark writes its figures to bench/results/<name>.json and prints a markdown
table for BENCHMARKS.md. Kafka and Redis come from KAFKA_BOOTSTRAP_SERVERS and
REDIS_URL when set, else a local Tansu broker and redis-server are started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench import backbone, cooc_window, segments, serving
from bench.common import RESULTS, write_results

BENCHMARKS = ("backbone", "cooc_window", "serving", "segments")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=f"one of {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "--events", type=int, default=None, help="backbone: purchases per throughput run"
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=None, help="backbone: measured latency window"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="backbone: profile a worker with py-spy even when (c) meets its target",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="directory for <name>.json (default: bench/results)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    logging.basicConfig(level=logging.WARNING)
    for name in args.names or BENCHMARKS:
        if name == "backbone":
            opts = backbone.Options()
            if args.events is not None:
                opts = replace(opts, events=args.events)
            if args.latency_seconds is not None:
                opts = replace(opts, latency=replace(opts.latency, seconds=args.latency_seconds))
            opts = replace(opts, profile=args.profile)
            results = asyncio.run(backbone.run(opts, args.results))
            table = backbone.markdown(results)
        elif name == "segments":
            results = asyncio.run(segments.run(segments.Options()))
            table = segments.markdown(results)
        elif name == "serving":
            results = asyncio.run(serving.run(serving.Options(), args.results))
            table = serving.markdown(results)
        else:
            results = cooc_window.run()
            table = cooc_window.markdown(results)
        path = write_results(name, results, args.results)
        print(f"\n## {name}: {results['dataset']}; {results['machine']}; {results['date']}\n")
        print(table)
        print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
