"""Segmentation benchmark (issue 5): what online segmentation costs the worker.

On one broker and one Redis, the backbone's full path (``reco worker`` on the first
purchases of Online Retail) runs with segmentation off and on, alternately, so that
both see the same machine load; the figure is the ratio of per-event costs. Beside
it, the segmentation step alone (profiles, River updates and the Redis merge) runs
in-process on the same histories, to give segment updates per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.backbone import describe, purchases, through
from bench.common import (
    encode,
    forget_faust_dir,
    fresh_settings,
    met,
    on_stack,
    settings_from_env,
    tag,
    worker_command,
    write_results,
)
from models.datasets import load
from schemas.codec import Codec
from streams.embedded import EmbeddedStack
from streams.processor import Message, Processor
from streams.settings import Settings
from streams.state import Store

NAME = "segments"
TARGET_ADDED_COST = 0.15
# The backbone the target is relative to: without the later steps (online evaluation,
# drift monitors), which would make the base slower and the share look smaller.
OTHERS_OFF = {"evaluation_enabled": False, "drift_enabled": False}


@dataclass(frozen=True)
class Options:
    events: int = 100_000
    rounds: int = 2  # off/on pairs
    inprocess_events: int = 50_000
    batch: int = 500
    dataset: str | None = None  # None: the backbone's (Online Retail)
    # With the online evaluation and drift monitors switched with segmentation: what the
    # whole of issues 5 and 6 costs the worker.
    together: bool = False
    worker: bool = True  # False: the in-process step only


def log(msg: str) -> None:
    print(f"[{NAME}] {msg}", flush=True)


async def _forget_segments(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        doomed = [k async for k in client.scan_iter(match="seg:*", count=1000)]
        if doomed:
            await client.delete(*doomed)
    finally:
        await client.aclose()


def _toggle(on: bool, together: bool) -> dict[str, bool]:
    """Segmentation alone against the backbone, or with the evaluation and drift too."""
    others = {k: on for k in OTHERS_OFF} if together else OTHERS_OFF
    return {"segments_enabled": on, **others}


async def _worker_rate(
    base: Settings, events: Any, logs: Path, on: bool, n: int, together: bool = False
) -> float:
    s = fresh_settings(base, tag("seg-on" if on else "seg-off"))
    s = s.model_copy(update=_toggle(on, together))
    await _forget_segments(s.redis_url or "")
    try:
        figures, child = await through(
            s, events, worker_command(), logs / f"worker-{n}-{on}.log", "w"
        )
        child.stop()
    finally:
        forget_faust_dir(s)
    return float(figures["w_events_per_s"])


async def _inprocess(
    base: Settings, records: list[dict[str, Any]], batch: int, together: bool = False
) -> dict[str, float]:
    """The interaction step with and without segmentation (and, ``together``, the
    evaluation and drift monitors), driven directly (no broker)."""
    codec = Codec(base.wire_format)
    out: dict[str, float] = {}
    for on in (False, True, False, True):
        s = fresh_settings(base, tag("inproc")).model_copy(update=_toggle(on, together))
        await _forget_segments(s.redis_url or "")
        store = Store.from_url(s.redis_url or "", trending_tau_s=s.trending_tau_s)
        proc = Processor(s, store)
        msgs = [
            Message(s.topic_purchases, 0, i, r["user_id"].encode(), codec.encode("Purchase", r))
            for i, r in enumerate(records)
        ]
        # Counters in Redis are shared by every run: count this run's by difference.
        before = (await store.stats()).get("segment_updates", 0)
        began = time.perf_counter()
        for start in range(0, len(msgs), batch):
            await proc.interactions(msgs[start : start + batch])
        seconds = time.perf_counter() - began
        stats = await store.stats()
        stats["segment_updates"] = stats.get("segment_updates", 0) - before
        await store.close()
        key = "on" if on else "off"
        out.setdefault(f"inprocess_{key}_seconds", seconds)
        out[f"inprocess_{key}_seconds"] = min(out[f"inprocess_{key}_seconds"], seconds)
        if on:
            out["inprocess_segment_updates"] = stats.get("segment_updates", 0)
    added = out["inprocess_on_seconds"] - out["inprocess_off_seconds"]
    out["inprocess_events_per_s_off"] = len(records) / out["inprocess_off_seconds"]
    out["inprocess_events_per_s_on"] = len(records) / out["inprocess_on_seconds"]
    out["inprocess_added_cost"] = added / out["inprocess_off_seconds"]
    out["segment_updates_per_s"] = out["inprocess_segment_updates"] / max(added, 1e-9)
    return out


async def run(opts: Options | None = None) -> dict[str, Any]:
    opts = opts or Options()
    base = settings_from_env()
    n = max(opts.events, opts.inprocess_events)
    if opts.dataset is None:
        name, records = purchases(n)
    else:
        ds = load(opts.dataset, limit=n)
        name, records = ds.name, [r for kind, r in ds.events if kind == "purchase"]
    logs = Path(tempfile.mkdtemp(prefix="reco-bench-seg-"))
    out: dict[str, Any] = {"dataset": describe(name, records[: opts.events])}
    async with EmbeddedStack(base.kafka_bootstrap_servers, base.redis_url) as stack:
        base, header = await on_stack(base, stack)
        out.update(header)
        out["segments_k"] = base.segments_k
        events = encode(records[: opts.events], Codec(base.wire_format))
        off: list[float] = []
        on: list[float] = []
        out["switched"] = "segmentation, evaluation, drift" if opts.together else "segmentation"
        for n in range(opts.rounds if opts.worker else 0):
            for flag, into in ((False, off), (True, on)):
                rate = await _worker_rate(base, events, logs, flag, n, opts.together)
                into.append(rate)
                log(f"round {n + 1}: segmentation {'on' if flag else 'off'}: {rate:,.0f} events/s")
        if opts.worker:
            out["worker_events_per_s_off"] = statistics.median(off)
            out["worker_events_per_s_on"] = statistics.median(on)
            out["worker_runs_off"] = ", ".join(f"{r:.0f}" for r in off)
            out["worker_runs_on"] = ", ".join(f"{r:.0f}" for r in on)
            # Per-event cost is 1/rate, so the cost added is off/on - 1.
            out["worker_added_cost"] = (
                out["worker_events_per_s_off"] / out["worker_events_per_s_on"] - 1
            )
            out["target_added_cost"] = TARGET_ADDED_COST
            out["target_met"] = out["worker_added_cost"] <= TARGET_ADDED_COST
        log("in-process step ...")
        out.update(
            await _inprocess(
                base, records[: opts.inprocess_events], opts.batch, together=opts.together
            )
        )
        out["load_average_1m_at_end"] = os.getloadavg()[0]
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def worker_rows(r: dict[str, Any]) -> str:
    rows = [f"switched off/on: {r['switched']}"]
    if "worker_added_cost" in r:
        rows += [
            f"worker off (median of {r['worker_runs_off']}): "
            f"{r['worker_events_per_s_off']:,.0f} events/s",
            f"worker on (median of {r['worker_runs_on']}): "
            f"{r['worker_events_per_s_on']:,.0f} events/s",
            f"cost added per event: {100 * r['worker_added_cost']:.1f} %",
        ]
    rows += [
        f"in-process off / on (best of two): {r['inprocess_events_per_s_off']:,.0f} / "
        f"{r['inprocess_events_per_s_on']:,.0f} events/s",
        f"in-process cost added per event: {100 * r['inprocess_added_cost']:.1f} %",
    ]
    return "\n".join(rows)


def markdown(r: dict[str, Any]) -> str:
    rows = [
        "| what | result | target | met |",
        "|---|---|---|---|",
        f"| worker, segmentation off (median of {r['worker_runs_off']}) | "
        f"{r['worker_events_per_s_off']:,.0f} events/s | | |",
        f"| worker, segmentation on (median of {r['worker_runs_on']}) | "
        f"{r['worker_events_per_s_on']:,.0f} events/s | | |",
        f"| cost added per event, full path | {100 * r['worker_added_cost']:.1f} % | "
        f"<= {100 * r['target_added_cost']:.0f} % | {met(r['target_met'])} |",
        f"| interaction step in-process, off / on | {r['inprocess_events_per_s_off']:,.0f} / "
        f"{r['inprocess_events_per_s_on']:,.0f} events/s | | |",
        f"| cost added per event, in-process step | {100 * r['inprocess_added_cost']:.1f} % | | |",
        f"| segment updates per second of segmentation time (Redis included) | "
        f"{r['segment_updates_per_s']:,.0f} | | |",
    ]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.segments", description=__doc__)
    parser.add_argument("--dataset", default=None, help="data set name (default: Online Retail)")
    parser.add_argument("--rounds", type=int, default=Options.rounds, help="off/on worker pairs")
    parser.add_argument(
        "--together",
        action="store_true",
        help="switch the online evaluation and drift monitors with segmentation",
    )
    parser.add_argument(
        "--inprocess-only", action="store_true", help="skip the worker runs (with --together)"
    )
    args = parser.parse_args(argv)
    if args.inprocess_only and not args.together:
        parser.error("--inprocess-only goes with --together")
    opts = Options(
        rounds=args.rounds,
        dataset=args.dataset,
        together=args.together,
        worker=not args.inprocess_only,
    )
    results = asyncio.run(run(opts))
    suffix = ("-together" if args.together else "") + ("-inprocess" if args.inprocess_only else "")
    path = write_results(f"{NAME}-{args.dataset or 'online_retail'}{suffix}", results)
    print(f"\n## {NAME}: {results['dataset']}; {results['machine']}; {results['date']}\n")
    print(markdown(results) if not args.together else worker_rows(results))
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
