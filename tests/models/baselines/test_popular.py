"""Popularity baselines: all-time counts, and counts that fade with age."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import Recommender
from models.baselines.popular import (
    MostPopular,
    RecentPopular,
    RecentPopularConfig,
)
from models.data import Catalogue, Interactions, from_lists
from models.trend import DAY_MS
from schemas.errors import ConfigError


def _shop(sequences: list[list[int]], times: list[list[int]], n_items: int = 4) -> Interactions:
    cat = Catalogue(
        tuple(f"i{k}" for k in range(1, n_items + 1)),
        np.zeros((n_items + 1, 1), np.int32),
        (),
        np.full(n_items + 1, np.nan, np.float32),
    )
    h = from_lists(sequences, times=times)
    users = tuple(f"u{k}" for k in range(len(sequences)))
    return Interactions("t", users, cat, h, np.full(len(h.items), np.nan, np.float32))


# Item 1: three events 60 days before the end; item 2: two events on the last day.
OLD_AND_NEW = _shop([[1, 2], [1, 2], [1]], [[0, 60 * DAY_MS], [0, 60 * DAY_MS], [0]])


def test_most_popular_ranks_by_count_and_is_the_same_for_everyone() -> None:
    model = MostPopular().fit(OLD_AND_NEW)
    assert isinstance(model, Recommender)
    scores = model.score(from_lists([[3], [], [1, 2, 4]]))
    assert scores.shape == (3, 5) and scores.dtype == np.float32
    assert (scores == scores[0]).all()
    assert scores[0, 1] > scores[0, 2] > scores[0, 3]


def test_recent_popular_prefers_what_sold_lately() -> None:
    recent = RecentPopular(RecentPopularConfig(half_life_days=7.0)).fit(OLD_AND_NEW)
    slow = RecentPopular(RecentPopularConfig(half_life_days=10_000.0)).fit(OLD_AND_NEW)
    row = recent.score(from_lists([[]]))[0]
    assert row[2] > row[1] > row[3]  # two fresh events beat three 60-day-old ones
    assert row[2] == pytest.approx(2.0, rel=1e-4)  # decay counts from the last event
    assert slow.score(from_lists([[]]))[0, 1] > slow.score(from_lists([[]]))[0, 2]


def test_score_returns_a_fresh_array_each_time() -> None:
    model = MostPopular().fit(OLD_AND_NEW)
    first = model.score(from_lists([[1]]))
    first[:] = 0.0  # the evaluator masks in place
    assert model.score(from_lists([[1]]))[0, 1] > 0


def test_score_before_fit_and_bad_half_life_are_refused() -> None:
    with pytest.raises(RuntimeError, match="before fit"):
        MostPopular().score(from_lists([[1]]))
    with pytest.raises(ConfigError, match="half_life_days"):
        RecentPopularConfig(half_life_days=0.0)
