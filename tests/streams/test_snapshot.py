"""`reco snapshot`: topics in, an event log that `load` reads back event for event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from models.datasets import generate, load, purchase, to_messages
from schemas.codec import Codec
from schemas.errors import ConfigError, ServiceError
from streams.cli import main
from streams.probes import free_port
from streams.settings import Settings
from streams.snapshot import snapshot
from tests.streams.harness import publish_raw, publish_records, run

pytestmark = pytest.mark.integration


def _settings(bootstrap: str, make_topic: Callable[..., str], **overrides: object) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_purchases=make_topic("snap-purchases", partitions=3),
        topic_reviews=make_topic("snap-reviews", partitions=2),
        topic_catalog=make_topic("snap-catalog", partitions=2),
        **overrides,  # type: ignore[arg-type]
    )


def test_snapshot_reads_back_event_for_event(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    s = _settings(kafka_bootstrap, topic_factory)
    ds = generate(n_users=50, n_items=40, events_per_user=(3, 8), review_rate=0.3, seed=1)
    times = [r["ts"] for _, r in ds.events]
    assert len(set(times)) == len(times)  # no ties, so the time order is the only order
    sent = publish_records(s, to_messages(ds))
    assert sent > 300

    # What a real log also holds: garbage, a rule breaker, a duplicate, a catalog update.
    first_kind, first = ds.events[0]
    newer = {**ds.products[0], "price": 1.25, "ts": ds.products[0]["ts"] + 1}
    bad = purchase("bad-1", "u-x", "item0", times[0], quantity=-1)
    extra = [("product", newer["item_id"], newer), (first_kind, first["user_id"], first)]
    publish_records(s, [*extra, ("purchase", "u-x", bad)])
    publish_raw(s, s.topic_purchases, [(b"u-y", b"\x00not avro")])

    out = tmp_path / "snap.jsonl.gz"
    stats = run(snapshot(s, out, progress=False))
    assert stats.undecodable == {s.topic_purchases: 1}
    assert stats.invalid == {s.topic_purchases: 1}
    assert stats.duplicates == 1
    assert sum(stats.read.values()) == sent + 4
    assert sum(sum(ends) for ends in stats.end_offsets.values()) == sent + 4

    loaded = load(out)
    assert loaded.name == "snap"
    assert (loaded.split, loaded.timed) == ("temporal", True)  # evaluated as the trainer does
    assert (stats.events, stats.products) == (len(ds.events), len(ds.products))
    assert loaded.events == ds.events
    assert {p["item_id"]: p for p in loaded.products} == {
        **{p["item_id"]: p for p in ds.products},
        newer["item_id"]: newer,
    }


def test_snapshot_ends_while_producers_keep_writing(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    s = _settings(kafka_bootstrap, topic_factory)
    ds = generate(n_users=20, n_items=20, events_per_user=(3, 5), seed=2)
    before = publish_records(s, to_messages(ds))
    codec = Codec(s.wire_format)

    async def scenario() -> tuple[int, object]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=2)
        await producer.start()
        finished = asyncio.Event()

        async def keep_writing() -> int:
            n = 0
            while not finished.is_set():
                record = purchase(f"late-{n}", f"late-user-{n % 7}", "item1", 10**12 + n)
                await producer.send_and_wait(
                    s.topic_purchases, codec.encode("Purchase", record), key=b"late"
                )
                n += 1
            return n

        writer = asyncio.create_task(keep_writing())
        await asyncio.sleep(0.3)
        try:
            stats = await asyncio.wait_for(snapshot(s, tmp_path / "live.jsonl", progress=False), 60)
        finally:
            finished.set()
            written = await writer
            await producer.stop()
        return written, stats

    written, _ = run(scenario())
    loaded = load(tmp_path / "live.jsonl")
    late = [r for _, r in loaded.events if r["event_id"].startswith("late-")]
    assert {r["event_id"] for _, r in ds.events} <= {r["event_id"] for _, r in loaded.events}
    # It stopped at the ends it saw: not every late record, but a prefix of them.
    assert len(late) < written
    assert sorted(int(r["event_id"][5:]) for r in late) == list(range(len(late)))
    assert len(loaded.events) - len(late) == len(ds.events)
    assert before == len(ds.events) + len(ds.products)


def test_cli_snapshot_and_missing_topic(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = _settings(kafka_bootstrap, topic_factory)
    ds = generate(n_users=5, n_items=20, events_per_user=(2, 3), seed=4)
    publish_records(s, to_messages(ds))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("RECO_TOPIC_PURCHASES", s.topic_purchases)
    monkeypatch.setenv("RECO_TOPIC_REVIEWS", s.topic_reviews)
    monkeypatch.setenv("RECO_TOPIC_CATALOG", s.topic_catalog)
    out = tmp_path / "cli.jsonl"
    assert main(["snapshot", str(out), "--name", "mine", "--no-progress"]) == 0
    assert f"{len(ds.events)} events" in capsys.readouterr().out
    loaded = load(out)
    assert (loaded.name, loaded.events) == ("mine", ds.events)

    missing = s.model_copy(update={"topic_reviews": "no-such"})
    with pytest.raises(ConfigError, match="no-such"):
        run(snapshot(missing, tmp_path / "x.jsonl", progress=False))
    assert not (tmp_path / "x.jsonl").exists()


def test_unreachable_broker_is_a_service_error(tmp_path: Path) -> None:
    s = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(ServiceError, match="cannot reach Kafka"):
        run(snapshot(s, tmp_path / "x.jsonl", progress=False))
    assert time.monotonic() - started < 30
