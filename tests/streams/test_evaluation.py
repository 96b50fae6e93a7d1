"""Online evaluation on a real Redis: purchases judged against the list shown before them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from models.datasets import SyntheticDataset, generate
from streams import keys
from streams.evaluation import summarise
from streams.pseudonym import Pseudonymiser
from streams.settings import Settings
from tests.streams.harness import InProcess

pytestmark = pytest.mark.integration

WINDOW_S = 3600


@pytest.fixture(scope="module")
def shop() -> SyntheticDataset:
    return generate(n_users=100, n_items=80, events_per_user=(5, 10), seed=4)


@pytest.fixture
def worker(
    redis_client: redis.Redis, redis_url: str, shop: SyntheticDataset
) -> Iterator[InProcess]:
    s = Settings(
        pseudonym_secret="s",
        redis_url=redis_url,
        product_cache_s=0,
        segments_enabled=False,
        attribution_window_s=WINDOW_S,
    )
    w = InProcess(s, redis_url, 0)
    assert w.proc.evaluator is not None
    w.proc.evaluator.exposure_every_s = 0.0  # written with every batch, to read it at once
    w.send(s.topic_catalog, "Product", list(shop.products))
    # Other shoppers first, so that the co-occurrence lists have something to offer.
    w.send(s.topic_purchases, "Purchase", [r for k, r in shop.events if k == "purchase"])
    yield w
    w.close()


def buy(w: InProcess, n: int, item: str, ts_s: int) -> list[str]:
    """One purchase by the test user; the recommended item ids it produced."""
    record = {
        "event_id": f"eval-{n}",
        "user_id": "shopper",
        "item_id": item,
        "quantity": 1,
        "price": 9.5,
        "currency": "EUR",
        "ts": ts_s * 1000,
        "session_id": None,
    }
    outs = w.send(w.settings.topic_purchases, "Purchase", [record])
    assert all(o.topic != w.settings.topic_dead_letter for o in outs)
    recs = [
        w.codec.decode("Recommendation", o.value)
        for o in outs
        if o.topic == w.settings.topic_recommendations
    ]
    return [i["item_id"] for r in recs for i in r["items"]]


def counts(client: redis.Redis) -> dict[str, Any]:
    return summarise(client.hgetall(keys.EVALUATION))  # type: ignore[arg-type]


def test_purchases_are_judged_against_the_list_shown_within_the_window(
    worker: InProcess, redis_client: redis.Redis, shop: SyntheticDataset
) -> None:
    start = counts(redis_client).get("version", {}).get("cooccurrence-v1", {})
    before, hits0, rr0 = (start.get(k, 0.0) for k in ("n", "hits", "rr"))
    t0 = 1_710_000_000
    shown = buy(worker, 0, "i0", t0)
    assert len(shown) >= 3
    # The third item of that list: a hit at rank 3.
    next_list = buy(worker, 1, shown[2], t0 + 60)
    after = counts(redis_client)["version"]["cooccurrence-v1"]
    assert after["n"] == before + 1
    assert after["hits"] == hits0 + 1 and after["rr"] == pytest.approx(rr0 + 1 / 3)
    hits_before, rr_before = after["hits"], after["rr"]

    # An item not in the list just shown: a miss.
    missing = next(p["item_id"] for p in shop.products if p["item_id"] not in next_list)
    later_list = buy(worker, 2, missing, t0 + 120)
    after = counts(redis_client)["version"]["cooccurrence-v1"]
    assert after["n"] == before + 2 and after["hits"] == hits_before
    assert after["rr"] == pytest.approx(rr_before)

    # Past the window, the last list no longer speaks for the purchase.
    buy(worker, 3, later_list[0], t0 + 120 + WINDOW_S + 1)
    assert counts(redis_client)["version"]["cooccurrence-v1"]["n"] == before + 2
    assert counts(redis_client)["arm"]["control"]["n"] >= 2

    # Exposure counts each item shown.
    assert (redis_client.zscore(keys.EXPOSURE, shown[2]) or 0) >= 1

    # A redelivered purchase (same offset) is not judged again.
    worker.offset -= 1
    buy(worker, 3, later_list[0], t0 + 120 + WINDOW_S + 1)
    assert counts(redis_client)["version"]["cooccurrence-v1"]["n"] == before + 2


def test_erasure_forgets_the_list_and_withdrawn_users_are_not_judged(
    worker: InProcess, redis_client: redis.Redis
) -> None:
    s = worker.settings
    uid = Pseudonymiser(s.secret_bytes())("shopper")
    t0 = 1_710_000_000
    buy(worker, 0, "i0", t0)
    assert redis_client.exists(keys.last_recommendation(uid))
    assert redis_client.ttl(keys.last_recommendation(uid)) <= WINDOW_S

    def prefer(kind: str, n: int) -> None:
        worker.send(
            s.topic_preferences,
            "Preference",
            [
                {
                    "event_id": f"pref-{n}",
                    "user_id": "shopper",
                    "kind": kind,
                    "item_id": None,
                    "value": None,
                    "ts": (t0 + n) * 1000,
                }
            ],
        )

    prefer("erase", 1)
    assert not redis_client.exists(keys.last_recommendation(uid))

    prefer("consent_withdrawn", 2)
    n = counts(redis_client)["version"]["cooccurrence-v1"]["n"]
    buy(worker, 10, "i1", t0 + 10)
    buy(worker, 11, "i2", t0 + 20)
    assert counts(redis_client)["version"]["cooccurrence-v1"]["n"] == n
    assert not redis_client.exists(keys.last_recommendation(uid))
