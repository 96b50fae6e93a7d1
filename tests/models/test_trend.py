"""SASRec's trend term: a planted trend it must use, with a weight validation chose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.checkpoint import load_checkpoint
from models.data import Catalogue, Interactions, from_lists
from models.evaluate import evaluate
from models.sasrec import SASRec, SASRecConfig
from models.split import Split, temporal
from models.trend import DAY_MS

FAST = {"hidden": 32, "epochs": 12, "patience": 12, "batch_size": 64, "lr": 3e-3, "progress": False}


def shop(seed: int = 0, users: int = 600, groups: int = 7, per: int = 10) -> Interactions:
    """Each ten days (0-59) one group of items is what most people buy; the last group
    holds from day 60 to 99. Every user shops in a few days of the early regimes and
    comes back once or twice in the last, so a history says little about what sells
    now: only the shop's recent sales do."""
    rng = np.random.default_rng(seed)
    n = groups * per
    sequences, times = [], []
    for _ in range(users):
        start = int(rng.integers(0, 55))
        spell = rng.integers(start, start + 5, int(rng.integers(3, 7)))
        days = sorted([*spell, *rng.integers(60, 100, int(rng.integers(1, 3)))])
        items: list[int] = []
        for day in days:
            while True:
                hot = min(int(day) // 10, groups - 1)
                group = hot if rng.random() < 0.85 else int(rng.integers(groups))
                item = 1 + group * per + int(rng.integers(per))
                if item not in items:
                    break
            items.append(item)
        sequences.append(items)
        times.append([int(day) * DAY_MS + int(rng.integers(DAY_MS)) for day in days])
    catalogue = Catalogue(
        tuple(f"i{i}" for i in range(1, n + 1)),
        np.zeros((n + 1, 1), np.int32),
        (),
        np.full(n + 1, np.nan, np.float32),
    )
    histories = from_lists(sequences, times=times)
    ratings = np.full(len(histories.items), np.nan, np.float32)
    user_ids = tuple(f"u{u}" for u in range(users))
    return Interactions("trend", user_ids, catalogue, histories, ratings)


@pytest.fixture(scope="module")
def split() -> Split:
    return temporal(shop())


def test_trend_days_must_be_positive() -> None:
    with pytest.raises(ValueError, match="trend_days"):
        SASRecConfig(trend_days=0.0)


@pytest.mark.slow
def test_sasrec_follows_a_planted_trend(split: Split, tmp_path: Path) -> None:
    plain = SASRec(SASRecConfig(**FAST)).fit(split.train, split.valid)  # type: ignore[arg-type]
    trend = SASRec(SASRecConfig(trend_days=7.0, **FAST)).fit(split.train, split.valid)  # type: ignore[arg-type]
    without = evaluate(plain, split.test, split.train)["NDCG@10"]
    with_trend = evaluate(trend, split.test, split.train)["NDCG@10"]
    # about 0.3 against 0.02: without the trend the model ranks the new hot items low,
    # since they were rare over the whole training history
    assert with_trend > 0.15 and with_trend > 4 * without, (with_trend, without)
    # validation chose the weight: the best of those tried, and not zero here
    assert trend.trend_weights[0.0] < max(trend.trend_weights.values())
    chosen = trend.trend_weight
    assert chosen is not None and plain.trend_weight is None
    assert trend.trend_weights[chosen] == max(trend.trend_weights.values())
    # the trend and its weight travel in the checkpoint
    path = tmp_path / "trend.pt"
    trend.to_checkpoint().save(path)
    loaded = SASRec.from_checkpoint(load_checkpoint(path))
    histories = split.test.inputs.slice(0, 40)
    np.testing.assert_array_equal(loaded.score(histories), trend.score(histories))
