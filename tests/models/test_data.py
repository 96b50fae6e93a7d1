"""Interactions from Datasets: vocabulary, CSR histories, repeats, side features."""

from __future__ import annotations

import numpy as np

from models.data import from_dataset, from_lists
from models.datasets import Dataset, Event, product, purchase, review


def small() -> Dataset:
    products = [
        product("a", 0, category=["toys", "lego"], price=10.0),
        product("b", 0, category=["toys"], price=2.0),
        product("c", 0),
    ]
    events: list[Event] = [
        ("purchase", purchase("1", "u", "b", 100)),
        ("purchase", purchase("2", "v", "a", 150)),
        ("purchase", purchase("3", "u", "a", 200)),
        ("review", review("4", "u", "b", 300, rating=4.0)),
        ("purchase", purchase("5", "w", "d", 400)),
    ]
    return Dataset("small", products, events, "test")


def test_vocabulary_follows_the_catalogue_then_new_items() -> None:
    data = from_dataset(small())
    assert data.catalogue.item_ids == ("a", "b", "c", "d")
    assert data.catalogue.index() == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert data.user_ids == ("u", "v", "w")


def test_first_interactions_only_by_default() -> None:
    data = from_dataset(small())
    assert data.histories.sequence(0).tolist() == [2, 1]  # the review of b is a repeat
    assert data.histories.times[:2].tolist() == [100, 200]
    kept = from_dataset(small(), repeats="keep")
    assert kept.histories.sequence(0).tolist() == [2, 1, 2]
    assert np.isnan(kept.ratings[0]) and kept.ratings[2] == 4.0


def test_side_features_are_indexed_by_item_number() -> None:
    cat = from_dataset(small()).catalogue
    assert cat.n_categories == 2
    assert sorted(cat.categories[1][cat.categories[1] > 0].tolist()) == [1, 2]
    assert cat.categories[3].tolist() == [0, 0]
    assert cat.prices[1] == 10.0 and np.isnan(cat.prices[3])
    buckets = cat.price_buckets(2)
    assert buckets[0] == 0 and buckets[3] == 0 and buckets[1] > buckets[2] > 0


def test_prefixes_windows_and_padding() -> None:
    h = from_lists([[1, 2, 3, 4], [5], []])
    assert h.padded(3).tolist() == [[2, 3, 4], [0, 0, 5], [0, 0, 0]]
    part = h.slice(1, 3)
    assert part.lengths().tolist() == [1, 0] and part.items.tolist() == [5]
    data = from_dataset(small())
    w = data.windows(np.array([0]), np.array([1]), np.array([2]))
    assert w.items.tolist() == [1] and w.users.tolist() == [0]
    t = data.truncated(np.array([1, 0, 1]))
    assert t.histories.lengths().tolist() == [1, 0, 1] and len(t.ratings) == 2
