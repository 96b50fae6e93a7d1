"""Hot swap on a real broker and Redis: a `reco worker` follows model-updates mid-stream."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis
import torch

from models.data import from_dataset
from models.datasets import generate
from models.datasets.records import product, purchase
from models.registry import Registry
from models.sasrec import SASRec, SASRecConfig
from models.split import leave_one_out
from schemas.codec import Codec
from streams.announce import announce
from streams.cli import main
from streams.settings import Settings
from tests.streams.harness import (
    Worker,
    consume,
    make_settings,
    publish_raw,
    publish_records,
    run,
    stat,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _update(name: str, version: str, path: Path) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "uri": path.resolve().as_uri(),
        "metrics": {},
        "ts": int(time.time() * 1000),
    }


def test_versions_swap_mid_stream_bad_ones_are_rejected_and_rollback_returns(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shop = generate(n_users=300, n_items=60, n_categories=4, events_per_user=(5, 10), seed=21)
    split = leave_one_out(from_dataset(shop))
    config = SASRecConfig(hidden=16, epochs=2, batch_size=64, progress=False, threads=1)
    first = SASRec(config).fit(split.train, split.valid)
    second = SASRec(SASRecConfig(**{**config.__dict__, "seed": 1})).fit(split.train, split.valid)
    registry = Registry(tmp_path / "registry")
    s = make_settings(kafka_bootstrap, redis_url, model_registry=str(registry.root))
    v1 = registry.publish(first.to_checkpoint({"NDCG@10": 0.1}), s.model_name)
    run(announce(v1, s))
    product = shop.products[0]
    publish_records(s, [("product", p["item_id"], p) for p in shop.products])

    def poked(name: str, value: int) -> bool:
        # a catalog record makes the worker flush its counters (swaps, rejections)
        publish_records(s, [("product", product["item_id"], product)])
        return stat(redis_client, name) >= value

    def wait_stat(name: str, value: int) -> None:
        wait_for(lambda: poked(name, value), 120, name, worker)

    events = [rec for kind, rec in shop.events if kind == "purchase"]
    parts = [events[i * len(events) // 4 : (i + 1) * len(events) // 4] for i in range(4)]
    worker = Worker(s, tmp_path / "worker.log")
    try:
        wait_stat("model_swaps", 1)
        publish_records(s, [("purchase", r["user_id"], r) for r in parts[0]])
        consume(s, s.topic_recommendations, len(parts[0]), timeout=120)

        # A new version announced while the second part streams in.
        v2 = registry.publish(second.to_checkpoint({"NDCG@10": 0.1}), s.model_name)
        run(announce(v2, s))
        publish_records(s, [("purchase", r["user_id"], r) for r in parts[1]])
        wait_stat("model_swaps", 2)
        publish_records(s, [("purchase", r["user_id"], r) for r in parts[2]])

        # A corrupt file and a model whose scores are NaN: both rejected.
        corrupt = tmp_path / "corrupt.pt"
        corrupt.write_bytes(b"\x00 not a checkpoint")
        broken = SASRec.from_checkpoint(second.to_checkpoint())
        assert broken.net is not None
        with torch.no_grad():
            broken.net.encoder.item.weight.fill_(float("nan"))
        nan_file = tmp_path / "nan.pt"
        broken.to_checkpoint().save(nan_file)
        codec = Codec(s.wire_format)
        bad = [
            _update(s.model_name, "bad-corrupt", corrupt),
            _update(s.model_name, "bad-nan", nan_file),
        ]
        for update in bad:
            publish_raw(
                s, s.topic_model_updates, [(b"sasrec", codec.encode("ModelUpdate", update))]
            )
            wait_stat("model_rejected", 1 + bad.index(update))
        publish_records(s, [("purchase", r["user_id"], r) for r in parts[3]])

        recs = consume(s, s.topic_recommendations, len(events), timeout=180)
        decoded = [(r.partition, r.offset, codec.decode("Recommendation", r.value)) for r in recs]
        causes = Counter(d["cause_event_id"] for _, _, d in decoded)
        assert set(causes) == {e["event_id"] for e in events}
        assert max(causes.values()) == 1
        version = {d["cause_event_id"]: d["model_version"] for _, _, d in decoded}
        assert {version[e["event_id"]] for e in parts[0]} == {v1.version}
        assert {version[e["event_id"]] for e in parts[2] + parts[3]} == {v2.version}
        # Within a partition (one user's order), never the old version after the new.
        per_partition: dict[int, list[str]] = defaultdict(list)
        for partition, _, d in sorted(decoded, key=lambda x: (x[0], x[1])):
            per_partition[partition].append(d["model_version"])
        for versions in per_partition.values():
            assert versions == sorted(versions, key=lambda v: v == v2.version)
        assert stat(redis_client, "model_rejected") == 2
        log = (tmp_path / "worker.log").read_text()
        assert "rejected model version bad-corrupt" in log
        assert "rejected model version bad-nan" in log and "NaN" in log

        # Rollback: the registry points back at v1 and announces it; the worker follows.
        for key, value in s.as_env({}).items():
            monkeypatch.setenv(key, value)
        assert main(["rollback", "--registry", str(registry.root)]) == 0
        wait_stat("model_swaps", 3)
        extra = {**events[-1], "event_id": "after-rollback", "ts": events[-1]["ts"] + 1}
        publish_records(s, [("purchase", extra["user_id"], extra)])
        recs = consume(s, s.topic_recommendations, len(events) + 1, timeout=60)
        after = [codec.decode("Recommendation", r.value) for r in recs]
        [rolled] = [d for d in after if d["cause_event_id"] == "after-rollback"]
        assert rolled["model_version"] == v1.version
    finally:
        worker.stop()


def test_settings_carry_model_floors_to_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    env = Settings(pseudonym_secret="k", model_floors={"NDCG@10": 0.05}).as_env({})
    assert env["RECO_MODEL_FLOORS"] == '{"NDCG@10": 0.05}'
    monkeypatch.setenv("RECO_MODEL_FLOORS", env["RECO_MODEL_FLOORS"])
    assert Settings().model_floors == {"NDCG@10": 0.05}


def test_cold_start_consent_and_new_items_through_the_broker(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    shop = generate(n_users=200, n_items=60, n_categories=4, events_per_user=(5, 10), seed=23)
    split = leave_one_out(from_dataset(shop))
    config = SASRecConfig(hidden=16, epochs=2, batch_size=64, progress=False, threads=1)
    model = SASRec(config).fit(split.train, split.valid)
    registry = Registry(tmp_path / "registry")
    s = make_settings(kafka_bootstrap, redis_url, wait_for_model_s=60.0, product_cache_s=0.0)
    version = registry.publish(model.to_checkpoint({"NDCG@10": 0.1}), s.model_name)
    run(announce(version, s))
    publish_records(s, [("product", p["item_id"], p) for p in shop.products])
    events = [rec for kind, rec in shop.events if kind == "purchase"]
    publish_records(s, [("purchase", r["user_id"], r) for r in events])
    codec = Codec(s.wire_format)
    worker = Worker(s, tmp_path / "worker.log")
    try:
        consume(s, s.topic_recommendations, len(events), timeout=120)
        last = events[-1]["ts"]
        withdrawn = events[-1]["user_id"]
        bought = next(e for e in reversed(events) if e["user_id"] != withdrawn)
        buyer = bought["user_id"]
        category = next(p for p in shop.products if p["item_id"] == bought["item_id"])["category"]
        # the buyer's next purchase is in the same category, so it is their main one
        owned = {e["item_id"] for e in events if e["user_id"] == buyer}
        same = next(
            p["item_id"]
            for p in shop.products
            if p["category"] == category and p["item_id"] not in owned
        )
        new_item = product("never-bought", last + 1, category=category, price=5.0, stock=9)
        pref = {
            "event_id": "withdraw-1",
            "user_id": withdrawn,
            "kind": "consent_withdrawn",
            "item_id": None,
            "value": None,
            "ts": last + 1,
        }
        publish_records(s, [("product", "never-bought", new_item), ("preference", withdrawn, pref)])
        wait_for(lambda: stat(redis_client, "preferences") >= 1, 60, "preference", worker)
        wait_for(lambda: redis_client.exists("item:never-bought") == 1, 60, "new item", worker)
        after = [
            purchase("after-withdrawal", withdrawn, events[0]["item_id"], last + 2),
            purchase("after-new-item", buyer, same, last + 3),
        ]
        publish_records(s, [("purchase", r["user_id"], r) for r in after])
        recs = consume(s, s.topic_recommendations, len(events) + 2, timeout=60)
        by_cause = {
            d["cause_event_id"]: d for d in (codec.decode("Recommendation", r.value) for r in recs)
        }
        private = by_cause["after-withdrawal"]
        assert private["model_version"] == "trending-v1"
        assert {i["reason"].partition(";")[0] for i in private["items"]} == {"trending"}
        fresh = by_cause["after-new-item"]
        assert fresh["model_version"] == version.version
        assert fresh["items"][-1]["item_id"] == "never-bought"
        assert fresh["items"][-1]["reason"] == f"new_in_category:{category[0]}"
    finally:
        worker.stop()
