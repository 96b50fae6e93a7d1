"""Popularity baselines: all-time and time-decayed training counts, the same list for everyone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np

from models.baselines.features import PAD_SCORE, item_counts
from models.data import Histories, Interactions
from models.split import EvalSet
from models.trend import decayed_counts
from schemas.errors import ConfigError


class _FixedRanking:
    """Scores every history with one precomputed item vector."""

    name: str
    _scores: np.ndarray | None = None

    def score(self, histories: Histories) -> np.ndarray:
        if self._scores is None:
            raise RuntimeError(f"{self.name}: score() called before fit()")
        return np.tile(self._scores, (len(histories), 1))

    def _set(self, counts: np.ndarray) -> None:
        scores = counts.astype(np.float32)
        scores[0] = PAD_SCORE
        self._scores = scores


@dataclass(frozen=True)
class MostPopularConfig:
    """MostPopular has no knobs; the config exists so every baseline is built alike."""


class MostPopular(_FixedRanking):
    """Items ranked by how many training events they have.

    >>> from models.data import Catalogue, from_lists
    >>> cat = Catalogue(("a", "b", "c"), np.zeros((4, 1), np.int32), (), np.zeros(4, np.float32))
    >>> h = from_lists([[1, 2], [2]])
    >>> train = Interactions("t", ("u", "v"), cat, h, np.zeros(3, np.float32))
    >>> MostPopular().fit(train).score(from_lists([[3]]))[0, 1:].tolist()
    [1.0, 2.0, 0.0]
    """

    def __init__(self, config: MostPopularConfig | None = None) -> None:
        self.config = config or MostPopularConfig()
        self.name = "most-popular"

    def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        self._set(item_counts(train.histories, train.catalogue.n_items + 1))
        return self


@dataclass(frozen=True)
class RecentPopularConfig:
    # An event half_life_days older than the last training event counts half. A week
    # did best on online retail's validation window (1 to 365 days tried).
    half_life_days: float = 7.0

    def __post_init__(self) -> None:
        if not self.half_life_days > 0:
            raise ConfigError(f"half_life_days must be positive, got {self.half_life_days}")


class RecentPopular(_FixedRanking):
    """Items ranked by training events, each decayed by its age at the last training event."""

    def __init__(self, config: RecentPopularConfig | None = None) -> None:
        self.config = config or RecentPopularConfig()
        self.name = "recent-popular"

    def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        n_columns = train.catalogue.n_items + 1
        decayed = decayed_counts(train.histories, n_columns, self.config.half_life_days)
        # All-time counts as a vanishing tie-break, so items with equal (e.g. fully
        # decayed) weight still come out in a meaningful, deterministic order.
        counts = item_counts(train.histories, n_columns)
        self._set(decayed + 1e-6 * counts / max(counts.max(initial=0.0), 1.0))
        return self
