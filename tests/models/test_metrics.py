"""Ranking metrics: pessimistic ranks against a brute-force sort, bounds, extremes, monotonicity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from models.metrics import (
    NO_RANK,
    PAD_ITEM,
    auc,
    coverage,
    hit_rate,
    mrr,
    ndcg,
    novelty,
    pessimistic_ranks,
    precision,
    recall,
    self_information,
    top_items,
)


@st.composite
def rankings(draw: st.DrawFn, max_rows: int = 4, max_candidates: int = 25) -> dict:
    """Rows of tie-heavy integer scores, each with distinct relevant columns (padded)."""
    n = draw(st.integers(1, max_rows))
    c = draw(st.integers(2, max_candidates))
    levels = draw(st.integers(1, 6))  # few distinct values, so ties are common
    scores = np.array(
        draw(st.lists(st.integers(0, levels - 1), min_size=n * c, max_size=n * c)), np.float32
    ).reshape(n, c)
    rows = [
        draw(st.lists(st.integers(0, c - 1), min_size=1, max_size=c, unique=True)) for _ in range(n)
    ]
    m = max(len(r) for r in rows) + draw(st.integers(0, 2))
    relevant = np.full((n, m), NO_RANK, dtype=np.int64)
    for i, cols in enumerate(rows):
        slots = draw(st.permutations(range(m)))[: len(cols)]
        relevant[i, sorted(slots)] = cols  # padding may sit anywhere in the row
    return {"scores": scores, "relevant": relevant}


def brute_ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Sort every row by (-score, relevant after non-relevant, order in ``relevant``)."""
    out = np.full(relevant.shape, NO_RANK)
    for i, row in enumerate(scores):
        cols = [int(c) for c in relevant[i] if c >= 0]
        key = {
            c: (-float(row[c]), c in cols, cols.index(c) if c in cols else 0)
            for c in range(len(row))
        }
        position = {c: p for p, c in enumerate(sorted(key, key=key.__getitem__))}
        for j, c in enumerate(relevant[i]):
            if c >= 0:
                out[i, j] = position[int(c)]
    return out


def all_metrics(ranks: np.ndarray, n_candidates: np.ndarray, k: int) -> dict[str, np.ndarray]:
    return {
        "hr": hit_rate(ranks, k),
        "recall": recall(ranks, k),
        "precision": precision(ranks, k),
        "ndcg": ndcg(ranks, k),
        "mrr": mrr(ranks),
        "auc": auc(ranks, n_candidates),
    }


@given(rankings())
def test_pessimistic_ranks_match_a_brute_force_sort(case: dict) -> None:
    got = pessimistic_ranks(case["scores"], case["relevant"])
    np.testing.assert_array_equal(got, brute_ranks(case["scores"], case["relevant"]))


@given(rankings(), st.data())
def test_masked_columns_are_not_candidates(case: dict, data: st.DataObject) -> None:
    scores, relevant = case["scores"], case["relevant"]
    n, c = scores.shape
    # mask some non-relevant columns, and give some relevant items -inf themselves
    flags = st.lists(st.booleans(), min_size=n * c, max_size=n * c)
    rel_mask = np.zeros((n, c), dtype=bool)
    for i in range(n):
        rel_mask[i, relevant[i][relevant[i] >= 0]] = True
    masked = np.array(data.draw(flags)).reshape(n, c) & ~rel_mask
    sunk = np.array(data.draw(flags)).reshape(n, c) & rel_mask
    full = np.where(masked | sunk, -np.inf, scores).astype(np.float32)
    got = pessimistic_ranks(full, relevant, c - masked.sum(axis=1))
    for i in range(n):
        keep = np.flatnonzero(~masked[i])  # the ranking restricted to real candidates
        remap = {int(col): j for j, col in enumerate(keep)}
        rel = np.array([[remap[int(col)] if col >= 0 else -1 for col in relevant[i]]])
        expected = brute_ranks(full[i : i + 1, keep], rel)
        np.testing.assert_array_equal(got[i : i + 1], expected)


@given(rankings(), st.integers(1, 30))
def test_metrics_stay_in_bounds(case: dict, k: int) -> None:
    ranks = pessimistic_ranks(case["scores"], case["relevant"])
    n_candidates = np.full(len(ranks), case["scores"].shape[1])
    for name, values in all_metrics(ranks, n_candidates, k).items():
        n_rel = (ranks >= 0).sum(axis=1)
        defined = values[~np.isnan(values)]
        assert ((defined >= 0) & (defined <= 1 + 1e-12)).all(), name
        if name == "auc":  # undefined exactly when every candidate is relevant
            np.testing.assert_array_equal(np.isnan(values), n_rel == n_candidates)
        else:
            assert not np.isnan(values).any(), name


@st.composite
def rank_rows(draw: st.DrawFn) -> tuple[int, int]:
    c = draw(st.integers(2, 60))
    return c, draw(st.integers(1, c))


