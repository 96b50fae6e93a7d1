"""The hybrid's item and context features, checked on a shop small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.baselines.features import CONTEXT_FEATURES, ItemStats, top_k
from models.data import Catalogue, Interactions, from_lists
from models.trend import DAY_MS

# Items 1, 2 in category 1 ("toys"); item 3 in 1 and 2 ("toys", "lego"); item 4 in none.
CATALOGUE = Catalogue(
    ("a", "b", "c", "d"),
    np.array([[0, 0], [1, 0], [1, 0], [1, 2], [0, 0]], np.int32),
    ("toys", "lego"),
    np.array([np.nan, 10.0, 20.0, 40.0, np.nan], np.float32),
)
TRAIN = Interactions(
    "t",
    ("u", "v"),
    CATALOGUE,
    from_lists([[1, 2], [3]], times=[[0, DAY_MS], [3 * DAY_MS]]),
    np.array([np.nan, 4.0, 2.0], np.float32),
)


def feature(x: np.ndarray, name: str) -> np.ndarray:
    return x[..., CONTEXT_FEATURES.index(name)]


def test_context_features_by_hand() -> None:
    stats = ItemStats.of(TRAIN, half_life_days=1.0)
    history = from_lists([[1, 3]], times=[[0, 2 * DAY_MS]])
    x = stats.features(history, np.array([[2, 4, 3]]))
    assert x.shape == (1, 3, len(CONTEXT_FEATURES)) and x.dtype == np.float32
    np.testing.assert_allclose(feature(x, "pop_all")[0], np.log1p([1, 0, 1]))
    np.testing.assert_allclose(feature(x, "pop_recent")[0], np.log1p([0.25, 0, 1]), rtol=1e-6)
    assert feature(x, "user_idle_days")[0, 0] == pytest.approx(1.0)  # now = day 3, last = 2
    np.testing.assert_allclose(feature(x, "item_idle_days")[0], [2.0, np.nan, 0.0])
    assert feature(x, "history_length")[0, 0] == 2
    np.testing.assert_allclose(feature(x, "user_mean_price")[0], [25.0] * 3)
    np.testing.assert_allclose(feature(x, "price_ratio")[0], [20 / 25, np.nan, 40 / 25])
    # both history items are toys, one is lego: item 3 (toys + lego) averages 1 and 1/2
    np.testing.assert_allclose(feature(x, "category_share")[0], [1.0, np.nan, 0.75])
    np.testing.assert_allclose(feature(x, "category_share_specific")[0], [1.0, np.nan, 0.5])
    np.testing.assert_allclose(feature(x, "mean_rating")[0], [4.0, np.nan, 2.0])


def test_users_active_after_training_are_idle_from_their_own_last_event() -> None:
    stats = ItemStats.of(TRAIN, half_life_days=1.0)
    late = from_lists([[1], []], times=[[10 * DAY_MS], []])
    x = stats.features(late, np.array([[2], [2]]))
    assert feature(x, "user_idle_days")[0, 0] == 0.0
    assert feature(x, "item_idle_days")[0, 0] == pytest.approx(9.0)
    assert np.isnan(feature(x, "user_idle_days")[1, 0])  # an empty history has no last event
    assert feature(x, "category_share")[1, 0] == 0.0  # nothing taken: no share anywhere


def test_top_k_orders_best_first_and_caps_at_the_width() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [3.0, 2.0, 1.0]])
    assert top_k(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert top_k(scores, 5).tolist() == [[1, 2, 0], [0, 1, 2]]
