"""What every recommender offers the trainer, the evaluator and the stream."""

from __future__ import annotations

from typing import Protocol, Self, runtime_checkable

import numpy as np

from models.data import Histories, Interactions
from models.split import EvalSet


@runtime_checkable
class Recommender(Protocol):
    """Fit on training sequences, then score every catalogue item for a batch of users.

    ``score`` returns float32 ``[len(histories), n_items + 1]``; column 0 (padding) is
    ignored. Higher is better. Removing items the user has already seen is the
    evaluator's job, so a model scores them like any other item.
    """

    name: str

    def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self: ...

    def score(self, histories: Histories) -> np.ndarray: ...
