"""Publish a data set to the input topics, as fast as possible or at a given rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from tqdm import tqdm

from schemas.codec import Codec
from schemas.errors import ServiceError
from streams.settings import Settings

SCHEMA_OF_KIND = {
    "product": "Product",
    "purchase": "Purchase",
    "review": "Review",
    "preference": "Preference",
}

# Waiting for delivery in chunks bounds memory while letting the producer batch.
_CHUNK = 5000


@dataclass(frozen=True)
class ReplayStats:
    sent: dict[str, int]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0


def topic_of_kind(settings: Settings) -> dict[str, str]:
    return {
        "product": settings.topic_catalog,
        "purchase": settings.topic_purchases,
        "review": settings.topic_reviews,
        "preference": settings.topic_preferences,
    }


def encoded(
    messages: Iterable[tuple[str, str, dict[str, Any]]], settings: Settings, codec: Codec
) -> Iterator[tuple[str, str, bytes, bytes]]:
    """(kind, topic, key, value) for each (kind, key, record)."""
    topics = topic_of_kind(settings)
    for kind, key, record in messages:
        yield kind, topics[kind], key.encode(), codec.encode(SCHEMA_OF_KIND[kind], record)


async def publish(
    bootstrap: str,
    messages: Iterable[tuple[str, str, bytes, bytes]],
    *,
    rate: float | None = None,
    total: int | None = None,
    progress: bool = True,
) -> ReplayStats:
    """Send (kind, topic, key, value) tuples; ``rate`` is in messages per second."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks="all"
    )
    try:
        await producer.start()
    except KafkaError as exc:
        raise ServiceError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    sent: dict[str, int] = {}
    pending: list[asyncio.Future[Any]] = []
    bar = tqdm(total=total, unit="ev", disable=not progress, smoothing=0.1)
    start = time.perf_counter()
    try:
        for i, (kind, topic, key, value) in enumerate(messages):
            if rate:
                ahead = start + i / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            pending.append(await producer.send(topic, value=value, key=key))
            sent[kind] = sent.get(kind, 0) + 1
            if len(pending) >= _CHUNK or (rate and rate < _CHUNK and len(pending) >= rate / 10):
                await asyncio.gather(*pending)
                bar.update(len(pending))
                pending.clear()
        await asyncio.gather(*pending)
        bar.update(len(pending))
    finally:
        bar.close()
        await producer.stop()
    return ReplayStats(sent, time.perf_counter() - start)
