"""Real workers, topics and Redis snapshots for the integration tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.codec import Codec
from streams import keys
from streams.processor import Message, Output, Processor
from streams.replay import encoded, publish
from streams.serving.holder import ModelHolder
from streams.settings import Settings
from streams.state import Store
from streams.state.sequence import decode_sequence
from streams.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_settings(bootstrap: str, redis_url: str, **overrides: Any) -> Settings:
    """Settings with topics and consumer group of their own, so tests never share offsets."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "redis_url": redis_url,
        "pseudonym_secret": "test-secret",
        **overrides,
    }
    s = Settings(**values).isolated(f"reco-test-{tag}")
    run(ensure_topics(bootstrap, s.topic_partitions()))
    return s


class Worker:
    """`reco worker` in a subprocess, as it runs in production."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "--loglevel", "info", "worker"],
            env=settings.as_env(os.environ),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker died:\n{self.log_path.read_text()[-3000:]}")


def publish_records(
    s: Settings, messages: Iterable[tuple[str, str, dict[str, Any]]], rate: float | None = None
) -> int:
    msgs = list(encoded(messages, s, Codec(s.wire_format)))
    stats = run(publish(s.kafka_bootstrap_servers or "", msgs, rate=rate, progress=False))
    return int(stats.total)


def publish_raw(s: Settings, topic: str, items: Iterable[tuple[bytes, bytes]]) -> int:
    msgs = [("raw", topic, k, v) for k, v in items]
    run(publish(s.kafka_bootstrap_servers or "", msgs, progress=False))
    return len(msgs)


async def _consume(
    bootstrap: str,
    topic: str,
    count: int,
    timeout: float,
    until: Callable[[list[Any]], bool] | None = None,
) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        for _ in range(50):
            if parts:
                break
            await asyncio.sleep(0.1)
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        done = until or (lambda records: len(records) >= count)
        while not done(out) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


def consume(
    s: Settings,
    topic: str,
    count: int,
    timeout: float = 120,
    until: Callable[[list[Any]], bool] | None = None,
) -> list[Any]:
    """Records of a topic from the beginning, until ``count`` are read (or ``until``
    says the records read so far are enough)."""
    return list(run(_consume(s.kafka_bootstrap_servers or "", topic, count, timeout, until)))


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, worker: Worker | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if worker is not None:
            worker.assert_alive()
        time.sleep(0.25)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}; last check: {predicate()}"
    )


def stat(client: redis.Redis, name: str) -> int:
    return int(client.hget(keys.STATS, name) or 0)


OPERATIONAL_KEYS = {keys.STATS.encode(), keys.APPLIED_OFFSETS.encode(), keys.WORKERS.encode()}


# The sync client is typed for both reply types; these tests never decode replies.
def get_bytes(client: redis.Redis, key: str | bytes) -> bytes | None:
    return cast(bytes | None, client.get(key))


def hget_bytes(client: redis.Redis, key: str, field: str) -> bytes:
    value = client.hget(key, field)
    assert isinstance(value, bytes), f"{key} {field}: {value!r}"
    return value


def zscores(client: redis.Redis, key: str | bytes) -> list[tuple[bytes, float]]:
    return cast(list[tuple[bytes, float]], client.zrange(key, 0, -1, withscores=True))


def raw_snapshot(client: redis.Redis) -> dict[bytes, Any]:
    """Every key's value, except the operational counters that count duplicates."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(count=1000):
        if key in OPERATIONAL_KEYS:
            continue
        kind = client.type(key)
        if kind == b"string":
            out[key] = client.get(key)
        elif kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = client.smembers(key)
        else:
            out[key] = client.dump(key)
    return out


def logical_snapshot(client: redis.Redis) -> dict[str, Any]:
    """State with item indexes replaced by item ids.

    Indexes are given in first-seen order, which depends on how partitions interleave,
    so two correct runs differ in indexes but must agree on everything else.
    """
    vocabulary = cast(dict[bytes, bytes], client.hgetall(keys.ITEM_IDS))
    names = {int(k): v.decode() for k, v in vocabulary.items()}
    out: dict[str, Any] = {}
    for key in client.scan_iter(count=1000):
        k = key.decode()
        if key in OPERATIONAL_KEYS or k in (keys.ITEM_IDS, keys.ITEM_INDEX, keys.ITEM_NEXT):
            continue
        per_batch = k.endswith((":seg", ":segmv", ":rec"))
        if k.startswith(("seg:", "eval", "exposure", "drift:")) or per_batch:
            # Online K-means (and which event moved a user), the lists shown (hence the
            # online evaluation) and drift statistics depend on how batches are cut and
            # interleave across partitions: two correct runs agree on the events, not on
            # these.
            continue
        if k.endswith(":seq"):
            arr = decode_sequence(get_bytes(client, key))
            out[k] = [
                (int(t), names[int(i)], bytes(h))
                for t, i, h in zip(arr["ts"], arr["item"], arr["hash"], strict=True)
            ]
        elif k == keys.POPULARITY:
            out[k] = {names[int(m)]: s for m, s in zscores(client, key)}
        elif k == keys.TRENDING_EPOCH:
            continue  # set by whichever batch came first; TRENDING is compared to scale
        elif k == keys.TRENDING:
            # Sums of floats relative to that epoch: equal up to one scale and rounding.
            scores = {names[int(m)]: s for m, s in zscores(client, key)}
            top = max(scores.values(), default=1.0)
            out[k] = {n: round(s / top, 6) for n, s in scores.items()}
        elif k.startswith("co:"):
            anchor = names[int(k[3:])]
            out["co:" + anchor] = {names[int(m)]: s for m, s in zscores(client, key)}
        elif k == keys.USERS_SEEN:
            out[k] = client.pfcount(key)
        elif client.type(key) == b"hash":
            out[k] = client.hgetall(key)
        else:
            out[k] = client.dump(key)
    return out


class InProcess:
    """A processor driven in-process (no broker), with its own Redis client, event loop
    and offsets: a stand-in for a worker that owns one partition."""

    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        partition: int,
        holder: ModelHolder | None = None,
    ) -> None:
        self.settings = settings
        self.codec = Codec(settings.wire_format)
        self.loop = asyncio.new_event_loop()
        self.store = Store.from_url(redis_url, trending_tau_s=settings.trending_tau_s)
        self.proc = Processor(settings, self.store, holder=holder)
        self.partition = partition
        self.offset = 0

    def send(self, topic: str, schema: str, records: list[dict[str, Any]]) -> list[Output]:
        msgs = []
        for rec in records:
            self.offset += 1
            key = (rec.get("user_id") or rec["item_id"]).encode()
            value = self.codec.encode(schema, rec)
            msgs.append(Message(topic, self.partition, self.offset, key, value))
        s = self.settings
        handler = {
            s.topic_purchases: self.proc.interactions,
            s.topic_catalog: self.proc.catalog,
            s.topic_preferences: self.proc.preferences,
        }[topic]
        return self.loop.run_until_complete(handler(msgs))

    def changes(self, outs: list[Output]) -> list[dict[str, Any]]:
        return [
            self.codec.decode("SegmentChange", o.value)
            for o in outs
            if o.topic == self.settings.topic_segments
        ]

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()
