"""Drift alerts from the workers: on a real Redis in-process, then through a real broker."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from redis import asyncio as aioredis

from models.data import from_dataset
from models.datasets import SyntheticDataset, generate
from models.datasets.synthetic import DAY_MS, SPAN_MS, START_MS
from models.registry import Registry
from models.sasrec import SASRec, SASRecConfig
from models.split import leave_one_out
from schemas.codec import Codec
from streams import keys
from streams.drift import DriftWatch, Observed
from streams.probes import free_port
from streams.serving.holder import ModelHolder, load_served
from streams.serving.serve import Answer
from streams.settings import Settings
from streams.state.store import APPLIED, ApplyResult, Interaction
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
# The other monitors alerted within 2,600 on the streams below (seeds 2 to 5; the
# segment mix, after a wave, the slowest); all are held to the same bound.
DELAY_BOUND = 5_000

# A shop whose users join at a steady rate and shop for five days: from its sixth day
# until five days before its end nothing changes but what a test injects.
STEADY: dict[str, Any] = {"n_users": 1500, "n_segments": 4, "seed": 2, "active_days": 5}


@pytest.fixture(scope="module")
def drifting() -> SyntheticDataset:
    return generate(n_users=1500, n_segments=4, drift_at=0.6, seed=2)


def purchases(shop: SyntheticDataset) -> list[dict[str, Any]]:
    return [rec for kind, rec in shop.events if kind == "purchase"]


def drift_index(shop: SyntheticDataset) -> int:
    """Position in the purchases of the first one at or after the drift."""
    assert shop.drift_ts is not None
    return next(i for i, r in enumerate(purchases(shop)) if r["ts"] >= shop.drift_ts)


def stream_to_two_workers(
    redis_url: str, shop: SyntheticDataset, events: list[dict[str, Any]], batch: int = 200
) -> list[tuple[int, dict[str, Any]]]:
    """Each user's purchases to one of two in-process workers, ``batch`` at a time:
    (purchases streamed when raised, DriftAlert) for every alert sent."""
    s = Settings(pseudonym_secret="s", redis_url=redis_url, product_cache_s=0)
    workers = [InProcess(s, redis_url, p) for p in (0, 1)]
    alerts: list[tuple[int, dict[str, Any]]] = []
    try:
        workers[0].send(s.topic_catalog, "Product", list(shop.products))
        for start in range(0, len(events), batch):
            for p, w in enumerate(workers):
                own = [
                    r
                    for r in events[start : start + batch]
                    if zlib.crc32(r["user_id"].encode()) % 2 == p
                ]
                outs = w.send(s.topic_purchases, "Purchase", own)
                alerts += [
                    (start + batch, w.codec.decode("DriftAlert", o.value))
                    for o in outs
                    if o.topic == s.topic_drift_alerts
                ]
    finally:
        for w in workers:
            w.close()
    return alerts


def test_category_drift_is_alerted_once_soon_after_it_starts(
    redis_client: redis.Redis, redis_url: str, drifting: SyntheticDataset
) -> None:
    drift_at = drift_index(drifting)
    alerts = stream_to_two_workers(redis_url, drifting, purchases(drifting))
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


@pytest.mark.parametrize(
    ("injected", "expected"),
    [
        ({"price_drift": 1.3}, {"price_level"}),
        ({"new_items": 150}, {"new_items"}),
        ({"wave": 500}, {"new_users", "segment_mix"}),
    ],
    ids=["prices-up-30%", "150-new-items", "a-wave-of-500-users-in-one-segment"],
)
def test_each_injected_drift_is_alerted_by_its_monitor_and_nothing_comes_before(
    redis_client: redis.Redis, redis_url: str, injected: dict[str, Any], expected: set[str]
) -> None:
    """One kind of drift at a time: the segments keep their categories."""
    shop = generate(**STEADY, drift_at=0.6, shift_categories=False, **injected)
    drift_at = drift_index(shop)
    alerts = stream_to_two_workers(redis_url, shop, purchases(shop)[: drift_at + DELAY_BOUND])
    assert [(n, a["monitor"]) for n, a in alerts if n <= drift_at] == []
    first: dict[str, int] = {}
    for n, a in alerts:
        first.setdefault(a["monitor"], n)
    for monitor in expected:
        assert monitor in first, (monitor, first, drift_at)
        assert first[monitor] - drift_at <= DELAY_BOUND


@pytest.mark.slow
def test_a_stationary_stream_of_100000_purchases_raises_no_alert(
    redis_client: redis.Redis, redis_url: str
) -> None:
    shop = generate(**{**STEADY, "n_users": 5000, "seed": 11})
    end = START_MS + SPAN_MS - 5 * DAY_MS  # users stop joining five days before the end
    events = [r for r in purchases(shop) if r["ts"] < end]
    assert len(events) >= 100_000
    alerts = stream_to_two_workers(redis_url, shop, events)
    assert alerts == []
    # Every monitor was live: none is silent for want of observations.
    assert stat(redis_client, "judged") > 10_000
    assert redis_client.hlen(keys.SEGMENT_SIZES) > 0


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


def stream_to_a_model_trained_before(
    redis_url: str, shop: SyntheticDataset, registry: Path
) -> tuple[dict[str, int], str]:
    """A SASRec trained on the purchases before a cut 12,000 ahead of the drift serves
    one in-process worker whose monitors start 5,000 before it; every purchase up to
    ``DELAY_BOUND`` after the drift is streamed (so that histories are whole).

    The first alert of each monitor (purchases streamed when raised), and the version.
    """
    events = purchases(shop)
    drift_at = drift_index(shop)
    cut_ts = events[drift_at - 12_000]["ts"]
    before = dataclasses.replace(shop, events=[(k, r) for k, r in shop.events if r["ts"] < cut_ts])
    split = leave_one_out(from_dataset(before))
    config = SASRecConfig(hidden=32, epochs=4, batch_size=128, progress=False, threads=1)
    model = SASRec(config).fit(split.train, split.valid)
    version = Registry(registry).publish(model.to_checkpoint(), "sasrec")
    holder = ModelHolder("sasrec")
    holder.install(load_served(version.to_record()))
    s = Settings(
        pseudonym_secret="s",
        redis_url=redis_url,
        product_cache_s=0,
        drift_warmup_events=drift_at - 5_000,
    )
    w = InProcess(s, redis_url, 0, holder)
    w.send(s.topic_catalog, "Product", list(shop.products))
    raised: dict[str, int] = {}
    try:
        for start in range(0, drift_at + DELAY_BOUND, 200):
            outs = w.send(s.topic_purchases, "Purchase", events[start : start + 200])
            for o in outs:
                if o.topic == s.topic_drift_alerts:
                    a = w.codec.decode("DriftAlert", o.value)
                    raised.setdefault(a["monitor"], start + 200)
                    assert a["model_version"] == version.version
    finally:
        w.close()
    return raised, version.version


def test_a_model_trained_before_the_drift_sets_off_the_hit_rate_and_score_monitors(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """The generator's drift as a model in production meets it: trained on the weeks
    before, it keeps recommending the old categories and does not know the new items,
    so purchases stop matching its lists and its scores fall.

    The monitors start once the users the model was trained on have made way for
    others: on users it saw in training, its scores are higher than on anyone after.
    """
    shop = generate(**STEADY, drift_at=0.6, new_items=150)
    drift_at = drift_index(shop)
    raised, _ = stream_to_a_model_trained_before(redis_url, shop, tmp_path / "registry")
    assert all(n > drift_at for n in raised.values()), (raised, drift_at)
    for monitor in ("online_hit_rate", "score_distribution", "new_items", "category_mix"):
        assert monitor in raised, raised
        assert raised[monitor] <= drift_at + DELAY_BOUND, (monitor, raised, drift_at)


def test_the_score_monitor_takes_a_new_reference_when_the_model_changes(
    redis_client: redis.Redis, redis_url: str
) -> None:
    rng = np.random.default_rng(5)
    low, high = rng.normal(0.0, 1.0, 1500).tolist(), rng.normal(5.0, 1.0, 2000).tolist()

    async def monitors_of(versions: list[str]) -> list[str]:
        s = Settings(pseudonym_secret="s", redis_url=redis_url, drift_warmup_events=0)
        client = aioredis.Redis.from_url(redis_url)
        watch = DriftWatch(s, client)
        raised: list[str] = []
        try:
            for version, scores in zip(versions, (low, high), strict=True):
                for start in range(0, len(scores), 100):
                    chunk = scores[start : start + 100]
                    seen = Observed(scores=chunk, events=len(chunk))
                    raised += [r["monitor"] for r in await watch.observe(seen, version)]
        finally:
            await client.aclose()
        return raised

    # The same model's scores jumping is drift; a new model's are a new reference.
    assert "score_distribution" in asyncio.run(monitors_of(["v1", "v1"]))
    redis_client.flushdb()
    assert "score_distribution" not in asyncio.run(monitors_of(["v1", "v2"]))


def test_the_score_monitor_sees_only_the_serving_models_scores() -> None:
    batch = [Interaction(f"u{i}", b"h%d" % i, "i1", 1, "purchases:0", i) for i in range(3)]
    result = ApplyResult([APPLIED] * 3, [1, 1, 1], {f"u{i}": np.array([]) for i in range(3)})
    answers = [
        Answer([], "sasrec-2", "model", 3.0),
        Answer([], "sasrec-3", "model", 9.0),  # a canary's or a treatment's
        Answer([], "sasrec-2", "trending", None),
    ]
    records = [{"item_id": "i1", "price": 2.0}] * 3
    seen = Observed.of_batch(records, [True] * 3, batch, result, answers, [], {}, "sasrec-2")
    assert seen.scores == [3.0]
    assert seen.prices == [2.0, 2.0, 2.0] and seen.new_users == [1.0, 1.0, 1.0]
