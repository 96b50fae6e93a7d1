"""Serving on a real Redis with a real trained model: paths, cold start, consent, rules.

The processor runs in-process here (no broker needed to feed it); the worker tests
drive the same code through Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from models.data import from_dataset
from models.datasets import SyntheticDataset, generate
from models.datasets.records import product, purchase
from models.registry import Registry
from models.sasrec import SASRec, SASRecConfig, SASRecNet
from models.split import leave_one_out
from schemas.codec import Codec
from streams.processor import Message, Processor
from streams.serving.holder import ModelHolder, load_served
from streams.settings import Settings
from streams.state import Store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shop() -> SyntheticDataset:
    return generate(n_users=200, n_items=60, n_categories=4, events_per_user=(5, 10), seed=11)


@pytest.fixture(scope="module")
def published(shop: SyntheticDataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    split = leave_one_out(from_dataset(shop))
    config = SASRecConfig(hidden=16, epochs=3, batch_size=64, progress=False, threads=1)
    model = SASRec(config).fit(split.train, split.valid)
    registry = Registry(tmp_path_factory.mktemp("registry"))
    return registry.publish(model.to_checkpoint({"NDCG@10": 0.1}), "sasrec").to_record()


class Harness:
    def __init__(self, settings: Settings, redis_url: str, update: dict[str, Any] | None) -> None:
        self.settings = settings
        self.codec = Codec(settings.wire_format)
        self.store = Store.from_url(redis_url, trending_tau_s=settings.trending_tau_s)
        self.holder = ModelHolder(settings.model_name)
        if update is not None:
            self.holder.install(load_served(update))
        self.proc = Processor(settings, self.store, holder=self.holder)
        self.offset = 0
        self.loop = asyncio.new_event_loop()  # the async Redis client is bound to one loop

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _messages(self, topic: str, schema: str, records: list[dict[str, Any]]) -> list[Message]:
        out = []
        for rec in records:
            self.offset += 1
            key = (rec.get("user_id") or rec["item_id"]).encode()
            out.append(Message(topic, 0, self.offset, key, self.codec.encode(schema, rec)))
        return out

    def buy(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        msgs = self._messages(self.settings.topic_purchases, "Purchase", records)
        outs = self.run(self.proc.interactions(msgs))
        return [
            self.codec.decode("Recommendation", o.value)
            for o in outs
            if o.topic == self.settings.topic_recommendations
        ]

    def catalog(self, records: list[dict[str, Any]]) -> None:
        self.run(self.proc.catalog(self._messages(self.settings.topic_catalog, "Product", records)))

    def prefer(self, records: list[dict[str, Any]]) -> None:
        msgs = self._messages(self.settings.topic_preferences, "Preference", records)
        self.run(self.proc.preferences(msgs))


@pytest.fixture
def harness(
    redis_client: redis.Redis, redis_url: str, published: dict[str, Any], shop: SyntheticDataset
) -> Iterator[Harness]:
    settings = Settings(pseudonym_secret="s", redis_url=redis_url, product_cache_s=0)
    h = Harness(settings, redis_url, published)
    h.catalog(list(shop.products))
    yield h
    h.run(h.store.close())
    h.loop.close()


def events_of(shop: SyntheticDataset) -> list[dict[str, Any]]:
    return [rec for kind, rec in shop.events if kind == "purchase"]


def test_model_serves_with_its_version_and_reasons(
    harness: Harness, published: dict[str, Any], shop: SyntheticDataset
) -> None:
    events = events_of(shop)
    recs = harness.buy(events[:400])
    assert len(recs) == 400
    assert {r["model_version"] for r in recs} == {published["version"]}
    vocabulary = set(harness.holder.current.item_ids)  # type: ignore[union-attr]
    bought: dict[str, set[str]] = {}
    for ev, rec in zip(events[:400], recs, strict=True):
        bought.setdefault(ev["user_id"], set()).add(ev["item_id"])
        items = [i["item_id"] for i in rec["items"]]
        assert len(items) == 10
        assert not set(items) & bought[ev["user_id"]]
        assert set(items) <= vocabulary
        for i in rec["items"]:
            reason, _, boost = i["reason"].partition(";")
            assert boost in ("", "boost:promo", "boost:margin")
            kind, _, anchor = reason.partition(":")
            assert kind in ("because_you_bought", "bought_with", "popular", "new_in_category")
            if kind == "because_you_bought":
                assert anchor in bought[ev["user_id"]]


def test_new_user_gets_trending_and_short_history_blends(
    harness: Harness, shop: SyntheticDataset
) -> None:
    events = events_of(shop)
    harness.buy(events[:600])
    [answer] = harness.run(harness.proc.serving.recommend(["never-seen"], [[]]))
    assert answer.path == "trending" and answer.version == "trending-v1"
    assert len(answer.items) == 10 and {i.reason for i in answer.items} == {"trending"}
    # the most recent buys weigh most: the top trending item was bought in the last days
    recent = {e["item_id"] for e in events[400:600]}
    assert answer.items[0].item_id in recent

    first = purchase("first-1", "brand-new-user", events[0]["item_id"], events[600]["ts"])
    [rec] = harness.buy([first])
    assert rec["model_version"] != "trending-v1"
    assert len(rec["items"]) == 10
    assert events[0]["item_id"] not in {i["item_id"] for i in rec["items"]}


def test_withdrawn_consent_gets_only_non_personalised_items(
    harness: Harness, shop: SyntheticDataset
) -> None:
    events = events_of(shop)
    harness.buy(events[:300])
    user = events[299]["user_id"]
    ts = events[299]["ts"]
    pref = {
        "event_id": "p1",
        "user_id": user,
        "kind": "consent_withdrawn",
        "item_id": None,
        "value": None,
        "ts": ts + 1,
    }
    harness.prefer([pref])
    [rec] = harness.buy([purchase("after-withdrawal", user, events[5]["item_id"], ts + 2)])
    assert rec["model_version"] == "trending-v1"
    assert {i["reason"].partition(";")[0] for i in rec["items"]} == {"trending"}
    other = next(e for e in events[300:] if e["user_id"] != user)
    [rec] = harness.buy([other])
    assert rec["model_version"] != "trending-v1"  # the others stay personalised


def test_new_item_in_a_bought_category_takes_the_last_slot(
    harness: Harness, shop: SyntheticDataset
) -> None:
    events = events_of(shop)
    harness.buy(events[:300])
    ev = events[300]
    meta = {p["item_id"]: p for p in shop.products}
    category = meta[ev["item_id"]]["category"]
    harness.catalog([product("brand-new-item", ev["ts"], category=category, price=9.5, stock=3)])
    [rec] = harness.buy([ev])
    last = rec["items"][-1]
    assert last["item_id"] == "brand-new-item"
    assert last["reason"] == f"new_in_category:{category[0]}"
    assert len(rec["items"]) == 10


def test_business_rules_apply_to_model_output(harness: Harness, shop: SyntheticDataset) -> None:
    events = events_of(shop)
    recs = harness.buy(events[:200])
    top = recs[-1]["items"][0]["item_id"]
    ts = events[199]["ts"]
    meta = {p["item_id"]: p for p in shop.products}
    sold_out = {**meta[top], "stock": 0, "ts": ts}
    harness.catalog([sold_out])
    user = events[199]["user_id"]
    [rec] = harness.buy([purchase("again", user, events[3]["item_id"], ts + 1)])
    assert top not in {i["item_id"] for i in rec["items"]}


def test_rejected_versions_keep_the_old_one(
    harness: Harness, published: dict[str, Any], tmp_path: Path
) -> None:
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint")
    before = harness.holder.current
    ok = harness.run(harness.holder.offer({**published, "version": "v-bad", "uri": str(bad)}))
    assert not ok and harness.holder.current is before
    assert harness.holder.rejected[-1][0] == "v-bad"
    assert harness.holder.take_counts() == {"model_rejected": 1}


def test_a_trend_model_serves_what_sells_now(
    redis_url: str, shop: SyntheticDataset, tmp_path: Path
) -> None:
    split = leave_one_out(from_dataset(shop))
    config = SASRecConfig(
        hidden=16, epochs=2, batch_size=64, progress=False, threads=1, trend_days=7.0
    )
    model = SASRec(config).fit(split.train, split.valid)
    model.use_trend_weight(20.0)  # the trend all but decides, so the test can see it
    assert isinstance(model.net, SASRecNet)
    # the item the checkpoint's trend ranks lowest: only the stream can make it sell
    coldest = int(model.net.trend[1:].argmin()) + 1
    item = model.item_ids[coldest - 1]
    update = Registry(tmp_path).publish(model.to_checkpoint(), "sasrec").to_record()
    settings = Settings(
        pseudonym_secret="s", redis_url=redis_url, product_cache_s=0, trend_refresh_s=0
    )
    h = Harness(settings, redis_url, update)
    try:
        h.catalog(list(shop.products))
        events = events_of(shop)
        h.buy(events[:300])
        now = max(e["ts"] for e in events) + 86_400_000
        h.buy([purchase(f"rush-{n}", f"rusher-{n}", item, now + n) for n in range(40)])
        basket = [i for i in dict.fromkeys(e["item_id"] for e in events) if i != item][:4]
        recs = h.buy(
            [purchase(f"mine-{n}", "shopper", i, now + 1000 + n) for n, i in enumerate(basket)]
        )
        assert recs[-1]["items"][0]["item_id"] == item
        served = h.holder.current
        assert served is not None and isinstance(served.model.net, SASRecNet)
        assert int(served.model.net.trend.argmax()) == coldest  # reread from the stream
    finally:
        h.run(h.store.close())
        h.loop.close()
