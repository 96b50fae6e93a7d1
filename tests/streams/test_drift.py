"""Drift alerts from the workers: on a real Redis in-process, then through a real broker."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from models.data import from_dataset
from models.datasets import SyntheticDataset, generate
from models.registry import Registry
from models.sasrec import SASRec, SASRecConfig
from models.split import leave_one_out
from schemas.codec import Codec
from streams import keys
from streams.probes import free_port
from streams.serving.holder import ModelHolder, load_served
from streams.settings import Settings
from tests.streams.harness import (
    InProcess,
    Worker,
    consume,
    make_settings,
    publish_records,
    stat,
    wait_for,
)
from tests.streams.test_web import get_json, web_is_up

pytestmark = pytest.mark.integration

# The category-mix monitor of each worker compares its latest 2,000 purchases, every
# 500, against its first 5,000 after warm-up: a switch of every segment's categories
# shows within 2,500 of a worker's purchases, 5,000 of the stream's with two workers.
DELAY_BOUND = 5_000


@pytest.fixture(scope="module")
def drifting() -> SyntheticDataset:
    return generate(n_users=1500, n_segments=4, drift_at=0.6, seed=2)


def purchases(shop: SyntheticDataset) -> list[dict[str, Any]]:
    return [rec for kind, rec in shop.events if kind == "purchase"]


@pytest.fixture
def pair(
    redis_client: redis.Redis, redis_url: str, drifting: SyntheticDataset
) -> Iterator[list[InProcess]]:
    s = Settings(pseudonym_secret="s", redis_url=redis_url, product_cache_s=0)
    workers = [InProcess(s, redis_url, p) for p in (0, 1)]
    workers[0].send(s.topic_catalog, "Product", list(drifting.products))
    yield workers
    for w in workers:
        w.close()


def test_category_drift_is_alerted_once_soon_after_it_starts(
    pair: list[InProcess], redis_client: redis.Redis, drifting: SyntheticDataset
) -> None:
    events = purchases(drifting)
    assert drifting.drift_ts is not None
    drift_at = next(i for i, r in enumerate(events) if r["ts"] >= drifting.drift_ts)
    alerts: list[tuple[int, dict[str, Any]]] = []  # (events streamed when raised, alert)
    batch = 200
    for start in range(0, len(events), batch):
        for p, w in enumerate(pair):
            own = [
                r
                for r in events[start : start + batch]
                if zlib.crc32(r["user_id"].encode()) % 2 == p
            ]
            outs = w.send(w.settings.topic_purchases, "Purchase", own)
            alerts += [
                (start + batch, w.codec.decode("DriftAlert", o.value))
                for o in outs
                if o.topic == w.settings.topic_drift_alerts
            ]
    mix = [(n, a) for n, a in alerts if a["monitor"] == "category_mix"]
    assert len(mix) == 1, alerts  # both workers saw it; Redis let one of them say it
    seen_at, alert = mix[0]
    assert drift_at < seen_at <= drift_at + DELAY_BOUND, (drift_at, seen_at)
    assert alert["statistic"] == "psi" and alert["value"] > alert["threshold"]
    assert alert["model_version"] == "cooccurrence-v1"
    # Nothing about the purchase mix before the drift.
    early = [a for n, a in alerts if n <= drift_at and a["monitor"] in ("category_mix",)]
    assert not early
    kept = [json.loads(r) for r in redis_client.lrange(keys.DRIFT_ALERTS, 0, -1)]
    assert {a["monitor"] for a in kept} == {a["monitor"] for _, a in alerts}
    assert stat(redis_client, "drift_alerts") == len(alerts)


@pytest.mark.slow
def test_a_worker_publishes_drift_alerts_and_the_status_view_shows_them(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    drifting: SyntheticDataset,
    tmp_path: Path,
) -> None:
    port = free_port()
    s = make_settings(kafka_bootstrap, redis_url, partitions=1, web_enabled=True, web_port=port)
    events = purchases(drifting)
    publish_records(s, [("product", p["item_id"], p) for p in drifting.products])
    publish_records(s, [("purchase", r["user_id"], r) for r in events])
    worker = Worker(s, tmp_path / "worker.log")
    try:
        wait_for(lambda: stat(redis_client, "applied") == len(events), 240, "events", worker)
        sent = stat(redis_client, "drift_alerts")
        assert sent >= 1
        records = consume(s, s.topic_drift_alerts, sent, 60)
        codec = Codec()
        alerts = [codec.decode("DriftAlert", r.value) for r in records]
        assert len(alerts) == sent
        assert "category_mix" in {a["monitor"] for a in alerts}
        for r, a in zip(records, alerts, strict=True):
            assert r.key == a["monitor"].encode()

        # The ops view, from the worker's HTTP API and from the command line.
        wait_for(lambda: web_is_up(port), 30, "the web server", worker)

        def counted() -> int:
            beats = get_json(port, "/status?lag=0")[1]["workers"].values()
            return sum(b["events"] for b in beats)

        # Heartbeats come every few seconds; products count as events too.
        wait_for(lambda: counted() >= len(events), 20, "a heartbeat after the last event", worker)

        def purchases_lag() -> int | None:
            lagging = get_json(port, "/status")[1]["lag"]
            return None if lagging is None else lagging[s.topic_purchases]["0"]["lag"]

        # Offsets are committed every second or so: the lag reaches 0 shortly after.
        wait_for(lambda: purchases_lag() == 0, 30, "the committed offsets to catch up", worker)
        code, view = get_json(port, "/status")
        assert code == 200
        (beat,) = view["workers"].values()
        assert beat["alive"] and beat["partitions"] == [0]
        assert beat["models"] == {"current": None, "canary": None, "previous": None}
        assert view["counters"]["applied"] == len(events)
        online = view["online"]["version"]["cooccurrence-v1"]
        assert online["n"] == view["counters"]["judged"] > 0 and 0 < online["hr"] < 1
        assert {a["monitor"] for a in view["drift_alerts"]} == {a["monitor"] for a in alerts}
        assert sum(view["segments"]["sizes"].values()) > 0
        assert any(h["judged"] for h in view["hit_rate_by_hour"])

        def status(*flags: str) -> str:
            return subprocess.run(
                [sys.executable, "-m", "streams.cli", "status", *flags],
                env=s.as_env(os.environ),
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout

        lag = json.loads(status("--json"))["lag"][s.topic_purchases]["0"]
        assert lag == {"committed": len(events), "end": len(events), "lag": 0}
        text = status("--no-lag")
        assert "category_mix" in text and "HR " in text
    finally:
        worker.stop()


def test_a_model_trained_before_the_drift_sets_off_the_hit_rate_monitor(
    redis_client: redis.Redis, redis_url: str, drifting: SyntheticDataset, tmp_path: Path
) -> None:
    """The generator's drift as a model in production meets it: trained on the weeks
    before, it keeps recommending the old categories, and purchases stop matching.

    The model is trained on the events before a cut 8,000 purchases ahead of the drift;
    every event is streamed (so that histories are whole), and the monitors start at
    the cut: before it, the model is scored on events it trained on.
    """
    assert drifting.drift_ts is not None
    events = purchases(drifting)
    drift_at = next(i for i, r in enumerate(events) if r["ts"] >= drifting.drift_ts)
    cut = drift_at - 8_000
    cut_ts = events[cut]["ts"]
    before = dataclasses.replace(
        drifting, events=[(k, r) for k, r in drifting.events if r["ts"] < cut_ts]
    )
    split = leave_one_out(from_dataset(before))
    config = SASRecConfig(hidden=32, epochs=4, batch_size=128, progress=False, threads=1)
    model = SASRec(config).fit(split.train, split.valid)
    version = Registry(tmp_path / "registry").publish(model.to_checkpoint(), "sasrec")
    holder = ModelHolder("sasrec")
    holder.install(load_served(version.to_record()))
    s = Settings(
        pseudonym_secret="s", redis_url=redis_url, product_cache_s=0, drift_warmup_events=cut
    )
    w = InProcess(s, redis_url, 0, holder)
    w.send(s.topic_catalog, "Product", list(drifting.products))
    raised: dict[str, int] = {}
    try:
        for start in range(0, len(events), 200):
            outs = w.send(s.topic_purchases, "Purchase", events[start : start + 200])
            for o in outs:
                if o.topic == s.topic_drift_alerts:
                    a = w.codec.decode("DriftAlert", o.value)
                    raised.setdefault(a["monitor"], start + 200)
                    assert a["model_version"] == version.version
    finally:
        w.close()
    for monitor in ("online_hit_rate", "category_mix"):
        assert monitor in raised, raised
        assert drift_at < raised[monitor] <= drift_at + DELAY_BOUND, (monitor, raised, drift_at)
    # The model's score distribution moves before the drift in this replay too (about
    # 5,000 purchases after the cut): its monitor fires, but not at the drift.
    assert "score_distribution" in raised
