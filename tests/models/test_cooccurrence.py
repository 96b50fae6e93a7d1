"""The co-occurrence baseline: ranking rules and the incremental reference model."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from models.cooccurrence import (
    REASON_COOC,
    REASON_POPULAR,
    CoOccurrenceRecommender,
    cosine,
    rank,
    recent_anchors,
)

histories = st.lists(st.integers(0, 30), max_size=40)
neighbour_lists = st.dictionaries(
    st.integers(0, 30),
    st.lists(
        st.tuples(st.integers(0, 30), st.floats(0.01, 100)), max_size=15, unique_by=lambda p: p[0]
    ),
    max_size=31,
)
popular = st.lists(
    st.tuples(st.integers(0, 30), st.floats(1, 100)), max_size=31, unique_by=lambda p: p[0]
)


@given(histories, neighbour_lists, popular, st.integers(1, 12), st.integers(1, 5))
def test_rank_never_returns_history_and_respects_k(
    history: list[int],
    nb: dict[int, list[tuple[int, float]]],
    top: list[tuple[int, float]],
    k: int,
    anchors: int,
) -> None:
    pop = {i: c for i, c in top}
    out = rank(history, cosine(nb, pop), sorted(top, key=lambda p: -p[1]), k, anchors)
    items = [r.item for r in out]
    assert len(items) <= k
    assert len(set(items)) == len(items)
    assert not set(items) & set(history)
    # Scores never increase down the list, and a popular filler never beats a neighbour.
    assert all(a.score >= b.score for a, b in itertools.pairwise(out))
    kinds = [r.reason for r in out]
    assert kinds == sorted(kinds, key=lambda r: r == REASON_POPULAR)
    for r in out:
        assert (r.anchor is not None) == (r.reason == REASON_COOC)
        if r.anchor is not None:
            assert r.anchor in recent_anchors(history, anchors)


def test_fills_with_popular_items_when_no_neighbours() -> None:
    out = rank([1], {}, [(5, 10.0), (1, 9.0), (6, 8.0)], 2)
    assert [(r.item, r.reason) for r in out] == [(5, REASON_POPULAR), (6, REASON_POPULAR)]


def test_recent_anchors_weigh_more() -> None:
    sim = {1: [(10, 1.0)], 2: [(20, 1.0)]}
    out = rank([1, 2], sim, [], 2)
    assert [r.item for r in out] == [20, 10]
    assert out[0].anchor == 2


def test_incremental_model_learns_a_sequential_pattern() -> None:
    m = CoOccurrenceRecommender[str](window=1)
    for u in range(50):
        for item in ("a", "b", "c"):
            m.learn_one(f"u{u}", item)
    m.learn_one("new", "a")
    assert m.recommend("new", 1)[0].item == "b"
    assert m.pairs["a"]["b"] == 50 and m.pairs["a"]["c"] == 0  # window 1: only neighbours
    assert m.popularity["a"] == 51


def test_a_lone_popular_filler_never_rounds_above_the_last_neighbour() -> None:
    # floor * count / total came out one ulp above floor for these numbers.
    out = rank([1, 0, 2], {1: [(4, 0.01)]}, [(3, 2.4375)], 2, 3)
    assert [r.item for r in out] == [4, 3]
    assert out[0].score >= out[1].score
