"""Hybrid: reranking lifts it above its generators where side features carry signal."""

from __future__ import annotations

from typing import Self

import numpy as np
import pytest

from models.baselines.als import ALS, ALSConfig
from models.baselines.features import top_k
from models.baselines.hybrid import FitOnce, Hybrid, HybridConfig, merge_ranked
from models.baselines.popular import MostPopular
from models.data import Catalogue, Interactions, from_lists
from models.split import EvalSet, Split, leave_one_out
from schemas.errors import ConfigError
from tests.models.baselines.conftest import Scorer

FAST = HybridConfig(candidates=20, n_estimators=100, als=ALSConfig(factors=16, iterations=5))


def category_shop(n_users: int = 800, n_categories: int = 20, per_category: int = 15) -> Split:
    """Each user shops (90%) in one category; items within it are interchangeable.

    Nothing but the category links a user's items, so a low-rank ALS blurs the 20
    categories while the hybrid's category-affinity feature sees them exactly.
    """
    rng = np.random.default_rng(0)
    n_items = n_categories * per_category
    category_of = np.arange(n_items) % n_categories + 1  # of item number k + 1
    sequences = []
    for u in range(n_users):
        own = list(rng.permutation(np.flatnonzero(category_of == u % n_categories + 1) + 1))
        seq: list[int] = []
        for _ in range(10):
            item = int(rng.integers(1, n_items + 1)) if rng.random() < 0.1 else int(own.pop())
            if item not in seq:
                seq.append(item)
        sequences.append(seq)
    h = from_lists(sequences, times=[list(range(len(s))) for s in sequences])
    categories = np.zeros((n_items + 1, 1), np.int32)
    categories[1:, 0] = category_of
    catalogue = Catalogue(
        tuple(f"i{k}" for k in range(1, n_items + 1)),
        categories,
        tuple(f"c{c}" for c in range(1, n_categories + 1)),
        np.full(n_items + 1, np.nan, np.float32),
    )
    users = tuple(f"u{u}" for u in range(n_users))
    ratings = np.full(len(h.items), np.nan, np.float32)
    return leave_one_out(Interactions("categories", users, catalogue, h, ratings))


@pytest.fixture(scope="module")
def hybrid(shop: Split) -> Hybrid:
    return Hybrid(FAST).fit(shop.train, shop.valid)


def test_category_affinity_lifts_the_hybrid_above_plain_als(ndcg10: Scorer) -> None:
    split = category_shop()
    als = ALSConfig(factors=4, iterations=10)
    plain = ALS(als).fit(split.train)
    hybrid = Hybrid(HybridConfig(candidates=50), generators=[lambda: ALS(als)]).fit(split.train)
    assert ndcg10(hybrid, split) > 1.3 * ndcg10(plain, split)
    assert ndcg10(plain, split) > 3 * ndcg10(MostPopular().fit(split.train), split)


def test_beats_popularity_and_plain_als_on_the_planted_shop(
    hybrid: Hybrid, shop: Split, ndcg10: Scorer
) -> None:
    assert ndcg10(hybrid, shop) > ndcg10(ALS(FAST.als).fit(shop.train), shop)
    assert ndcg10(hybrid, shop) > 1.5 * ndcg10(MostPopular().fit(shop.train), shop)


def test_every_candidate_outranks_every_other_item(hybrid: Hybrid, shop: Split) -> None:
    inputs = shop.test.inputs.slice(0, 80)
    scores = hybrid.score(inputs)
    assert scores.shape == (80, shop.train.catalogue.n_items + 1)
    generator_scores = [g.score(inputs) for g in hybrid.generators]
    tops = []
    for s in generator_scores:
        masked = s.copy()
        masked[:, 0] = -np.inf
        for i in range(len(inputs)):
            masked[i, inputs.sequence(i)] = -np.inf
        tops.append(top_k(masked, FAST.candidates))
    candidates = merge_ranked(tops, FAST.candidates)
    for i in range(len(inputs)):
        others = np.setdiff1d(np.arange(1, scores.shape[1]), candidates[i])
        assert len(set(candidates[i].tolist())) == FAST.candidates
        assert scores[i, candidates[i]].min() > scores[i, others].max()
        # outside the list, the first generator's order is kept
        by_first = others[np.argsort(-generator_scores[0][i, others], kind="stable")]
        assert (np.diff(scores[i, by_first]) <= 0).all()


def test_same_seed_same_scores(hybrid: Hybrid, shop: Split) -> None:
    inputs = shop.test.inputs.slice(0, 100)
    again = Hybrid(FAST).fit(shop.train, shop.valid)
    np.testing.assert_array_equal(again.score(inputs), hybrid.score(inputs))


def test_extra_generators_join_the_features_and_names_must_differ(shop: Split) -> None:
    extended = Hybrid(FAST, extra=[MostPopular]).fit(shop.train)
    assert {"most-popular_score", "most-popular_rank"} <= set(extended.feature_names)
    assert np.isfinite(extended.score(shop.test.inputs.slice(0, 5))[:, 1:]).all()
    with pytest.raises(ConfigError, match="names must differ"):
        Hybrid(FAST, extra=[lambda: ALS(FAST.als)]).fit(shop.train)


def test_a_fit_once_generator_is_fit_without_the_held_out_end_and_kept(shop: Split) -> None:
    fits: list[tuple[int, bool]] = []

    class Counted(MostPopular):
        def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self:
            fits.append((len(train.histories.items), valid is not None))
            return super().fit(train, valid)

    model = Hybrid(FAST, extra=[FitOnce(Counted)]).fit(shop.train, shop.valid)
    rest, _ = model._hold_out(shop.train)
    assert fits == [(len(rest.histories.items), True)]  # once, on the data without its end
    assert model.generators[-1].name == "most-popular"
    assert len(rest.histories.items) < len(shop.train.histories.items)
    assert {"most-popular_score", "most-popular_rank"} <= set(model.feature_names)
    twice = Hybrid(FAST, extra=[Counted]).fit(shop.train, shop.valid)
    assert [n for n, _ in fits[1:]] == [len(rest.histories.items), len(shop.train.histories.items)]
    inputs = shop.test.inputs.slice(0, 50)
    assert np.isfinite(model.score(inputs)[:, 1:]).all()
    assert np.isfinite(twice.score(inputs)[:, 1:]).all()


def test_temporal_holdout_trains_on_the_last_time_window(shop: Split) -> None:
    model = Hybrid(HybridConfig(candidates=20, n_estimators=50, holdout="temporal"))
    rest, held = model._hold_out(shop.train)
    assert rest.histories.times.max() < held.targets.times.min()
    scores = model.fit(shop.train).score(shop.test.inputs.slice(0, 5))
    assert np.isfinite(scores[:, 1:]).all()


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="holdout_share"):
        HybridConfig(holdout_share=1.0)
    with pytest.raises(ConfigError, match="at least one"):
        Hybrid(generators=[])
    with pytest.raises(RuntimeError, match="before fit"):
        Hybrid().score(from_lists([[1]]))
