"""Produce-to-consume latency of one worker at a fixed offered rate."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from bench.clock import JOIN_TIMEOUT_S, STALL_TIMEOUT_S, GroupProgress, OutputClock
from bench.common import (
    Child,
    create_topics,
    encode,
    forget_faust_dir,
    fresh_settings,
    tag,
    worker_command,
)
from schemas.codec import Codec
from streams.probes import free_port
from streams.settings import Settings

PROBES = 240  # one every 0.5 s until the worker answers
ACTION_WINDOW_S = 10.0
_CHECK_SENT_EVERY = 500


async def worker_busy(port: int) -> dict[str, float]:
    """The interactions agent's batch counters from the worker's ``/metrics``."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    wanted = {
        ("reco_batch_events_count", None): "batches",
        ("reco_batch_events_sum", None): "events",
        ("reco_busy_seconds_total", "processing"): "processing_s",
        ("reco_busy_seconds_total", "delivery"): "delivery_s",
    }
    out = dict.fromkeys(wanted.values(), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("agent") != "interactions":
                continue
            name = wanted.get((sample.name, sample.labels.get("stage")))
            if name is not None:
                out[name] = sample.value
    out["at"] = time.perf_counter()
    return out


def busy_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What the worker's loop did between two ``worker_busy`` readings.

    >>> zero = {"batches": 0, "events": 0, "processing_s": 0, "delivery_s": 0, "at": 0}
    >>> busy_figures(zero, {"batches": 10, "events": 400, "processing_s": 1.5,
    ...                     "delivery_s": 0.1, "at": 2})  # doctest: +NORMALIZE_WHITESPACE
    {'d_worker_batches': 10, 'd_worker_events_per_batch': 40.0,
     'd_worker_processing_share': 0.75, 'd_worker_delivery_share': 0.05,
     'd_worker_processing_ms_per_event': 3.75}
    """
    d = {k: after[k] - before[k] for k in after}
    return {
        "d_worker_batches": d["batches"],
        "d_worker_events_per_batch": d["events"] / max(d["batches"], 1.0),
        "d_worker_processing_share": d["processing_s"] / d["at"],
        "d_worker_delivery_share": d["delivery_s"] / d["at"],
        "d_worker_processing_ms_per_event": 1000 * d["processing_s"] / max(d["events"], 1.0),
    }


def delivered(pending: list[asyncio.Future[Any]]) -> list[asyncio.Future[Any]]:
    """The sends not yet acknowledged; raises the error of one that failed."""
    for f in pending:
        if f.done():
            f.result()
    return [f for f in pending if not f.done()]


@dataclass(frozen=True)
class LatencyOptions:
    rate: float = 1000.0  # offered events per second
    seconds: float = 30.0  # measured, after the warm-up
    warmup_seconds: float = 5.0

    @property
    def events(self) -> int:
        return int(self.rate * (self.warmup_seconds + self.seconds))


async def latency(
    base: Settings,
    records: list[dict[str, Any]],
    opts: LatencyOptions,
    logs: Path,
    prefix: str = "d",
    prepare: Callable[[Settings], Awaitable[Any]] | None = None,
    action: tuple[float, Callable[[Settings], Coroutine[Any, Any, Any]]] | None = None,
) -> dict[str, Any]:
    """A fresh worker fed at ``opts.rate``, the first ``opts.warmup_seconds`` left out;
    each recommendation is matched to its purchase by ``cause_event_id``.

    ``records`` must hold ``opts.events + PROBES`` purchases. ``prepare`` runs once the
    topics exist, before the worker starts; ``action`` = (seconds into the measured
    window, coroutine) runs while events flow, and the latency of the events sent in
    the ``ACTION_WINDOW_S`` after it is reported apart (e.g. a model swap).
    """
    # The HTTP API only for /metrics: what share of the measured window the worker's
    # loop spent on batches, and how large they were.
    port = free_port()
    s = fresh_settings(base, tag("latency")).model_copy(
        update={"web_enabled": True, "web_port": port}
    )
    codec = Codec(s.wire_format)
    await create_topics(s)
    if prepare is not None:
        await prepare(s)
    total = opts.events
    if total + PROBES > len(records):
        raise ValueError(f"latency run needs {total + PROBES} purchases, have {len(records)}")
    probes = encode([{**r, "event_id": f"probe-{r['event_id']}"} for r in records[-PROBES:]], codec)
    events = encode(records[:total], codec)

    # The worker stamps each recommendation (wall clock, ms) when it builds it, which
    # splits the latency into input side + processing, and output side.
    stamped: dict[str, int] = {}
    versions: dict[str, str] = {}

    def cause(value: bytes) -> str:
        rec = codec.decode("Recommendation", value)
        stamped[rec["cause_event_id"]] = rec["ts"]
        versions[rec["cause_event_id"]] = rec["model_version"]
        return str(rec["cause_event_id"])

    bootstrap = s.kafka_bootstrap_servers or ""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks="all"
    )
    await producer.start()
    sent: dict[str, float] = {}
    sent_wall_ms: dict[str, float] = {}
    try:
        async with (
            OutputClock(bootstrap, s.topic_recommendations, cause) as clock,
            GroupProgress(bootstrap, s.app_id, s.topic_purchases, s.partitions) as group,
        ):
            with Child(
                worker_command(), s.as_env(os.environ), logs / "latency-worker.log"
            ) as child:
                # Probes until the first recommendation: the worker has joined its group.
                probed = 0
                while clock.first is None:
                    if probed == len(probes):
                        raise RuntimeError(f"latency worker did not join; log:\n{child.tail()}")
                    _, key, value = probes[probed]
                    probed += 1
                    await producer.send_and_wait(s.topic_purchases, value, key=key)
                    await clock.wait_for(1, join_timeout=0.5, stall_timeout=1, check=child.check)
                join_s = (clock.first or 0.0) - child.started
                start, pending = time.perf_counter(), []
                acted: asyncio.Task[Any] | None = None
                action_at = 0.0
                busy_from: asyncio.Task[dict[str, float]] | None = None
                for i, (event_id, key, value) in enumerate(events):
                    ahead = start + i / opts.rate - time.perf_counter()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                    if busy_from is None and i / opts.rate >= opts.warmup_seconds:
                        busy_from = asyncio.create_task(worker_busy(port))
                    if (
                        action
                        and acted is None
                        and i / opts.rate >= opts.warmup_seconds + action[0]
                    ):
                        action_at = time.perf_counter()
                        acted = asyncio.create_task(action[1](s))
                    sent[event_id] = time.perf_counter()
                    sent_wall_ms[event_id] = time.time() * 1000
                    pending.append(await producer.send(s.topic_purchases, value, key=key))
                    if len(pending) >= _CHECK_SENT_EVERY:
                        pending = delivered(pending)
                # One gather over every send would run tens of thousands of callbacks in
                # one step of this loop, holding back the output clock just as the last
                # outputs arrive.
                await asyncio.gather(*pending)
                if acted is not None:
                    await acted
                sent_for = time.perf_counter() - start
                measured = [e for e, t in sent.items() if t >= start + opts.warmup_seconds]
                await clock.wait_for(
                    probed + len(events),
                    join_timeout=JOIN_TIMEOUT_S,
                    stall_timeout=STALL_TIMEOUT_S,
                    check=child.check,
                    finished=group.reached(probed + len(events)),
                )
                arrivals = dict(clock.arrivals)
                # From the start of the measured window to the last output's arrival.
                busy = busy_figures(await busy_from, await worker_busy(port)) if busy_from else {}
    finally:
        await producer.stop()
        forget_faust_dir(s)

    got = [e for e in measured if e in arrivals]
    if not got:
        raise RuntimeError("no recommendation arrived for the measured events")
    lat_ms = np.array([(arrivals[e] - sent[e]) * 1000 for e in got])
    to_stamp_ms = np.array([stamped[e] - sent_wall_ms[e] for e in got])
    extra: dict[str, Any] = {}
    # The tail over time: a p99 driven by one stall reads differently from a steady one.
    offsets = np.array([sent[e] - start - opts.warmup_seconds for e in got])
    for w in range(int(np.ceil(opts.seconds / 5))):
        inside = lat_ms[(offsets >= 5 * w) & (offsets < 5 * (w + 1))]
        if inside.size:
            extra[f"d_latency_p99_ms_{5 * w}_{5 * (w + 1)}s"] = float(np.percentile(inside, 99))
            stamp = to_stamp_ms[(offsets >= 5 * w) & (offsets < 5 * (w + 1))]
            extra[f"d_to_stamp_p99_ms_{5 * w}_{5 * (w + 1)}s"] = float(np.percentile(stamp, 99))
    seen = Counter(versions[e] for e in got)
    for rank, (version, count) in enumerate(seen.most_common(3)):
        extra[f"d_version_{rank + 1}"] = version
        extra[f"d_version_{rank + 1}_recommendations"] = count
    if action is not None:
        window = [
            (arrivals[e] - sent[e]) * 1000
            for e in got
            if action_at <= sent[e] < action_at + ACTION_WINDOW_S
        ]
        extra |= {
            "d_action_at_s": action_at - start,
            "d_action_window_s": ACTION_WINDOW_S,
            "d_action_window_events": len(window),
            "d_action_window_latency_max_ms": max(window, default=float("nan")),
            "d_action_window_latency_p99_ms": float(np.percentile(window, 99))
            if window
            else float("nan"),
        }
    figures = {
        "d_offered_events_per_s": opts.rate,
        "d_sent_events_per_s": len(events) / sent_for,
        "d_warmup_s": opts.warmup_seconds,
        "d_measured_s": opts.seconds,
        "d_measured_events": len(measured),
        "d_missing_recommendations": len(measured) - int(lat_ms.size),
        "d_join_s": join_s,
        "d_latency_p50_ms": float(np.percentile(lat_ms, 50)),
        "d_latency_p90_ms": float(np.percentile(lat_ms, 90)),
        "d_latency_p99_ms": float(np.percentile(lat_ms, 99)),
        "d_latency_max_ms": float(lat_ms.max()),
        "d_produce_to_worker_stamp_p50_ms": float(np.percentile(to_stamp_ms, 50)),
        "d_produce_to_worker_stamp_p99_ms": float(np.percentile(to_stamp_ms, 99)),
        **busy,
        **extra,
    }
    return {prefix + k[1:]: v for k, v in figures.items()}
