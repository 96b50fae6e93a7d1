"""``reco ab-report``: the A/B test's arms compared, from the purchases and recommendations topics.

Both topics are read from their beginning. A recommendation is dated by the event that
caused it (event time, like the purchases it is judged against), and each user's arm
is recomputed from their pseudonym with the test's salt and share, exactly as the
workers assigned it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from models.abtest import ABReport, Purchase, Recommendation, assign, report, totals
from schemas.codec import Codec
from schemas.errors import ConfigError, SchemaError
from streams.pseudonym import Pseudonymiser
from streams.settings import Settings


@dataclass(frozen=True)
class Options:
    window_s: float | None = None  # None: the workers' attribution window
    k: int | None = None  # None: the workers' top_k
    out: Path = Path("demo-out/ab")


async def read_all(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record of ``topic`` up to its end when the read started."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    out: list[Any] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                out.extend(records)
            # The high-watermark (not ListOffsets) tells where each partition ends.
            done = True
            for tp in tps:
                end = consumer.highwater(tp)
                done = done and end is not None and await consumer.position(tp) >= end
            if done:
                break
    finally:
        await consumer.stop()
    return out


async def gather(settings: Settings) -> tuple[list[Recommendation], list[Purchase]]:
    codec = Codec(settings.wire_format)
    purchases, when = [], {}
    for r in await read_all(settings, settings.topic_purchases):
        try:
            p = codec.decode("Purchase", r.value)
        except SchemaError:
            continue  # the workers dead-lettered it: it was never a purchase
        value = (p.get("price") or 0.0) * p.get("quantity", 1)
        purchases.append(Purchase(p["user_id"], p["ts"], p["item_id"], value))
        when[p["event_id"]] = p["ts"]
    recs = []
    for r in await read_all(settings, settings.topic_recommendations):
        rec = codec.decode("Recommendation", r.value)
        ts = when.get(rec["cause_event_id"])
        if ts is not None and rec["items"]:
            recs.append(
                Recommendation(rec["user_id"], ts, tuple(i["item_id"] for i in rec["items"]))
            )
    return recs, purchases


def run(settings: Settings, options: Options) -> tuple[ABReport, list[Path]]:
    if not settings.kafka_bootstrap_servers:
        raise ConfigError("reco ab-report needs KAFKA_BOOTSTRAP_SERVERS")
    if not settings.ab_treatment_share:
        raise ConfigError("no A/B test: RECO_AB_TREATMENT_SHARE is 0")
    pseudonym = Pseudonymiser(settings.secret_bytes())
    salt, share = settings.ab_salt, settings.ab_treatment_share
    recs, purchases = asyncio.run(gather(settings))
    window_ms = int(1000 * (options.window_s or settings.attribution_window_s))
    k = options.k or settings.top_k
    arms = totals(recs, purchases, lambda user: assign(pseudonym(user), salt, share), window_ms, k)
    try:
        result = report(arms, k, window_ms)
    except ValueError as exc:
        raise ConfigError(f"not enough data for a report: {exc}") from exc
    options.out.mkdir(parents=True, exist_ok=True)
    md = options.out / "ab-report.md"
    md.write_text(result.markdown() + "\n")
    png = result.plot(options.out / "ab-report.png")
    return result, [md, png]