@given(rank_rows(), st.integers(1, 20))
def test_a_perfect_ranking_scores_one(row: tuple[int, int], k: int) -> None:
    c, n_rel = row
    ranks = np.arange(n_rel)[None, :]
    got = all_metrics(ranks, np.array([c]), k)
    for name in ("hr", "ndcg", "mrr"):
        assert got[name][0] == pytest.approx(1.0), name
    assert got["auc"][0] == 1.0 or (n_rel == c and np.isnan(got["auc"][0]))
    assert got["recall"][0] == pytest.approx(min(n_rel, k) / n_rel)
    assert got["precision"][0] == pytest.approx(min(n_rel, k) / k)


@given(rank_rows(), st.integers(1, 20))
def test_the_worst_ranking_scores_zero(row: tuple[int, int], k: int) -> None:
    c, n_rel = row
    assume(n_rel < c)
    ranks = np.arange(c - n_rel, c)[None, :]
    got = all_metrics(ranks, np.array([c]), k)
    assert got["auc"][0] == 0.0
    assert got["mrr"][0] == pytest.approx(1 / (c - n_rel + 1))  # never 0: no cut-off
    if c - n_rel >= k:
        for name in ("hr", "recall", "precision", "ndcg"):
            assert got[name][0] == 0.0, name


@given(st.integers(2, 40), st.integers(1, 5), st.integers(1, 20))
def test_a_constant_model_gets_no_credit_from_ties(c: int, n_rel: int, k: int) -> None:
    assume(n_rel < c)
    relevant = np.arange(n_rel)[None, :]  # the first columns, which a tie-break would favour
    ranks = pessimistic_ranks(np.ones((1, c), np.float32), relevant)
    np.testing.assert_array_equal(ranks, np.arange(c - n_rel, c)[None, :])
    assert auc(ranks, np.array([c]))[0] == 0.0
    assert hit_rate(ranks, k)[0] == float(k > c - n_rel)


@given(rankings(), st.data())
def test_raising_a_relevant_score_never_lowers_a_metric(case: dict, data: st.DataObject) -> None:
    scores, relevant = case["scores"], case["relevant"]
    n, c = scores.shape
    i = data.draw(st.integers(0, n - 1))
    col = data.draw(st.sampled_from([int(x) for x in relevant[i] if x >= 0]))
    raised = scores.copy()
    raised[i, col] += data.draw(st.integers(0, 7))
    k = data.draw(st.integers(1, c))
    cand = np.full(n, c)
    before = all_metrics(pessimistic_ranks(scores, relevant), cand, k)
    after = all_metrics(pessimistic_ranks(raised, relevant), cand, k)
    for name in before:
        b, a = before[name][i], after[name][i]
        assert (np.isnan(b) and np.isnan(a)) or a >= b - 1e-12, name


@given(rankings(), st.integers(1, 30))
def test_ndcg_and_auc_match_their_definitions(case: dict, k: int) -> None:
    ranks = pessimistic_ranks(case["scores"], case["relevant"])
    c = case["scores"].shape[1]
    got_ndcg, got_auc = ndcg(ranks, k), auc(ranks, np.full(len(ranks), c))
    for i, row in enumerate(ranks):
        rel = {int(r) for r in row if r >= 0}
        dcg = sum(1 / math.log2(r + 2) for r in rel if r < k)
        ideal = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
        assert got_ndcg[i] == pytest.approx(dcg / ideal)
        non_rel = [p for p in range(c) if p not in rel]
        if non_rel:
            pairs = sum(r < p for r in rel for p in non_rel)
            assert got_auc[i] == pytest.approx(pairs / (len(rel) * len(non_rel)))


def test_a_row_without_relevant_items_is_refused() -> None:
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        recall(np.array([[0], [NO_RANK]]), 5)


@given(
    st.integers(1, 6),
    st.integers(1, 1500),
    st.integers(1, 25),
    st.integers(1, 50),
    st.integers(0, 2**32 - 1),
)
def test_top_items_returns_the_best_scores_in_order(
    n: int, c: int, k: int, levels: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, (n, c)).astype(np.float32)
    scores[rng.random((n, c)) < 0.2] = -np.inf
    scores[:, PAD_ITEM] = -np.inf  # as the evaluator leaves it
    top = top_items(scores, k)
    expected = -np.sort(-scores, axis=1)[:, : min(k, c)]
    np.testing.assert_array_equal(top == PAD_ITEM, expected == -np.inf)
    np.testing.assert_array_equal(np.take_along_axis(scores, top, axis=1), expected)
    for row in top:
        real = row[row != PAD_ITEM].tolist()
        assert len(set(real)) == len(real)


def test_coverage_and_novelty() -> None:
    top = np.array([[1, 2], [2, PAD_ITEM]])
    assert coverage(top, 8) == 0.25
    info = self_information(np.array([0, 6, 1, 0, 1]))  # items 2..4 count as 1 each
    assert info[2] == info[3] == info[4] > info[1] > 0
    assert novelty(top, info).tolist() == pytest.approx([(info[1] + info[2]) / 2, info[2]])
