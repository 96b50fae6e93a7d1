"""Snapshot the purchase, review and catalog topics into an event-log file for training.

Each partition is read from its beginning up to the high-watermark of the first fetch
answer for it, so a snapshot ends even while producers keep writing. The high-watermark
comes from fetch answers rather than ``end_offsets()`` (ListOffsets) because Tansu
answers ListOffsets with a too-small offset; on Kafka the two agree.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from tqdm import tqdm

from models.datasets import Dataset, write_eventlog
from models.datasets.base import Event, catalog
from models.datasets.eventlog import default_name
from models.datasets.records import Record
from schemas.codec import Codec
from schemas.errors import ConfigError, InvalidEventError, SchemaError, ServiceError
from schemas.validation import validate
from streams.settings import Settings

_METADATA_TRIES = 20
_POLL_MS = 200
_KIND_RANK = {"purchase": 0, "review": 1}


@dataclass
class SnapshotStats:
    """What a snapshot read, kept and skipped, per topic."""

    read: dict[str, int] = field(default_factory=dict)
    undecodable: dict[str, int] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    events: int = 0
    products: int = 0
    seconds: float = 0.0
    end_offsets: dict[str, list[int]] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.events} events and {self.products} products from "
            f"{sum(self.read.values())} records in {self.seconds:.1f}s; "
            f"undecodable {self.undecodable or 0}, invalid {self.invalid or 0}, "
            f"duplicate event ids {self.duplicates}"
        )


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics``, named one by one (brokers differ on 'all partitions')."""
    for _ in range(_METADATA_TRIES):
        found = {t: consumer.partitions_for_topic(t) or set() for t in topics}
        if all(found.values()):
            return [TopicPartition(t, p) for t in topics for p in sorted(found[t])]
        await asyncio.sleep(0.1)
        await consumer._client.force_metadata_update()
    missing = sorted(t for t, parts in found.items() if not parts)
    raise ConfigError(f"cannot snapshot: topic(s) {missing} do not exist (run `reco topics`?)")


