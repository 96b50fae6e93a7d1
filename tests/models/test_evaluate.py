"""The evaluator on hand-built data with scorers whose right answers are known, and on ml-100k."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
import pytest

from models.base import Recommender
from models.data import Catalogue, Histories, Interactions, from_dataset, from_lists
from models.datasets import available, load
from models.evaluate import EvalReport, evaluate, sample_unseen
from models.split import EvalSet, Split, leave_one_out, make_split

N_ITEMS = 20
SEQUENCES = [
    [1, 2, 3, 4],
    [5, 6, 7, 8, 9],
    [2, 4, 6, 8],
    [10, 11, 12],
    [1, 3, 5, 7, 13],
    [14, 15, 16],
]


def tiny(sequences: Sequence[Sequence[int]], n_items: int = N_ITEMS) -> Interactions:
    cat = Catalogue(
        tuple(f"i{j}" for j in range(1, n_items + 1)),
        np.zeros((n_items + 1, 1), np.int32),
        (),
        np.full(n_items + 1, np.nan, np.float32),
    )
    h = from_lists(sequences)
    users = tuple(f"u{u}" for u in range(len(sequences)))
    return Interactions("tiny", users, cat, h, np.full(len(h.items), np.nan, np.float32))


@pytest.fixture
def split() -> Split:
    return leave_one_out(tiny(SEQUENCES))


class Scorer:
    """Scores from a fixed table: ``base`` everywhere, ``target`` on each row's targets."""

    name = "scorer"

    def __init__(
        self, evalset: EvalSet, target: float = 1.0, base: float = 0.0, seen: float | None = None
    ) -> None:
        self.targets = {
            int(u): evalset.targets.sequence(i) for i, u in enumerate(evalset.inputs.users)
        }
        self.target, self.base, self.seen = target, base, seen
        self.calls = 0

    def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        return self

    def score(self, histories: Histories) -> np.ndarray:
        self.calls += 1
        out = np.full((len(histories), N_ITEMS + 1), self.base, np.float32)
        for i, u in enumerate(histories.users):
            if self.seen is not None:
                out[i, histories.sequence(i)] = self.seen
            out[i, self.targets[int(u)]] = self.target
        return out


class Popularity:
    """Training counts for every user: the simplest real model."""

    name = "popularity"

    def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        n = train.catalogue.n_items
        self.counts = np.bincount(train.histories.items, minlength=n + 1).astype(np.float32)
        return self

    def score(self, histories: Histories) -> np.ndarray:
        return np.tile(self.counts, (len(histories), 1))


def test_the_oracle_scores_one_everywhere(split: Split) -> None:
    model = Scorer(split.test)
    assert isinstance(model, Recommender)
    report = evaluate(model, split.test, split.train, k=3)
    for key in ("HR@3", "Recall@3", "NDCG@3", "MRR", "AUC"):
        assert report[key] == 1.0, key
    assert report["Precision@3"] == pytest.approx(1 / 3)
    assert (report.n_users, report.n_skipped, report.ks) == (len(SEQUENCES), 0, (3,))
    assert set(report.metrics) == {
        "HR@3", "Recall@3", "Precision@3", "NDCG@3", "MRR", "AUC", "Coverage@3", "Novelty@3"
    }  # fmt: skip


def test_a_reversed_scorer_and_a_constant_one_get_nothing(split: Split) -> None:
    for model in (Scorer(split.test, target=-1.0), Scorer(split.test, target=0.0)):
        report = evaluate(model, split.test, split.train, k=3)
        assert report["HR@3"] == report["NDCG@3"] == report["AUC"] == 0.0
        # ranked last among the items the user has not seen (ties go against the target)
        n_candidates = N_ITEMS - split.test.inputs.lengths()
        assert report["MRR"] == pytest.approx(np.mean(1 / n_candidates))


def test_seen_items_are_never_recommended(split: Split) -> None:
    # seen items outscore the target, which outscores everything else
    model = Scorer(split.test, target=5.0, seen=10.0)
    report = evaluate(model, split.test, split.train, k=1)
    assert report["HR@1"] == 1.0
    distinct_targets = len(set(split.test.targets.items.tolist()))
    assert report["Coverage@1"] == distinct_targets / N_ITEMS
    assert evaluate(model, split.test, split.train, k=1, exclude_seen=False)["HR@1"] == 0.0


def test_a_target_already_seen_is_dropped_and_its_row_skipped() -> None:
    data = leave_one_out(tiny([[1, 2, 3, 1], [4, 5, 6, 7]]))
    model = Scorer(data.test)
    report = evaluate(model, data.test, data.train, k=3)
    assert (report.n_users, report.n_skipped) == (1, 1)
    kept = evaluate(model, data.test, data.train, k=3, exclude_seen=False)
    assert (kept.n_users, kept.n_skipped, kept["HR@3"]) == (2, 0, 1.0)


