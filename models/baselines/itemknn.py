"""Item-item k-nearest-neighbour recommender on cosine-normalised co-occurrence counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import scipy.sparse as sp

from models.baselines.features import (
    PAD_SCORE,
    anchor_matrix,
    item_counts,
    row_index,
    user_item_matrix,
)
from models.data import Histories, Interactions
from models.split import EvalSet
from schemas.errors import ConfigError


@dataclass(frozen=True)
class ItemKNNConfig:
    """Defaults chosen on the ml-100k, toys and online-retail validation sets."""

    # Similar items kept per item (50 to 400 tried; past 200 nothing changes).
    neighbours: int = 200
    # Most recent distinct history items a user is scored from, weighted 1, 1/2, 1/3, ...
    anchors: int = 20
    # None: two items co-occur when one user took both (classic item-item CF). An int
    # w: only when they are at most w events apart in a user's sequence, the pairs the
    # stream's ``CoOccurrenceRecommender(window=w)`` counts online. A window of 10 beat
    # the whole history on ml-100k and toys and nearly matched it on online retail.
    window: int | None = 10

    def __post_init__(self) -> None:
        for field_name in ("neighbours", "anchors"):
            if getattr(self, field_name) < 1:
                raise ConfigError(f"{field_name} must be >= 1, got {getattr(self, field_name)}")
        if self.window is not None and self.window < 1:
            raise ConfigError(f"window must be None or >= 1, got {self.window}")


class ItemKNN:
    """Scores an item by its similarity to the user's most recent items.

    Items without a neighbour among the anchors follow, below every neighbour, in
    order of popularity (as the stream's ``rank`` does).

    >>> from models.data import Catalogue, from_lists
    >>> cat = Catalogue(tuple("abcd"), np.zeros((5, 1), np.int32), (), np.zeros(5, np.float32))
    >>> h = from_lists([[1, 2], [1, 2], [3, 4], [3]])
    >>> m = ItemKNN().fit(Interactions("t", tuple("wxyz"), cat, h, np.zeros(7, np.float32)))
    >>> scores = m.score(from_lists([[1]]))[0]
    >>> np.argsort(-scores[1:], kind="stable").tolist()  # b, then the rest by popularity
    [1, 0, 2, 3]
    """

    def __init__(self, config: ItemKNNConfig | None = None) -> None:
        self.config = config or ItemKNNConfig()
        window = self.config.window
        self.name = "itemknn" if window is None else f"itemknn-w{window}"
        self.similarity: sp.csr_matrix | None = None  # [n_items + 1, n_items + 1]
        self._fallback = np.zeros(0, dtype=np.float32)

    def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        n_columns = train.catalogue.n_items + 1
        h = train.histories
        if self.config.window is None:
            x = user_item_matrix(h, n_columns)
            counts = (x.T @ x).tocsr()
            popularity = np.asarray(x.sum(axis=0)).ravel().astype(np.float64)
        else:
            counts = window_counts(h, n_columns, self.config.window)
            popularity = item_counts(h, n_columns)
        counts.setdiag(0)
        counts.eliminate_zeros()
        counts = counts.tocoo()
        norm = np.sqrt(np.maximum(popularity, 1.0))
        sims = counts.data / (norm[counts.row] * norm[counts.col])
        self.similarity = keep_top(
            counts.row, counts.col, sims.astype(np.float32), n_columns, self.config.neighbours
        )
        pop = item_counts(h, n_columns)
        # In [0, 1): scaled by a row's weakest neighbour score, it stays below it.
        self._fallback = (pop / (pop.max(initial=0.0) + 1.0)).astype(np.float32)
        return self

    def score(self, histories: Histories) -> np.ndarray:
        if self.similarity is None:
            raise RuntimeError(f"{self.name}: score() called before fit()")
        n_columns = self.similarity.shape[0]
        anchors = anchor_matrix(histories, n_columns, self.config.anchors)
        scores = np.asarray((anchors @ self.similarity).todense(), dtype=np.float32)
        has = scores > 0
        floor = np.where(has, scores, np.inf).min(axis=1, initial=np.inf)
        floor[~np.isfinite(floor)] = 1.0
        fallback = floor[:, None] * self._fallback[None, :]
        np.copyto(scores, fallback, where=~has)
        scores[:, 0] = PAD_SCORE
        return scores


def window_counts(histories: Histories, n_columns: int, window: int) -> sp.csr_matrix:
    """Symmetric counts of item pairs at most ``window`` positions apart in a row.

    >>> from models.data import from_lists
    >>> window_counts(from_lists([[1, 2, 3]]), 4, 1).toarray()[1:, 1:].tolist()
    [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    rows = row_index(histories)
    ends = histories.offsets[1:][rows]
    positions = np.arange(len(histories.items))
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    for gap in range(1, window + 1):
        ok = positions + gap < ends
        a = histories.items[positions[ok]]
        b = histories.items[positions[ok] + gap]
        distinct = a != b
        firsts.append(a[distinct])
        seconds.append(b[distinct])
    a = np.concatenate([*firsts, *seconds]).astype(np.int64)
    b = np.concatenate([*seconds, *firsts]).astype(np.int64)
    data = np.ones(len(a), dtype=np.float64)
    matrix = sp.csr_matrix((data, (a, b)), shape=(n_columns, n_columns))
    matrix.sum_duplicates()
    return matrix


def keep_top(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n: int, k: int
) -> sp.csr_matrix:
    """An ``n x n`` CSR matrix with each row's ``k`` largest entries (ties: lower column).

    >>> rows, cols = np.array([0, 0, 0]), np.array([0, 1, 2])
    >>> keep_top(rows, cols, np.array([1.0, 3.0, 2.0]), 3, 2).toarray()[0].tolist()
    [0.0, 3.0, 2.0]
    """
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, rows, side="left")
    keep = np.arange(len(rows)) - starts < k
    return sp.csr_matrix((values[keep], (rows[keep], cols[keep])), shape=(n, n))
