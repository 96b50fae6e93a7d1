"""Small synthetic shops the baseline tests train on, built once per session."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from models.base import Recommender
from models.data import from_dataset
from models.datasets import generate
from models.evaluate import evaluate
from models.split import Split, leave_one_out

Scorer = Callable[[Recommender, Split], float]


@pytest.fixture(scope="session")
def shop() -> Split:
    """600 users, 150 items; every item has a planted successor (an item-item pattern)."""
    data = from_dataset(generate(n_users=600, n_items=150, events_per_user=(6, 20), seed=3))
    return leave_one_out(data)


def _ndcg10(model: Recommender, split: Split) -> float:
    return evaluate(model, split.test, split.train, k=10)["NDCG@10"]


@pytest.fixture(scope="session")
def ndcg10() -> Scorer:
    """Test-set NDCG@10 of a fitted model, full ranking with seen items removed."""
    return _ndcg10
