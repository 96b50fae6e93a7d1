"""Per-item and per-user aggregates of histories: what the baselines count and the hybrid reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from models.cooccurrence import recent_anchors
from models.data import Histories, Interactions
from models.trend import DAY_MS, decayed_counts

PAD_SCORE = np.float32(-np.inf)  # column 0 of every score matrix: padding, never an item


def row_index(histories: Histories) -> np.ndarray:
    """The row each flat event belongs to.

    >>> from models.data import from_lists
    >>> row_index(from_lists([[1, 2], [], [3]])).tolist()
    [0, 0, 2]
    """
    return np.repeat(np.arange(len(histories)), histories.lengths())


def user_item_matrix(histories: Histories, n_columns: int, binary: bool = True) -> sp.csr_matrix:
    """Rows = histories, columns = item numbers; 1 per item taken (or the count).

    >>> from models.data import from_lists
    >>> user_item_matrix(from_lists([[1, 2, 1]]), 4, binary=False).toarray().tolist()
    [[0.0, 2.0, 1.0, 0.0]]
    """
    rows = row_index(histories)
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix(
        (data, (rows, histories.items.astype(np.int64))), shape=(len(histories), n_columns)
    )
    matrix.sum_duplicates()
    if binary:
        matrix.data[:] = 1.0
    return matrix


def item_counts(histories: Histories, n_columns: int) -> np.ndarray:
    """Events per item number, float64 ``[n_columns]``.

    >>> from models.data import from_lists
    >>> item_counts(from_lists([[1, 2], [2]]), 4).tolist()
    [0.0, 1.0, 2.0, 0.0]
    """
    return np.bincount(histories.items, minlength=n_columns).astype(np.float64)


def item_last_times(histories: Histories, n_columns: int) -> np.ndarray:
    """Epoch ms of each item's latest event, NaN for items never taken.

    >>> from models.data import from_lists
    >>> item_last_times(from_lists([[1], [1, 2]], times=[[5], [3, 4]]), 3).tolist()
    [nan, 5.0, 4.0]
    """
    last = np.full(n_columns, -np.inf)
    np.maximum.at(last, histories.items, histories.times.astype(np.float64))
    last[np.isneginf(last)] = np.nan
    return last


def item_mean_ratings(histories: Histories, ratings: np.ndarray, n_columns: int) -> np.ndarray:
    """Mean rating per item over events that carry one; NaN where none does.

    >>> from models.data import from_lists
    >>> r = np.array([4.0, np.nan, 2.0], np.float32)
    >>> item_mean_ratings(from_lists([[1, 2], [1]]), r, 3).tolist()
    [nan, 3.0, nan]
    """
    rated = ~np.isnan(ratings)
    items = histories.items[rated]
    sums = np.bincount(items, weights=ratings[rated].astype(np.float64), minlength=n_columns)
    counts = np.bincount(items, minlength=n_columns)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def last_times(histories: Histories) -> np.ndarray:
    """Each row's latest event time (epoch ms, float), NaN for an empty row."""
    lengths = histories.lengths()
    out = np.full(len(histories), np.nan)
    nonempty = lengths > 0
    out[nonempty] = histories.times[histories.offsets[1:][nonempty] - 1]
    return out