def test_several_targets_per_row_like_a_temporal_window() -> None:
    train = tiny([[1, 2], [3]])
    window = EvalSet(from_lists([[1, 2], [3]]), from_lists([[4, 5, 6], [7, 8]]))
    report = evaluate(Scorer(window), window, train, k=3)
    assert report["Recall@3"] == report["NDCG@3"] == report["AUC"] == 1.0
    assert report["Precision@3"] == pytest.approx((3 / 3 + 2 / 3) / 2)
    # one target on top, the others tied with every candidate: ranked after all of them
    partial = Scorer(window)
    partial.targets = {0: np.array([4]), 1: np.array([7])}
    report = evaluate(partial, window, train, k=3)
    assert report["HR@3"] == 1.0
    assert report["Recall@3"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    # row 0: item 4 beats 15 others, items 5 and 6 beat none; row 1: 17 of 2 x 17 pairs
    assert report["AUC"] == pytest.approx((15 / 45 + 17 / 34) / 2)


def test_several_cut_offs_come_from_one_scoring_pass(split: Split) -> None:
    model = Popularity().fit(split.train)
    calls = Scorer(split.test)
    report = evaluate(calls, split.test, split.train, k=(1, 5, 10), batch_size=4)
    assert calls.calls == 2  # 6 rows in batches of 4
    popular = evaluate(model, split.test, split.train, k=(10, 1, 5))
    assert popular.ks == (1, 5, 10)
    hits = [popular[f"HR@{k}"] for k in popular.ks]
    assert hits == sorted(hits)
    assert report["HR@1"] == 1.0
    one_batch = evaluate(model, split.test, split.train, k=5, batch_size=1024)
    small_batches = evaluate(model, split.test, split.train, k=5, batch_size=1)
    for key, value in one_batch.metrics.items():
        assert small_batches[key] == pytest.approx(value), key


def test_sampled_metrics_are_prefixed_and_seeded(split: Split) -> None:
    model = Popularity().fit(split.train)
    report = evaluate(model, split.test, split.train, k=3, sampled=5, seed=7)
    sampled = {key for key in report.metrics if key.startswith("sampled5:")}
    assert sampled == {
        f"sampled5:{m}" for m in ("HR@3", "Recall@3", "Precision@3", "NDCG@3", "MRR", "AUC")
    }
    assert all(":" not in key for key in set(report.metrics) - sampled)
    assert (
        report.metrics == evaluate(model, split.test, split.train, k=3, sampled=5, seed=7).metrics
    )
    oracle = evaluate(Scorer(split.test), split.test, split.train, k=3, sampled=5)
    constant = evaluate(Scorer(split.test, target=0.0), split.test, split.train, k=3, sampled=5)
    assert oracle["sampled5:HR@3"] == oracle["sampled5:AUC"] == 1.0
    assert constant["sampled5:HR@3"] == constant["sampled5:AUC"] == 0.0
    assert constant["sampled5:MRR"] == pytest.approx(1 / 6)  # last of 1 target + 5 negatives


def test_bad_scores_are_refused(split: Split) -> None:
    class Broken(Popularity):
        name = "broken"

        def score(self, histories: Histories) -> np.ndarray:
            out = super().score(histories)
            out[0, 3] = np.nan
            return out

    with pytest.raises(ValueError, match=r"broken\.score returned NaN"):
        evaluate(Broken().fit(split.train), split.test, split.train)
    with pytest.raises(ValueError, match=r"expected \(6, 21\)"):
        evaluate(Popularity().fit(tiny([[1, 2]], n_items=5)), split.test, split.train)
    with pytest.raises(ValueError, match="k must be"):
        evaluate(Popularity().fit(split.train), split.test, split.train, k=0)


def test_report_flattens_for_checkpoints(split: Split) -> None:
    report = evaluate(Popularity().fit(split.train), split.test, split.train, k=3)
    assert isinstance(report, EvalReport)
    flat = report.as_dict()
    assert flat["users"] == 6.0 and flat["HR@3"] == report["HR@3"]
    assert flat["score_seconds"] >= 0 and 0 <= report.overhead <= 1


def test_sampled_negatives_are_distinct_unseen_and_uniform() -> None:
    rng = np.random.default_rng(1)
    n_rows, n_items = 3000, 30
    width = n_items + 1
    excluded = np.sort((np.arange(n_rows)[:, None] * width + np.arange(1, 11)).ravel())
    for size in (5, 15, 25):  # room to spare, crowded, more than there is
        out = sample_unseen(rng, excluded, n_rows, n_items, size)
        real = out[out != 0]
        assert real.min() >= 11 and real.max() <= n_items
        assert all(len(set(r[r != 0].tolist())) == (r != 0).sum() for r in out[:50])
        assert ((out != 0).sum(axis=1) == min(size, 20)).all()
        counts = np.bincount(real, minlength=width)[11:]
        expected = n_rows * min(size, 20) / 20
        assert np.abs(counts - expected).max() < 6 * np.sqrt(expected)


@pytest.mark.skipif("ml-100k" not in available(), reason="ml-100k is not in /work/shared/data")
def test_popularity_on_ml_100k_lands_between_zero_and_one() -> None:
    split = make_split(from_dataset(load("ml-100k")))
    model = Popularity().fit(split.train)
    report = evaluate(model, split.test, split.train, k=10)
    assert 0.0 < report["HR@10"] < 1.0
    assert report.n_users == len(split.test) and report.n_skipped == 0
    assert 0.5 < report["AUC"] < 1.0  # popularity beats chance on MovieLens

    class Unpopular(Popularity):
        def score(self, histories: Histories) -> np.ndarray:
            return -super().score(histories)

    niche = evaluate(Unpopular().fit(split.train), split.test, split.train, k=10)
    assert niche["Novelty@10"] > report["Novelty@10"]
