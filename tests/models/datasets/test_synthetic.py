"""The synthetic generator: its planted truth is consistent, visible and reproducible."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict

import pytest

from models.datasets import (
    PRODUCT_FIELDS,
    PURCHASE_FIELDS,
    SyntheticDataset,
    generate,
    load,
    to_messages,
)
from models.datasets.synthetic import SPAN_MS, START_MS


@pytest.fixture(scope="module")
def shop() -> SyntheticDataset:
    return generate()


@pytest.fixture(scope="module")
def drifting() -> SyntheticDataset:
    return generate(drift_at=0.5)


def _category_mix(dataset: SyntheticDataset, events: list) -> dict[str, float]:
    counts = Counter(dataset.item_category[r["item_id"]] for _, r in events)
    total = sum(counts.values())
    return {c: n / total for c, n in counts.items()}


def _distance(a: dict[str, float], b: dict[str, float]) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in a.keys() | b.keys())


def test_shape_and_sizes(shop: SyntheticDataset) -> None:
    assert shop.users() == 2_000
    assert len(shop.products) == 500
    assert all(tuple(r) == PURCHASE_FIELDS for _, r in shop.events)
    assert all(tuple(p) == PRODUCT_FIELDS for p in shop.products)
    per_user = Counter(r["user_id"] for _, r in shop.events)
    assert min(per_user.values()) >= 5 and max(per_user.values()) <= 40
    assert len({r["event_id"] for _, r in shop.events}) == len(shop.events)
    ts = [r["ts"] for _, r in shop.events]
    assert ts == sorted(ts)
    assert ts[0] >= START_MS and ts[-1] - ts[0] > 0.8 * SPAN_MS


def test_truth_is_consistent(shop: SyntheticDataset) -> None:
    assert set(shop.segment_of) == {r["user_id"] for _, r in shop.events}
    assert set(shop.segment_of.values()) <= set(range(4))
    items = {p["item_id"] for p in shop.products}
    assert set(shop.successor) == items
    assert sorted(shop.successor.values()) == sorted(items)  # a permutation
    for item, nxt in shop.successor.items():
        assert nxt != item
        assert shop.item_category[nxt] == shop.item_category[item]
    for p in shop.products:
        assert p["category"] == [shop.item_category[p["item_id"]]]
    assert shop.drift_ts is None
    assert shop.segment_categories == shop.segment_categories_after_drift
    assert shop.truth["successor"] is shop.successor


def test_planted_patterns_are_visible(shop: SyntheticDataset) -> None:
    sequences: dict[str, list[str]] = defaultdict(list)
    for _, r in shop.events:
        sequences[r["user_id"]].append(r["item_id"])
    pairs = [(a, b) for seq in sequences.values() for a, b in itertools.pairwise(seq)]
    followed = sum(shop.successor[a] == b for a, b in pairs) / len(pairs)
    assert 0.4 < followed < 0.6

    preferred = sum(
        shop.item_category[r["item_id"]] in shop.segment_categories[shop.segment_of[r["user_id"]]]
        for _, r in shop.events
    ) / len(shop.events)
    assert preferred > 0.7

    prices: dict[int, list[float]] = defaultdict(list)
    for _, r in shop.events:
        prices[shop.segment_of[r["user_id"]]].append(r["price"])
    median = {s: statistics.median(p) for s, p in prices.items()}
    level = shop.segment_price_level
    for s in median:
        for t in median:
            if level[s] < level[t]:
                assert median[s] < median[t]


def test_deterministic_with_seed() -> None:
    a = generate(n_users=200, n_items=100, seed=7, drift_at=0.3, review_rate=0.2)
    b = generate(n_users=200, n_items=100, seed=7, drift_at=0.3, review_rate=0.2)
    assert a == b
    assert a.truth == b.truth
    assert generate(n_users=200, n_items=100, seed=8).events != a.events


def test_drift_changes_the_category_mix(shop: SyntheticDataset, drifting: SyntheticDataset) -> None:
    assert drifting.drift_ts == START_MS + SPAN_MS // 2
    cut = drifting.drift_ts
    before = [e for e in drifting.events if e[1]["ts"] < cut]
    after = [e for e in drifting.events if e[1]["ts"] >= cut]
    assert _distance(_category_mix(drifting, before), _category_mix(drifting, after)) > 0.3
    for segment, old in drifting.segment_categories.items():
        assert not set(old) & set(drifting.segment_categories_after_drift[segment])

    steady_before = [e for e in shop.events if e[1]["ts"] < cut]
    steady_after = [e for e in shop.events if e[1]["ts"] >= cut]
    assert _distance(_category_mix(shop, steady_before), _category_mix(shop, steady_after)) < 0.1


def test_reviews_follow_their_purchases() -> None:
    dataset = generate(n_users=300, review_rate=0.3)
    purchases = {r["event_id"]: r for kind, r in dataset.events if kind == "purchase"}
    reviews = [r for kind, r in dataset.events if kind == "review"]
    assert 0.2 < len(reviews) / len(purchases) < 0.4
    for r in reviews:
        bought = purchases[r["event_id"].removesuffix(":review")]
        assert (bought["user_id"], bought["item_id"]) == (r["user_id"], r["item_id"])
        assert r["ts"] > bought["ts"]
        assert r["rating"] in {1.0, 2.0, 3.0, 4.0, 5.0}


def test_load_by_name_with_limit(shop: SyntheticDataset) -> None:
    small = load("synthetic", limit=100)
    assert isinstance(small, SyntheticDataset)
    assert small.events == shop.events[:100]
    assert small.segment_of == shop.segment_of


@pytest.mark.parametrize(
    "kwargs",
    [{"events_per_user": (0, 3)}, {"n_items": 5}, {"drift_at": 1.0}, {"n_segments": 0}],
)
def test_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate(**kwargs)


def test_records_round_trip_through_the_avro_contracts() -> None:
    codec_module = pytest.importorskip("schemas.codec", reason="schemas.codec not importable")
    codec = codec_module.Codec()
    dataset = generate(n_users=50, review_rate=0.5)
    names = {"product": "Product", "purchase": "Purchase", "review": "Review"}
    for kind, _, record in to_messages(dataset):
        assert codec.decode(names[kind], codec.encode(names[kind], record)) == record
