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

import asyncio
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer

from bench.common import (
    Child,
    Encoded,
    OutputClock,
    child_env,
    create_topics,
    encode,
    forget_faust_dir,
    fresh_settings,
    machine,
    prepublish,
    settings_from_env,
    tag,
    worker_command,
)
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

JOIN_TIMEOUT_S = 120.0
STALL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Options:
    events: int = 100_000
    latency_rate: float = 1000.0
    latency_seconds: float = 30.0
    warmup_seconds: float = 5.0
    memory_users: int = 2000
    memory_events_per_user: int = 50
    profile_seconds: float = 20.0


def log(msg: str) -> None:
    print(f"[{NAME}] {msg}", file=sys.stderr, flush=True)


def purchases(n: int) -> tuple[str, list[dict[str, Any]]]:
    """The first ``n`` purchases of Online Retail, or of a synthetic shop without it."""
    if "online_retail" in available():
        ds = load("online_retail", limit=n)
    else:
        ds = truncate(generate(n_users=max(100, n // 15), n_items=3000), n)
    records = [rec for kind, rec in ds.events if kind == "purchase"]
    users = len({r["user_id"] for r in records})
    items = len({r["item_id"] for r in records})
    label = f"{ds.name}: first {len(records):,} purchases, {users:,} users, {items:,} items"
    return label, records


async def _through(
    s: Settings, events: Encoded, args: list[str], log_path: Path, prefix: str
) -> tuple[dict[str, float], Child]:
    """Publish, start ``args``, time the output topic until every event came out."""
    await create_topics(s)
    rate = await prepublish(s, events)
    n = len(events)
    async with OutputClock(s.kafka_bootstrap_servers or "", s.topic_recommendations) as clock:
        child = Child(args, child_env(s), log_path)
        try:
            done = await clock.wait_for(
                n, join_timeout=JOIN_TIMEOUT_S, stall_timeout=STALL_TIMEOUT_S, check=child.check
            )
            if not done:
                raise RuntimeError(
                    f"{prefix}: {clock.count:,} of {n:,} records came out; log:\n{child.tail()}"
                )
        except BaseException:
            child.stop()
            raise
    assert clock.first is not None and clock.last is not None
    figures = {
        f"{prefix}_events_per_s": clock.rate_first_to_last(),
        f"{prefix}_events_per_s_from_start": n / (clock.last - child.started),
        f"{prefix}_join_s": clock.first - child.started,
        f"{prefix}_publish_events_per_s": rate,
    }
    return figures, child


async def raw_ceiling(base: Settings, events: Encoded, logs: Path) -> dict[str, float]:
    s = fresh_settings(base, tag("raw"))
    args = [sys.executable, "-m", "bench.forward", "raw", "--count", str(len(events))]
    figures, child = await _through(s, events, args, logs / "raw.log", "a_raw")
    child.wait(60)
    child.stop()
    own = json.loads(child.log_path.read_text().strip().splitlines()[-1])
    figures["a_raw_self_timed_events_per_s"] = own["forwarded"] / own["seconds_first_to_delivered"]
    return figures


async def faust_ceiling(base: Settings, events: Encoded, logs: Path) -> dict[str, float]:
    s = fresh_settings(base, tag("faust"))
    args = [sys.executable, "-m", "bench.forward", "faust"]
    try:
        figures, child = await _through(s, events, args, logs / "faust.log", "b_faust")
        child.stop()
    finally:
        forget_faust_dir(s)
    return figures


async def full_path(base: Settings, events: Encoded, logs: Path) -> dict[str, float]:
    s = fresh_settings(base, tag("worker"))
    try:
        args = worker_command()
        figures, child = await _through(s, events, args, logs / "worker.log", "c_worker")
        child.stop()
    finally:
        forget_faust_dir(s)
    return figures


async def latency(
    base: Settings, records: list[dict[str, Any]], opts: Options, logs: Path
) -> dict[str, Any]:
    """A fresh worker fed at ``opts.latency_rate``; latency per event via cause_event_id."""
    s = fresh_settings(base, tag("latency"))
    codec = Codec(s.wire_format)
    await create_topics(s)
    total = int(opts.latency_rate * (opts.warmup_seconds + opts.latency_seconds))
    if total + 100 > len(records):
        raise ValueError(f"latency run needs {total + 100} purchases, have {len(records)}")
    probes = encode([{**r, "event_id": f"probe-{r['event_id']}"} for r in records[-100:]], codec)
    events = encode(records[:total], codec)

    # The worker stamps each recommendation (wall clock, ms) when it builds it, which
    # splits the latency into input side + processing, and output side.
    stamped: dict[str, int] = {}

    def cause(value: bytes) -> str:
        rec = codec.decode("Recommendation", value)
        stamped[rec["cause_event_id"]] = rec["ts"]
        return str(rec["cause_event_id"])

    bootstrap = s.kafka_bootstrap_servers or ""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks="all"
    )
    await producer.start()
    sent: dict[str, float] = {}
    sent_wall_ms: dict[str, float] = {}
    try:
        async with OutputClock(bootstrap, s.topic_recommendations, cause) as clock:
            with Child(worker_command(), child_env(s), logs / "latency-worker.log") as child:
                # Probes until the first recommendation: the worker has joined its group.
                for _, key, value in probes:
                    await producer.send_and_wait(s.topic_purchases, value, key=key)
                    joined = await clock.wait_for(
                        1, join_timeout=0.5, stall_timeout=1, check=child.check
                    )
                    if joined:
                        break
                else:
                    raise RuntimeError(f"latency worker did not join; log:\n{child.tail()}")
                join_s = (clock.first or 0.0) - child.started
                start, pending = time.perf_counter(), []
                for i, (event_id, key, value) in enumerate(events):
                    ahead = start + i / opts.latency_rate - time.perf_counter()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                    sent[event_id] = time.perf_counter()
                    sent_wall_ms[event_id] = time.time() * 1000
                    pending.append(await producer.send(s.topic_purchases, value, key=key))
                await asyncio.gather(*pending)
                sent_for = time.perf_counter() - start
                measured = [e for e, t in sent.items() if t >= start + opts.warmup_seconds]
                deadline = time.perf_counter() + STALL_TIMEOUT_S
                while time.perf_counter() < deadline and any(
                    e not in clock.arrivals for e in measured[-1000:]
                ):
                    child.check()
                    await asyncio.sleep(0.1)
                arrivals = dict(clock.arrivals)
    finally:
        await producer.stop()
        forget_faust_dir(s)

    got = [e for e in measured if e in arrivals]
    if not got:
        raise RuntimeError("no recommendation arrived for the measured events")
    lat_ms = np.array([(arrivals[e] - sent[e]) * 1000 for e in got])
    to_stamp_ms = np.array([stamped[e] - sent_wall_ms[e] for e in got])
    return {
        "d_offered_events_per_s": opts.latency_rate,
        "d_sent_events_per_s": len(events) / sent_for,
        "d_warmup_s": opts.warmup_seconds,
        "d_measured_s": opts.latency_seconds,
        "d_measured_events": len(measured),
        "d_missing_recommendations": len(measured) - int(lat_ms.size),
        "d_join_s": join_s,
        "d_latency_p50_ms": float(np.percentile(lat_ms, 50)),
        "d_latency_p90_ms": float(np.percentile(lat_ms, 90)),
        "d_latency_p99_ms": float(np.percentile(lat_ms, 99)),
        "d_latency_max_ms": float(lat_ms.max()),
        "d_produce_to_worker_stamp_p50_ms": float(np.percentile(to_stamp_ms, 50)),
        "d_produce_to_worker_stamp_p99_ms": float(np.percentile(to_stamp_ms, 99)),
    }


async def run(opts: Options | None = None, results_dir: Path | None = None) -> dict[str, Any]:
    opts = opts or Options()
    base = settings_from_env()
    need = max(opts.events, int(opts.latency_rate * (opts.latency_seconds + opts.warmup_seconds)))
    dataset, records = purchases(need + 100)
    logs = Path(tempfile.mkdtemp(prefix="reco-bench-"))
    out: dict[str, Any] = {"dataset": dataset}
    async with EmbeddedStack(base.kafka_bootstrap_servers, base.redis_url) as stack:
        located = {"kafka_bootstrap_servers": stack.bootstrap_servers, "redis_url": stack.redis_url}
        base = base.model_copy(update=located)
        out["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        out["machine"] = await machine(stack)
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
            ("(d) latency", lambda: latency(base, records, opts, logs)),
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

        if not out["target_c_met"]:
            tool = py_spy()
            if tool is None:
                out["profile"] = "skipped: py-spy is not installed (pip install py-spy)"
            else:
                log("(c) under target: profiling a worker with py-spy ...")
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
    def met(flag: bool) -> str:
        return "yes" if flag else "**no**"

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
