"""How many previous items each new item is paired with: quality against Redis work.

Prequential evaluation, the way the stream serves: events in time order; before a
known user's event is learned, the in-memory twin of the worker's co-occurrence state
(``models.cooccurrence.CoOccurrenceRecommender``) recommends 10 items for that user
and a hit is counted when the event's item is among them. One event in five after a
warm-up is scored. The Redis cost of a window is measured beside it: the Lua step
applied to the same events through ``streams.state.Store`` on a scratch Redis.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from redis import asyncio as aioredis

from bench.common import cpu_description
from models.cooccurrence import CoOccurrenceRecommender
from models.datasets import available, load
from streams.embedded import EmbeddedStack
from streams.state import Interaction, Store, event_hash

WINDOWS = (1, 3, 5)
EVENTS = 60_000
WARMUP = 20_000
BATCH = 2000


def hit_rate(events: list[tuple[str, str]], window: int) -> float:
    model = CoOccurrenceRecommender[str](window=window, neighbours=20)
    hits = scored = 0
    for i, (user, item) in enumerate(events):
        if i > WARMUP and i % 5 == 0 and user in model.history:
            hits += item in {r.item for r in model.recommend(user, 10)}
            scored += 1
        model.learn_one(user, item)
    return hits / scored


async def redis_us_per_event(redis_url: str, records: list[dict[str, Any]], window: int) -> float:
    client = aioredis.from_url(redis_url)
    await client.flushdb()
    store = Store(client, cooc_window=window)
    batch = [
        Interaction(
            r["user_id"], event_hash(r["event_id"]), r["item_id"], r["ts"] // 1000, "bench:0", n
        )
        for n, r in enumerate(records)
    ]
    start = time.perf_counter()
    for i in range(0, len(batch), BATCH):
        await store.apply(batch[i : i + BATCH])
    elapsed = time.perf_counter() - start
    await client.flushdb()
    await store.close()
    return elapsed / len(batch) * 1e6


def run() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    sets: list[str] = [name for name in ("online_retail", "toys") if name in available()] or [
        "synthetic"
    ]
    with EmbeddedStack(kafka_bootstrap_servers="unused:0") as stack:
        for name in sets:
            records = [rec for _, rec in load(name, limit=EVENTS).events]
            pairs = [(r["user_id"], r["item_id"]) for r in records]
            for w in WINDOWS:
                figures[f"{name}_window{w}_prequential_hr10"] = round(hit_rate(pairs, w), 4)
                us = asyncio.run(redis_us_per_event(stack.redis_url, records, w))
                figures[f"{name}_window{w}_apply_us_per_event"] = round(us, 1)
    figures["dataset"] = ", ".join(f"{n}: first {EVENTS:,} events" for n in sets)
    figures["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    figures["machine"] = f"{cpu_description()}, redis-server embedded"
    return figures


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "| data set | window | prequential HR@10 | Lua step, us/event |",
        "|---|---:|---:|---:|",
    ]
    for key, value in r.items():
        if key.endswith("_prequential_hr10"):
            stem = key.removesuffix("_prequential_hr10")
            name, _, w = stem.rpartition("_window")
            lines.append(f"| {name} | {w} | {value} | {r[stem + '_apply_us_per_event']} |")
    return "\n".join(lines)
