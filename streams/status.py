"""The ops view: what every worker is doing, how well, and what drifted, at a glance.

Workers write a heartbeat to Redis every few seconds (throughput, partitions, model
versions); the view reads those, the shared counters, the online evaluation, the
drift alerts and the segment sizes from Redis, and the consumer group's lag from
Kafka. ``reco status`` prints it; ``GET /status`` on a worker returns it as JSON (or
as the same text with ``?format=text``).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from redis import asyncio as aioredis

from streams import keys
from streams.evaluation import summarise
from streams.settings import Settings

HEARTBEAT_S = 5.0
GONE_AFTER_S = 30.0  # a worker whose heartbeat is older than this is shown as gone
HOURS_SHOWN = 24
ALERTS_SHOWN = 10


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def beat(redis: aioredis.Redis, wid: str, payload: Mapping[str, Any]) -> None:
    await redis.hset(keys.WORKERS, wid, json.dumps({**payload, "ts": time.time()}))


async def gather(
    settings: Settings, redis: aioredis.Redis, lag: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Everything the view shows, as plain data."""
    now = time.time()
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.WORKERS)
    pipe.hgetall(keys.STATS)
    pipe.hgetall(keys.EVALUATION)
    pipe.lrange(keys.DRIFT_ALERTS, 0, ALERTS_SHOWN - 1)
    pipe.hgetall(keys.SEGMENT_SIZES)
    pipe.get(keys.SEGMENT_MODEL)
    beats, stats, evaluation, alerts, sizes, model = await pipe.execute()

    workers = {}
    for wid, raw in beats.items():
        hb = json.loads(raw)
        hb["age_s"] = round(now - hb.get("ts", 0.0), 1)
        hb["alive"] = hb["age_s"] <= GONE_AFTER_S
        workers[wid.decode()] = hb
    alive = [w for w in workers.values() if w["alive"]]

    hours = sorted(int(h) for h in await _hours(redis))[-HOURS_SHOWN:]
    pipe = redis.pipeline(transaction=False)
    for h in hours:
        pipe.hgetall(keys.evaluation_hour(h))
    trend = []
    for h, raw in zip(hours, await pipe.execute(), strict=True):
        n = int(raw.get(b"n", 0))
        hits = int(raw.get(b"hits", 0))
        trend.append({"hour": h, "judged": n, "hit_rate": hits / n if n else None})

    return {
        "time": now,
        "events_per_s": round(sum(w.get("events_per_s", 0.0) for w in alive), 1),
        "workers": workers,
        "lag": dict(lag) if lag is not None else None,
        "counters": {k.decode(): int(v) for k, v in stats.items()},
        "online": summarise(evaluation),
        "hit_rate_by_hour": trend,
        "drift_alerts": [json.loads(a) for a in alerts],
        "segments": {
            "version": json.loads(model)["version"] if model else None,
            "sizes": {int(k): int(v) for k, v in sizes.items()},
        },
    }


async def _hours(redis: aioredis.Redis) -> list[str]:
    prefix = keys.evaluation_hour(0)[:-1]
    return [
        k.decode().removeprefix(prefix)
        async for k in redis.scan_iter(match=prefix + "*", count=1000)
    ]


async def consumer_lag(settings: Settings, timeout_s: float = 5.0) -> dict[str, Any]:
    """Per input topic and partition: the group's committed offset, the log's end, the lag.

    The end is the fetch high-watermark: some brokers (Tansu) answer ListOffsets wrong.
    """
    topics = [settings.topic_purchases, settings.topic_reviews, settings.topic_catalog]
    topics.append(settings.topic_preferences)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.app_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: dict[str, Any] = {}
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        consumer.assign(tps)
        committed = {tp: await consumer.committed(tp) for tp in tps}
        for tp in tps:
            consumer.seek(tp, max(0, (committed[tp] or 1) - 1))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.highwater(tp) is None for tp in tps):
            await consumer.getmany(timeout_ms=200, max_records=1)
        for tp in tps:
            end = consumer.highwater(tp)
            done = committed[tp] or 0
            out.setdefault(tp.topic, {})[tp.partition] = {
                "committed": done,
                "end": end,
                "lag": None if end is None else max(0, end - done),
            }
    finally:
        await consumer.stop()
    return out


def render(status: Mapping[str, Any]) -> str:
    """The view as text for a terminal."""
    lines = [f"events/s (all live workers)  {status['events_per_s']:,.0f}"]
    lines.append("workers")
    for wid, w in sorted(status["workers"].items()):
        state = "live" if w["alive"] else f"gone ({w['age_s']:.0f} s)"
        models = w.get("models") or {}
        lines.append(
            f"  {wid:<28} {state:<12} {w.get('events_per_s', 0):>8,.0f}/s"
            f"  partitions {w.get('partitions', [])}  model {models.get('current') or '-'}"
            + (f" (canary {models['canary']})" if models.get("canary") else "")
        )
    if status.get("lag"):
        lines.append("lag (committed / end)")
        for topic, parts in status["lag"].items():
            cells = [
                f"{p}: {v['lag'] if v['lag'] is not None else '?'}"
                f" ({v['committed']}/{v['end'] if v['end'] is not None else '?'})"
                for p, v in sorted(parts.items())
            ]
            lines.append(f"  {topic:<16} " + "  ".join(cells))
    c = status["counters"]
    lines.append(
        "counters  "
        + ", ".join(
            f"{name} {c.get(name, 0):,}"
            for name in ("applied", "recommendations", "judged", "dead_letters", "drift_alerts")
        )
    )
    lines.append("online evaluation (purchases judged against the last list shown)")
    for dim in ("version", "arm", "segment"):
        for value, s in sorted(status["online"].get(dim, {}).items()):
            lines.append(
                f"  {dim} {value:<24} judged {s['n']:>8,.0f}  HR {s['hr']:.3f}  MRR {s['mrr']:.3f}"
            )
    trend = status["hit_rate_by_hour"]
    if trend:
        cells = [
            f"{time.strftime('%d %H:00', time.gmtime(t['hour']))} "
            + ("-" if t["hit_rate"] is None else f"{t['hit_rate']:.3f}")
            for t in trend[-8:]
        ]
        lines.append(f"hit rate by hour of event time (last {len(cells)})  " + " | ".join(cells))
    seg = status["segments"]
    sizes = " ".join(f"{k}:{v:,}" for k, v in sorted(seg["sizes"].items()))
    lines.append(f"segments  {seg['version'] or 'not seeded yet'}  {sizes}")
    lines.append("recent drift alerts")
    for a in status["drift_alerts"] or []:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(a["ts"] / 1000))
        lines.append(
            f"  {when}  {a['monitor']:<20} {a['statistic']} {a['value']:.4g} beyond"
            f" {a['threshold']:.4g} over {a['window']:,}  (model {a['model_version']})"
        )
    if not status["drift_alerts"]:
        lines.append("  none")
    return "\n".join(lines)


async def show(settings: Settings, as_json: bool = False, with_lag: bool = True) -> str:
    """What ``reco status`` prints."""
    from schemas.errors import ConfigError

    if not settings.redis_url:
        raise ConfigError("reco status needs REDIS_URL")
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        lag = (
            await consumer_lag(settings) if with_lag and settings.kafka_bootstrap_servers else None
        )
        body = await gather(settings, redis, lag)
    finally:
        await redis.aclose()
    return json.dumps(body, indent=2) if as_json else render(body)
