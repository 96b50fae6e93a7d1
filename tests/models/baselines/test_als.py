"""ALS: learns the planted pattern, scores histories it never saw, quietly and reproducibly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from models.baselines.als import ALS, ALSConfig
from models.baselines.popular import MostPopular
from models.data import from_lists
from models.split import Split
from schemas.errors import ConfigError
from tests.models.baselines.conftest import Scorer

SMALL = ALSConfig(factors=32, iterations=10)


@pytest.fixture(scope="module")
def als(shop: Split) -> ALS:
    with warnings.catch_warnings():
        # implicit warns about OpenBLAS threads unless the model limits them itself
        warnings.simplefilter("error")
        return ALS(SMALL).fit(shop.train)


def test_beats_popularity(als: ALS, shop: Split, ndcg10: Scorer) -> None:
    assert ndcg10(als, shop) > 1.3 * ndcg10(MostPopular().fit(shop.train), shop)


def test_scores_new_histories_from_the_history_itself(als: ALS) -> None:
    new = from_lists([[5, 17, 40], [5, 17, 41], [], [7]], users=[-1, -1, -1, 3])
    scores = als.score(new)
    assert als.item_factors is not None
    assert scores.shape == (4, als.item_factors.shape[0]) and scores.dtype == np.float32
    assert np.isfinite(scores[:, 1:]).all()
    assert not np.allclose(scores[0, 1:], scores[1, 1:])  # one item differs: scores differ
    assert not np.allclose(scores[0, 1:], scores[3, 1:])
    # the user number plays no part: only the items do
    again = als.score(from_lists([[5, 17, 40]], users=[0]))
    np.testing.assert_allclose(again[0, 1:], scores[0, 1:], rtol=1e-4, atol=1e-6)


def test_user_factor_solve_matches_training_for_training_histories(als: ALS, shop: Split) -> None:
    """Recomputed factors for the training histories score like the trained ones."""
    h = shop.train.histories.slice(0, 40)
    assert als.item_factors is not None
    fresh = als.score(h)[:, 1:]
    assert als.model is not None
    trained = als.model.user_factors[:40] @ als.item_factors[1:].T
    agree = [np.corrcoef(a, b)[0, 1] for a, b in zip(fresh, trained, strict=True)]
    assert min(agree) > 0.95


def test_same_seed_same_scores_other_seed_other_scores(als: ALS, shop: Split) -> None:
    inputs = shop.test.inputs.slice(0, 30)
    same = ALS(SMALL).fit(shop.train).score(inputs)
    other = ALS(ALSConfig(factors=32, iterations=10, seed=1)).fit(shop.train).score(inputs)
    np.testing.assert_array_equal(same, als.score(inputs))
    assert not np.allclose(other[:, 1:], same[:, 1:])


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        ALSConfig(alpha=0.0)
    with pytest.raises(RuntimeError, match="before fit"):
        ALS().score(from_lists([[1]]))
