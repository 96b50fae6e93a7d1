"""A worker rides out a Redis outage and isolates a message that breaks processing."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from models.datasets import generate
from schemas.codec import Codec
from streams import keys
from streams.probes import free_port
from streams.processor import Message, Output, Processor
from streams.settings import Settings
from streams.worker import process_batch
from tests.streams.harness import (
    Worker,
    consume,
    make_settings,
    publish_records,
    stat,
    wait_for,
)

pytestmark = pytest.mark.integration


class OwnRedis:
    """A redis-server this test may stop and start again on the same port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip(reason="redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _flowing(
    s: Settings, control: redis.Redis, worker: Worker, seed: int
) -> tuple[threading.Thread, list[dict[str, Any]]]:
    """Publish purchases over about 10 s once the worker is up; return once it applies them."""
    ds = generate(n_users=200, n_items=100, events_per_user=(10, 20), seed=seed)
    events = [r for kind, r in ds.events if kind == "purchase"]
    publisher = threading.Thread(
        target=publish_records,
        args=(s, [("purchase", r["user_id"], r) for r in events]),
        kwargs={"rate": len(events) / 10},
    )
    # What follows must find the worker running, not starting (that path fails fast).
    wait_for(lambda: control.hlen(keys.WORKERS) > 0, 60, "worker up", worker)
    publisher.start()
    wait_for(lambda: stat(control, "applied") > 0, 60, "first events applied", worker)
    time.sleep(1)
    return publisher, events


def _unanswered(s: Settings, events: list[dict[str, Any]]) -> set[str]:
    """Purchases with no recommendation, read until all have one or 120 s pass."""
    codec = Codec()
    wanted = {r["event_id"] for r in events}

    def causes(records: list[Any]) -> set[str]:
        return {codec.decode("Recommendation", r.value)["cause_event_id"] for r in records}

    recs = consume(s, s.topic_recommendations, 0, 120, until=lambda rs: causes(rs) >= wanted)
    return wanted - causes(recs)


def test_redis_outage_loses_no_event(
    kafka_bootstrap: str, own_redis: OwnRedis, tmp_path: Path
) -> None:
    s = make_settings(kafka_bootstrap, own_redis.url)
    worker = Worker(s, tmp_path / "worker.log")
    try:
        publisher, events = _flowing(s, redis.Redis.from_url(own_redis.url), worker, seed=4)
        own_redis.stop()
        time.sleep(4)
        worker.assert_alive()
        own_redis.start()  # empty: what matters is that no event goes unprocessed
        publisher.join(60)
        assert not _unanswered(s, events)
        worker.assert_alive()
    finally:
        worker.stop()
    assert "retrying" in (tmp_path / "worker.log").read_text()


def test_a_worker_stopped_mid_batch_loses_none_of_it(
    kafka_bootstrap: str, own_redis: OwnRedis, tmp_path: Path
) -> None:
    # Faust stops an agent by cancelling it, and take_events acks the batch in hand
    # however it ends: the batch must be finished, or left for the next worker.
    s = make_settings(kafka_bootstrap, own_redis.url)
    control = redis.Redis.from_url(own_redis.url)
    first = Worker(s, tmp_path / "first.log")
    try:
        publisher, events = _flowing(s, control, first, seed=5)
        # Every Redis call blocks for 2.5 s, so the stop lands in the middle of a batch.
        control.execute_command("CLIENT", "PAUSE", 2500, "ALL")
        time.sleep(0.5)
    finally:
        first.stop()
    assert "stopping mid-batch" in (tmp_path / "first.log").read_text()
    second = Worker(s, tmp_path / "second.log")
    try:
        publisher.join(60)
        missing = _unanswered(s, events)
        assert not missing, f"{len(missing)} purchases never answered"
        second.assert_alive()
    finally:
        second.stop()


def test_a_message_that_breaks_processing_is_dead_lettered_alone(
    redis_url: str, redis_client: redis.Redis
) -> None:
    from streams.state import Store

    settings = Settings(pseudonym_secret="k")
    msgs = [Message("purchases", 0, i, b"k", b"v%d" % i) for i in range(5)]

    async def handler(batch: Sequence[Message]) -> list[Output]:
        if any(m.offset == 3 for m in batch):
            raise KeyError("a bug that only message 3 triggers")
        return [Output("out", m.key, m.value or b"") for m in batch]

    async def go() -> list[Output]:
        store = Store.from_url(redis_url)
        try:
            return await process_batch(Processor(settings, store), handler, msgs)
        finally:
            await store.close()

    out = asyncio.run(go())
    assert [o.value for o in out if o.topic == "out"] == [b"v0", b"v1", b"v2", b"v4"]
    dead = [Codec().decode("DeadLetter", o.value) for o in out if o.topic == "dead-letter"]
    assert [(d["offset"], d["raw"]) for d in dead] == [(3, b"v3")]
    assert "processing failed" in dead[0]["error"]
