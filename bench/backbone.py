"""Backbone benchmark (issue 2): how fast one worker is, next to the ceilings below it.

On one broker and one Redis, with purchases published before each measurement so that
only the consuming side is timed, on fresh topics of ``settings.partitions`` each:

(a) raw: an aiokafka consumer -> producer passthrough in a subprocess;
(b) framework: the worker's Faust app forwarding each micro-batch unchanged;
(c) full path: ``reco worker`` turning purchases into recommendations;
(d) latency: a fresh worker fed at a fixed offered rate, produce -> consume per event;
(e) Redis bytes per user with fixed-length histories, and of the global keys.

Throughput is timed on the output topic by one consumer for all three, from the first
output record to the last (the worker has joined and is running), and also from the
subprocess start (start-up and group join included).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.clock import JOIN_TIMEOUT_S, STALL_TIMEOUT_S, GroupProgress, OutputClock
from bench.common import (
    Child,
    Encoded,
    create_topics,
    encode,
    forget_faust_dir,
    fresh_settings,
    met,
    on_stack,
    prepublish,
    settings_from_env,
    tag,
    worker_command,
)
from bench.latency import PROBES, LatencyOptions, latency
from bench.memory import redis_memory
from bench.profile import profile_worker, py_spy
from models.datasets import available, generate, load, truncate
from schemas.codec import Codec
from streams.embedded import EmbeddedStack
from streams.settings import Settings

NAME = "backbone"
TARGET_EVENTS_PER_S = 4000
TARGET_P99_MS = 50.0
TARGET_BYTES_PER_USER = 1024


@dataclass(frozen=True)
class Options:
    events: int = 100_000
    latency: LatencyOptions = field(default_factory=LatencyOptions)
    memory_users: int = 2000
    memory_events_per_user: int = 50
    profile_seconds: float = 15.0
    profile: bool = False  # also when (c) meets its target


def log(msg: str) -> None:
    print(f"[{NAME}] {msg}", file=sys.stderr, flush=True)


def purchases(n: int) -> tuple[str, list[dict[str, Any]]]:
    """The first ``n`` purchases of Online Retail, or of a synthetic shop without it."""
    if "online_retail" in available():
        ds = load("online_retail", limit=n)
    else:
        ds = truncate(generate(n_users=max(100, n // 15), n_items=3000), n)
    return ds.name, [rec for kind, rec in ds.events if kind == "purchase"]


def describe(name: str, records: list[dict[str, Any]]) -> str:
    users = len({r["user_id"] for r in records})
    items = len({r["item_id"] for r in records})
    return f"{name}: first {len(records):,} purchases, {users:,} users, {items:,} items"


async def through(
    s: Settings, events: Encoded, args: list[str], log_path: Path, prefix: str
) -> tuple[dict[str, float], Child]:
    """Publish, start ``args``, time the output topic until every input event is acked.

    A worker may rightly emit nothing for some events, so the end is when its group
    has committed every input offset and the output topic has gone quiet.
    """
    await create_topics(s)
    rate = await prepublish(s, events)
    n = len(events)
    bootstrap = s.kafka_bootstrap_servers or ""
    async with (
        OutputClock(bootstrap, s.topic_recommendations) as clock,
        GroupProgress(bootstrap, s.app_id, s.topic_purchases, s.partitions) as group,
    ):
        child = Child(args, s.as_env(os.environ), log_path)
        try:
            done = await clock.wait_for(
                n,
                join_timeout=JOIN_TIMEOUT_S,
                stall_timeout=STALL_TIMEOUT_S,
                check=child.check,
                finished=group.reached(n),
            )
            if not done:
                raise RuntimeError(
                    f"{prefix}: {clock.count:,} records out for {n:,} in; log:\n{child.tail()}"
                )
        except BaseException:
            child.stop()
            raise
    assert clock.first is not None and clock.last is not None
    figures = {
        f"{prefix}_events_per_s": clock.rate_first_to_last(),
        f"{prefix}_events_per_s_from_start": n / (clock.last - child.started),
        f"{prefix}_join_s": clock.first - child.started,
        f"{prefix}_output_records": clock.count,
        f"{prefix}_publish_events_per_s": rate,
    }
    return figures, child


async def raw_ceiling(base: Settings, events: Encoded, logs: Path) -> dict[str, float]:
    s = fresh_settings(base, tag("raw"))
    args = [sys.executable, "-m", "bench.forward", "raw", "--count", str(len(events))]
    figures, child = await through(s, events, args, logs / "raw.log", "a_raw")
    child.wait(60)
    child.stop()
    own = json.loads(child.log_path.read_text().strip().splitlines()[-1])
    figures["a_raw_self_timed_events_per_s"] = own["forwarded"] / own["seconds_first_to_delivered"]
    return figures


async def faust_ceiling(base: Settings, events: Encoded, logs: Path) -> dict[str, float]:
    s = fresh_settings(base, tag("faust"))
    args = [sys.executable, "-m", "bench.forward", "faust"]
    try:
        figures, child = await through(s, events, args, logs / "faust.log", "b_faust")
        child.stop()
    finally:
        forget_faust_dir(s)
    return figures


async def full_path(base: Settings, events: Encoded, logs: Path) -> dict[str, float]:
    s = fresh_settings(base, tag("worker"))
    try:
        args = worker_command()
        figures, child = await through(s, events, args, logs / "worker.log", "c_worker")
        child.stop()
    finally:
        forget_faust_dir(s)
    return figures


async def run(opts: Options | None = None, results_dir: Path | None = None) -> dict[str, Any]:
    opts = opts or Options()
    base = settings_from_env()
    name, records = purchases(max(opts.events, opts.latency.events) + PROBES)
    logs = Path(tempfile.mkdtemp(prefix="reco-bench-"))
    out: dict[str, Any] = {"dataset": describe(name, records[: opts.events])}
    async with EmbeddedStack(base.kafka_bootstrap_servers, base.redis_url) as stack:
        base, header = await on_stack(base, stack)
        out.update(header)
        out["events"] = opts.events
        out["partitions"] = base.partitions
        out["batch_size"] = base.batch_size
        out["batch_within_s"] = base.batch_within_s
        out["timing"] = (
            "events_per_s: first to last record on the output topic, as read by one consumer "
            "(the worker has joined); events_per_s_from_start: from the subprocess start to "
            "the last record; join_s: subprocess start to first output record"
        )
        steps: list[tuple[str, Callable[[], Any]]] = [
            # First, while Redis holds nothing else, so the global key sizes are its own.
            ("(e) Redis memory", lambda: redis_memory(
                base, stack.redis_url,
                users=opts.memory_users, events_per_user=opts.memory_events_per_user,
            )),
        ]  # fmt: skip
        events = encode(records[: opts.events], Codec(base.wire_format))
        steps += [
            ("(a) raw aiokafka passthrough", lambda: raw_ceiling(base, events, logs)),
            ("(b) Faust forwarding agent", lambda: faust_ceiling(base, events, logs)),
            ("(c) reco worker", lambda: full_path(base, events, logs)),
            ("(d) latency", lambda: latency(base, records, opts.latency, logs)),
        ]
        for label, step in steps:
            began = time.perf_counter()
            log(f"{label} ...")
            figures = await step()
            out.update(figures)
            log(f"{label} done in {time.perf_counter() - began:.0f}s: {_brief(figures)}")

        out["c_over_b"] = out["c_worker_events_per_s"] / out["b_faust_events_per_s"]
        out["c_over_a"] = out["c_worker_events_per_s"] / out["a_raw_events_per_s"]
        out["target_c_events_per_s"] = TARGET_EVENTS_PER_S
        out["target_c_met"] = out["c_worker_events_per_s"] >= TARGET_EVENTS_PER_S
        out["target_d_p99_ms"] = TARGET_P99_MS
        out["target_d_met"] = out["d_latency_p99_ms"] <= TARGET_P99_MS
        out["target_e_bytes_per_user"] = TARGET_BYTES_PER_USER
        out["target_e_met"] = out["e_redis_bytes_per_user_max"] <= TARGET_BYTES_PER_USER

        out["load_average_1m_at_end"] = os.getloadavg()[0]

        if opts.profile or not out["target_c_met"]:
            tool = py_spy()
            if tool is None:
                out["profile"] = "skipped: py-spy is not installed (pip install py-spy)"
            else:
                log("profiling a worker with py-spy ...")
                where = (results_dir or logs) / f"{NAME}-profile.txt"
                out.update(
                    await profile_worker(tool, base, events, opts.profile_seconds, logs, where)
                )
    shutil.rmtree(logs, ignore_errors=True)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def _brief(figures: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )


def markdown(r: dict[str, Any]) -> str:
    rows = [
        ("(a) raw aiokafka passthrough, events/s", f"{r['a_raw_events_per_s']:,.0f}", "", ""),
        ("(b) Faust forwarding agent, events/s", f"{r['b_faust_events_per_s']:,.0f}", "", ""),
        (
            "(c) reco worker, events/s",
            f"{r['c_worker_events_per_s']:,.0f}",
            f">= {TARGET_EVENTS_PER_S:,}",
            met(r["target_c_met"]),
        ),
        *(
            (f"{p} from subprocess start, events/s", f"{r[k]:,.0f}", "", "")
            for p, k in (
                ("(a)", "a_raw_events_per_s_from_start"),
                ("(b)", "b_faust_events_per_s_from_start"),
                ("(c)", "c_worker_events_per_s_from_start"),
            )
        ),
        ("(c) start to first recommendation, s", f"{r['c_worker_join_s']:.1f}", "", ""),
        ("c/b", f"{r['c_over_b']:.2f}", "", ""),
        ("c/a", f"{r['c_over_a']:.3f}", "", ""),
        (
            f"(d) latency p50 at {r['d_offered_events_per_s']:,.0f} events/s, ms",
            f"{r['d_latency_p50_ms']:.1f}", "", "",
        ),
        (
            f"(d) latency p99 at {r['d_offered_events_per_s']:,.0f} events/s, ms",
            f"{r['d_latency_p99_ms']:.1f}",
            f"<= {TARGET_P99_MS:.0f}",
            met(r["target_d_met"]),
        ),
        ("(d) latency max, ms", f"{r['d_latency_max_ms']:.1f}", "", ""),
        (
            "(d) of which produce to the worker's stamp on its output, p50 / p99, ms",
            f"{r['d_produce_to_worker_stamp_p50_ms']:.1f} / "
            f"{r['d_produce_to_worker_stamp_p99_ms']:.1f}",
            "", "",
        ),
        (
            f"(e) Redis bytes per user, {r['e_events_per_user']}-event history (mean / max)",
            f"{r['e_redis_bytes_per_user_mean']:.0f} / {r['e_redis_bytes_per_user_max']}",
            f"<= {TARGET_BYTES_PER_USER:,}",
            met(r["target_e_met"]),
        ),
        (
            f"(e) global keys for {r['e_items']:,} items: vocabulary / co-occurrence / "
            "popularity, bytes",
            f"{r['e_global_item_vocabulary_bytes']:,} / {r['e_global_cooccurrence_bytes']:,} / "
            f"{r['e_global_popularity_bytes']:,}",
            "", "",
        ),
    ]  # fmt: skip
    lines = ["| figure | value | target | met |", "|---|---:|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)