def anchor_matrix(histories: Histories, n_columns: int, anchors: int) -> sp.csr_matrix:
    """Each row's last ``anchors`` distinct items, weighted 1, 1/2, 1/3, ... from the newest.

    The weights are the stream's (``models.cooccurrence.rank``), so the offline and
    online item-item scores agree.

    >>> from models.data import from_lists
    >>> anchor_matrix(from_lists([[1, 2, 3]]), 4, 2).toarray().tolist()
    [[0.0, 0.0, 0.5, 1.0]]
    """
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i in range(len(histories)):
        chosen = recent_anchors(histories.sequence(i).tolist(), anchors)
        rows.extend([i] * len(chosen))
        cols.extend(chosen)
        vals.extend(1.0 / (k + 1) for k in range(len(chosen)))
    return sp.csr_matrix(
        (np.array(vals, np.float32), (np.array(rows, np.int64), np.array(cols, np.int64))),
        shape=(len(histories), n_columns),
    )


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` highest scores, best first (ties: lower index).

    >>> top_k(np.array([[0.1, 0.5, 0.3, 0.5]]), 3).tolist()
    [[1, 3, 2]]
    """
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    part.sort(axis=1)  # ties then break towards the lower index under the stable sort
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


CONTEXT_FEATURES = (
    "pop_all",  # log1p of the item's events
    "pop_recent",  # log1p of its time-decayed events
    "item_idle_days",  # since anyone last took the item
    "user_idle_days",  # since the user's last event
    "history_length",
    "price",
    "user_mean_price",
    "price_ratio",  # item price / user's mean price
    "category_share",  # mean over the item's categories of the user's share in each
    "category_share_specific",  # the user's share in the item's rarest category
    "mean_rating",  # the item's mean review rating
)


@dataclass(frozen=True)
class ItemStats:
    """What the hybrid knows about items, from the data its generators were fit on."""

    now_ms: float  # the last event: "now" for users whose own last event is older
    popularity: np.ndarray  # log1p counts [n_columns]
    recent: np.ndarray  # log1p decayed counts
    last_ms: np.ndarray  # NaN for items never taken
    rating: np.ndarray  # NaN where no event carries a rating
    prices: np.ndarray  # NaN when unknown
    categories: np.ndarray  # int32 [n_columns, max_categories], 0 pads
    item_categories: sp.csr_matrix  # [n_columns, n_categories + 1], 1 per membership
    rarest: np.ndarray  # each item's least common category, 0 for none

    @classmethod
    def of(cls, data: Interactions, half_life_days: float) -> ItemStats:
        h, cat = data.histories, data.catalogue
        n_columns = cat.n_items + 1
        now = float(h.times.max()) if len(h.times) else 0.0
        rows = np.repeat(np.arange(n_columns), cat.categories.shape[1])
        flat = cat.categories.ravel().astype(np.int64)
        member = sp.csr_matrix(
            (np.ones(len(flat), np.float32), (rows, flat)), shape=(n_columns, cat.n_categories + 1)
        )
        member.sum_duplicates()
        member.data[:] = 1.0
        sizes = np.asarray(member.sum(axis=0)).ravel()
        sizes[0] = np.inf  # padding is never the rarest
        rarest = np.take_along_axis(
            cat.categories, np.argmin(sizes[cat.categories], axis=1)[:, None], axis=1
        ).ravel()
        return cls(
            now_ms=now,
            popularity=np.log1p(item_counts(h, n_columns)),
            recent=np.log1p(decayed_counts(h, n_columns, half_life_days)),
            last_ms=item_last_times(h, n_columns),
            rating=item_mean_ratings(h, data.ratings, n_columns),
            prices=cat.prices.astype(np.float64),
            categories=cat.categories,
            item_categories=member,
            rarest=rarest,
        )

    def features(self, histories: Histories, candidates: np.ndarray) -> np.ndarray:
        """``CONTEXT_FEATURES`` for each (history, candidate item): float32 ``[n, N, F]``."""
        n = len(histories)
        rows = row_index(histories)
        length = histories.lengths().astype(np.float64)
        last = last_times(histories)
        now = np.fmax(self.now_ms, last)
        user_idle = (now - last) / DAY_MS
        item_idle = (now[:, None] - self.last_ms[candidates]) / DAY_MS

        seen_prices = self.prices[histories.items]
        known = ~np.isnan(seen_prices)
        price_sum = np.bincount(rows[known], weights=seen_prices[known], minlength=n)
        price_n = np.bincount(rows[known], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_price = np.where(price_n > 0, price_sum / np.maximum(price_n, 1), np.nan)
            price = self.prices[candidates]
            ratio = price / mean_price[:, None]

            taken = user_item_matrix(histories, self.item_categories.shape[0])
            shares = (
                np.asarray((taken @ self.item_categories).todense())
                / np.maximum(length, 1)[:, None]
            )
            shares[:, 0] = np.nan
            cats = self.categories[candidates]  # [n, N, K]
            real = cats > 0
            in_cat = np.where(real, shares[np.arange(n)[:, None, None], cats], 0.0).sum(axis=2)
            n_cats = real.sum(axis=2)
            share = np.where(n_cats > 0, in_cat / np.maximum(n_cats, 1), np.nan)
            specific = shares[np.arange(n)[:, None], self.rarest[candidates]]

        columns = [
            self.popularity[candidates],
            self.recent[candidates],
            item_idle,
            np.broadcast_to(user_idle[:, None], candidates.shape),
            np.broadcast_to(length[:, None], candidates.shape),
            price,
            np.broadcast_to(mean_price[:, None], candidates.shape),
            ratio,
            share,
            specific,
            self.rating[candidates],
        ]
        return np.stack(columns, axis=2).astype(np.float32)
