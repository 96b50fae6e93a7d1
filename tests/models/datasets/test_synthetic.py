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
from models.datasets.synthetic import DAY_MS, SPAN_MS, START_MS


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
    [
        {"events_per_user": (0, 3)},
        {"n_items": 5},
        {"drift_at": 1.0},
        {"n_segments": 0},
        {"new_items": 10},
        {"wave": 10},
        {"drift_at": 0.5, "wave": -1},
        {"active_days": 1},
        {"active_days": 31},
    ],
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


def _before(shop: SyntheticDataset) -> list:
    assert shop.drift_ts is not None
    return [e for e in shop.events if e[1]["ts"] < shop.drift_ts]


def test_released_items_sell_only_from_the_drift_and_change_nothing_before() -> None:
    plain = generate(n_users=400, drift_at=0.5, seed=3)
    shop = generate(n_users=400, drift_at=0.5, seed=3, new_items=40)
    assert shop.drift_ts is not None
    assert _before(shop) == _before(plain)
    assert shop.products[: len(plain.products)] == plain.products
    released = set(shop.released)
    assert len(released) == 40 and not released & {p["item_id"] for p in plain.products}
    assert all(p["ts"] == shop.drift_ts for p in shop.products if p["item_id"] in released)
    after = [r for k, r in shop.events if k == "purchase" and r["ts"] >= shop.drift_ts]
    sold = [r for r in after if r["item_id"] in released]
    assert 0.05 < len(sold) / len(after) < 0.5  # they sell well, but not alone
    assert all(shop.item_category[i] in {f"c{c}" for c in range(10)} for i in released)


def test_a_wave_of_users_from_the_smallest_segment_joins_at_the_drift() -> None:
    plain = generate(n_users=400, drift_at=0.5, seed=3)
    shop = generate(n_users=400, drift_at=0.5, seed=3, wave=100)
    assert shop.drift_ts is not None
    assert _before(shop) == _before(plain)
    sizes = Counter(plain.segment_of.values())
    assert shop.wave_segment == min(sizes, key=lambda k: sizes[k])
    wave = {f"u{u}" for u in range(400, 500)}
    assert {shop.segment_of[u] for u in wave} == {shop.wave_segment}
    first: dict[str, int] = {}
    for _, r in shop.events:
        first.setdefault(r["user_id"], r["ts"])
    assert set(first) >= wave
    assert all(shop.drift_ts <= first[u] < shop.drift_ts + DAY_MS for u in wave)


def test_without_shifting_categories_only_the_injected_drift_changes() -> None:
    shop = generate(n_users=200, drift_at=0.5, seed=3, shift_categories=False, price_drift=1.2)
    assert shop.segment_categories == shop.segment_categories_after_drift
    assert "shift_categories=False" in shop.source


def test_active_days_bound_each_users_shopping_and_steady_the_arrivals() -> None:
    shop = generate(n_users=3000, seed=4, active_days=5)
    times: dict[str, list[int]] = defaultdict(list)
    for _, r in shop.events:
        times[r["user_id"]].append(r["ts"])
    assert all(max(t) - min(t) <= 5 * DAY_MS for t in times.values())
    joined = Counter((min(t) - START_MS) // DAY_MS for t in times.values())
    # Users join (buy for the first time) at a steady rate over the first 25 days: 120
    # a day on average.
    assert all(80 <= joined[d] <= 160 for d in range(25)), joined
    assert sum(joined[d] for d in range(25, 30)) <= 10
    assert "active_days=5" in shop.source
