"""Produce-to-recommendation latency of one worker, per scoring model, in one run.

Tells what the model adds to the latency from what the path and the machine add: the
same purchases (Toys_and_Games, in time order) at the same offered rate, through a
fresh worker each time, scored by the co-occurrence baseline (``cooc``, no model) or a
SASRec of the given hidden width (trained one epoch: its cost, not its quality, is what
is measured). Runs follow the order given, so repeating a label shows the noise.
With ``--batch-within-ms``, each label runs once per micro-batch wait, in turn, so the
waits are compared in adjacent pairs on the same stack.

    python -m bench.latency_models cooc 128 64 cooc 128 [--rate 1000] [--seconds 30]
    python -m bench.latency_models 128 128 128 --batch-within-ms 5 10

Writes ``bench/results/latency_models.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import on_stack, settings_from_env, write_results
from bench.latency import PROBES, LatencyOptions, latency
from bench.serving import catalog
from models.data import from_dataset
from models.datasets import load
from models.registry import ModelVersion, Registry
from models.sasrec import SASRec, SASRecConfig
from models.split import leave_one_out
from streams.announce import announce
from streams.embedded import EmbeddedStack
from streams.settings import Settings

BASELINE = "cooc"


async def run(
    labels: list[str],
    opts: LatencyOptions,
    dataset: str = "toys",
    batch_within_ms: list[float] | None = None,
) -> dict[str, Any]:
    base = settings_from_env()
    ds = load(dataset)
    records = [r for kind, r in ds.events if kind == "purchase"][: opts.events + PROBES]
    logs = Path(tempfile.mkdtemp(prefix="reco-bench-latency-models-"))
    registry = Registry(logs / "registry")
    split = leave_one_out(from_dataset(ds))
    versions: dict[int, ModelVersion] = {}
    for width in sorted({int(label) for label in labels if label != BASELINE}):
        model = SASRec(SASRecConfig(epochs=1, progress=False, hidden=width)).fit(split.train)
        versions[width] = registry.publish(model.to_checkpoint({"epochs": 1.0}), base.model_name)
    # product_cache_s as in bench.serving: the catalogue is static during a run.
    every = {"product_cache_s": 5.0}
    served = {**every, "model_registry": str(registry.root), "wait_for_model_s": 120.0}
    plain = {**every, "follow_models": False}
    out: dict[str, Any] = {"dataset": f"{ds.name}: {len(ds.products):,} items"}
    async with EmbeddedStack(base.kafka_bootstrap_servers, base.redis_url) as stack:
        base, header = await on_stack(base, stack)
        out.update(header)
        waits: list[float | None] = [*batch_within_ms] if batch_within_ms else [None]
        runs = [(label, wait) for label in labels for wait in waits]
        for n, (label, wait) in enumerate(runs, 1):
            version = None if label == BASELINE else versions[int(label)]
            s = base.model_copy(update=plain if version is None else served)
            if wait is not None:
                s = s.model_copy(update={"batch_within_s": wait / 1000})

            async def prepare(s: Settings, version: ModelVersion | None = version) -> None:
                await catalog(s, ds.products)
                if version is not None:
                    await announce(version, s)

            began = time.perf_counter()
            figures = await latency(s, records, opts, logs, prefix="d", prepare=prepare)
            name = f"{n}_{BASELINE if version is None else f'hidden{label}'}"
            if wait is not None:
                name += f"_within{wait:g}ms"
            kept = ("d_latency_p50_ms", "d_latency_p99_ms", "d_produce_to_worker_stamp_p99_ms")
            for key in (*kept, *(k for k in figures if k.startswith("d_worker_"))):
                out[f"{name}_{key[2:]}"] = figures[key]
            out[f"{name}_missing_recommendations"] = figures["d_missing_recommendations"]
            print(
                f"{name}: p50 {figures['d_latency_p50_ms']:.1f} ms, "
                f"p99 {figures['d_latency_p99_ms']:.1f} ms; "
                f"{figures['d_worker_events_per_batch']:.0f} events per batch, "
                f"processing {figures['d_worker_processing_share']:.0%} of the time "
                f"({figures['d_worker_processing_ms_per_event']:.2f} ms per event) "
                f"({time.perf_counter() - began:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    out["offered_events_per_s"] = opts.rate
    out["measured_s"] = opts.seconds
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", nargs="+", help=f"'{BASELINE}' or a SASRec hidden width")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--batch-within-ms",
        type=float,
        nargs="+",
        help="micro-batch waits to compare (RECO_BATCH_WITHIN_S), each label run once per wait",
    )
    args = parser.parse_args()
    bad = [x for x in args.labels if x != BASELINE and not x.isdigit()]
    if bad:
        parser.error(f"labels are '{BASELINE}' or a hidden width, not {', '.join(bad)}")
    if args.batch_within_ms and min(args.batch_within_ms) <= 0:
        parser.error("--batch-within-ms values must be > 0")
    opts = LatencyOptions(rate=args.rate, seconds=args.seconds)
    result = asyncio.run(run(args.labels, opts, batch_within_ms=args.batch_within_ms))
    write_results("latency_models", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