async def read_bounded(
    bootstrap: str,
    topics: list[str],
    handle: Callable[[ConsumerRecord[bytes, bytes]], None],
    *,
    progress: bool = True,
    idle_timeout: float = 30.0,
) -> dict[TopicPartition, int]:
    """Pass every record of ``topics`` below each partition's end at start to ``handle``.

    Returns the end offset used per partition. Raises ``ServiceError`` if the broker
    cannot be reached or no partition advances for ``idle_timeout`` seconds.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="reco-snapshot",
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        raise ServiceError(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc
    bar = tqdm(unit="rec", disable=not progress, file=sys.stderr, desc="snapshot")
    try:
        tps = await _partitions(consumer, topics)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        start = {tp: await consumer.position(tp) for tp in tps}
        stop: dict[TopicPartition, int] = {}
        done: set[TopicPartition] = set()
        last_move = time.monotonic()
        while len(done) < len(tps):
            batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=10_000)
            moved = bool(batch)
            for tp in tps:
                high = consumer.highwater(tp)
                if tp not in stop and high is not None:
                    stop[tp], moved = high, True
                    if len(stop) == len(tps):
                        bar.total = sum(stop[t] - start[t] for t in tps)
                        bar.refresh()
            for tp, records in batch.items():
                kept = [r for r in records if r.offset < stop[tp]]
                for record in kept:
                    handle(record)
                bar.update(len(kept))
            for tp in tps:
                if tp in stop and tp not in done and await consumer.position(tp) >= stop[tp]:
                    done.add(tp)
                    consumer.pause(tp)  # records written after the start are not ours
            if moved:
                last_move = time.monotonic()
            elif time.monotonic() - last_move > idle_timeout:
                stuck = sorted(f"{tp.topic}[{tp.partition}]" for tp in set(tps) - done)
                raise ServiceError(f"snapshot stalled for {idle_timeout:.0f}s on {stuck}")
        return stop
    except KafkaError as exc:
        raise ServiceError(f"reading {topics} from {bootstrap} failed: {exc!r}") from exc
    finally:
        bar.close()
        await consumer.stop()


class _Collector:
    """Decodes, validates and de-duplicates records as they arrive."""

    def __init__(self, settings: Settings, stats: SnapshotStats, now_ms: int) -> None:
        self.codec = Codec(settings.wire_format)
        self.max_future_ms = settings.max_future_ms
        self.stats, self.now_ms = stats, now_ms
        self.schema_of = {
            settings.topic_purchases: ("Purchase", "purchase"),
            settings.topic_reviews: ("Review", "review"),
            settings.topic_catalog: ("Product", "product"),
        }
        self.events: list[tuple[tuple[int, int, int, int], Event]] = []
        self.seen: set[str] = set()
        self.products: dict[str, tuple[tuple[int, int], Record]] = {}

    def _decode(self, topic: str, schema: str, value: bytes | None) -> dict[str, Any] | None:
        try:
            if value is None:
                raise SchemaError("no value")
            record = self.codec.decode(schema, value)
        except SchemaError:
            self.stats.undecodable[topic] = self.stats.undecodable.get(topic, 0) + 1
            return None
        try:
            validate(schema, record, self.now_ms, self.max_future_ms)
        except InvalidEventError:
            self.stats.invalid[topic] = self.stats.invalid.get(topic, 0) + 1
            return None
        return record

    def __call__(self, msg: ConsumerRecord[bytes, bytes]) -> None:
        topic = msg.topic
        self.stats.read[topic] = self.stats.read.get(topic, 0) + 1
        schema, kind = self.schema_of[topic]
        if kind == "product" and msg.value is None:
            # A tombstone on the compacted catalog deletes the item's record.
            if msg.key is not None:
                self.products.pop(msg.key.decode(errors="replace"), None)
            return
        record = self._decode(topic, schema, msg.value)
        if record is None:
            return
        if kind == "product":
            # Newest version wins, as in the workers' catalog; a later offset breaks ties.
            rank = (record["ts"], msg.offset)
            old = self.products.get(record["item_id"])
            if old is None or rank >= old[0]:
                self.products[record["item_id"]] = (rank, record)
            return
        if record["event_id"] in self.seen:
            self.stats.duplicates += 1
            return
        self.seen.add(record["event_id"])
        event: Event = ("purchase" if kind == "purchase" else "review", record)
        self.events.append(((record["ts"], _KIND_RANK[kind], msg.partition, msg.offset), event))

    def dataset(self, name: str, source: str) -> Dataset:
        """Events in time order (ties: purchases first, then partition and offset order);
        products of the event items first, by first appearance, then catalog-only items."""
        self.events.sort(key=lambda pair: pair[0])
        events = [event for _, event in self.events]
        known = {item: record for item, (_, record) in self.products.items()}
        products = [known.pop(p["item_id"], p) for p in catalog(events, {})]
        products += sorted(known.values(), key=lambda p: (p["ts"], p["item_id"]))
        # the shop's own log: real times, evaluated in time as the trainer does
        return Dataset(name=name, products=products, events=events, source=source, split="temporal")


async def snapshot(
    settings: Settings,
    out: str | Path,
    *,
    name: str | None = None,
    progress: bool = True,
    idle_timeout: float = 30.0,
) -> SnapshotStats:
    """Write the purchase, review and catalog topics as an event log at ``out``.

    Undecodable records, records that break a domain rule and repeated event ids are
    counted in the returned stats and left out; none of them stops the snapshot.
    """
    bootstrap = settings.kafka_bootstrap_servers
    if not bootstrap:
        raise ConfigError("a snapshot needs KAFKA_BOOTSTRAP_SERVERS")
    began = time.perf_counter()
    now_ms = time.time_ns() // 1_000_000
    stats = SnapshotStats()
    collect = _Collector(settings, stats, now_ms)
    topics = list(collect.schema_of)
    stop = await read_bounded(
        bootstrap, topics, collect, progress=progress, idle_timeout=idle_timeout
    )
    stats.end_offsets = {
        t: [stop[tp] for tp in sorted(stop, key=lambda tp: tp.partition) if tp.topic == t]
        for t in topics
    }
    stamp = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="seconds")
    dataset = collect.dataset(
        name or default_name(out), f"snapshot of {', '.join(topics)} at {bootstrap}, {stamp}"
    )
    stats.events, stats.products = len(dataset.events), len(dataset.products)
    write_eventlog(
        out,
        dataset,
        {
            "created_ms": now_ms,
            "end_offsets": stats.end_offsets,
            "read": stats.read,
            "undecodable": stats.undecodable,
            "invalid": stats.invalid,
            "duplicates": stats.duplicates,
        },
    )
    stats.seconds = time.perf_counter() - began
    return stats
