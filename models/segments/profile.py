"""The cheap user profile: category shares, price level, frequency, cadence and recency.

A profile is computed from a user's retained history alone (items and event times),
so it needs no trained model and no per-user state beyond the sequence the stream
already keeps: a replayed event gives the same profile, an erased user has none.

Categories are hashed into a fixed number of buckets so that the embedding has the
same dimension in every worker and for every catalogue, before any category is known.

>>> buckets = item_buckets([[], ["Toys"], ["Toys", "Toys/Puzzles"], []], n_buckets=8)
>>> raw = profile_features(np.array([0, 3]), np.array([1, 2, 3]),
...                        np.array([0, 86_400, 3 * 86_400]), buckets,
...                        np.array([np.nan, 10.0, 30.0, np.nan]), n_buckets=8)
>>> raw.shape, round(float(raw[0, :8].sum()), 6)
((1, 12), 1.0)
>>> [round(float(v), 3) for v in raw[0, 8:]]  # log price, log1p n, log1p gap, log1p last gap
[2.996, 1.386, 0.916, 1.099]
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NUMERIC = ("price", "frequency", "cadence", "recency")
DAY_S = 86_400.0
# Divisors of log1p(events), log1p(mean gap days), log1p(last gap days): 200 events, a year.
FIXED_SCALES = (float(np.log1p(200)), float(np.log1p(365)), float(np.log1p(365)))


@dataclass(frozen=True)
class ProfileConfig:
    """Shape and weights of the profile embedding.

    Shares sum to 1 over a user's categorised events; each numeric feature is
    standardised and then multiplied by its weight, so the weights say how much a
    standard deviation of that feature counts against a whole change of category mix.
    """

    n_buckets: int = 32
    price_weight: float = 0.25
    frequency_weight: float = 0.3
    cadence_weight: float = 0.2
    recency_weight: float = 0.1
    max_categories: int = 4  # categories kept per item (a path's levels, or tags)

    @property
    def dim(self) -> int:
        return self.n_buckets + len(NUMERIC)

    def weights(self) -> np.ndarray:
        return np.array(
            [self.price_weight, self.frequency_weight, self.cadence_weight, self.recency_weight]
        )


def bucket(category: str, n_buckets: int) -> int:
    """Stable bucket of a category name: the same in every process and release.

    >>> bucket("Toys", 32) == bucket("Toys", 32), 0 <= bucket("Toys", 32) < 32
    (True, True)
    """
    return zlib.crc32(category.encode()) % n_buckets


def path_categories(path: str) -> list[str]:
    """The levels of a "/"-joined category path, each as its own prefix.

    >>> path_categories("Toys/Games/Puzzles")
    ['Toys', 'Toys/Games', 'Toys/Games/Puzzles']
    >>> path_categories("")
    []
    """
    parts = [p for p in path.split("/") if p]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def item_buckets(categories: Sequence[Sequence[str]], n_buckets: int, width: int = 4) -> np.ndarray:
    """Bucket numbers of each item's categories, ``int32 [n_items, width]``, -1 pads."""
    out = np.full((len(categories), width), -1, dtype=np.int32)
    for row, cats in enumerate(categories):
        picked = sorted({bucket(c, n_buckets) for c in cats[:width]})
        out[row, : len(picked)] = picked
    return out


def profile_features(
    offsets: np.ndarray,
    items: np.ndarray,
    times_s: np.ndarray,
    buckets: np.ndarray,
    prices: np.ndarray,
    n_buckets: int,
) -> np.ndarray:
    """Raw profiles of users given as CSR histories, ``float64 [n_users, n_buckets + 4]``.

    ``items`` index rows of ``buckets`` and ``prices`` (NaN when unknown); ``times_s``
    are event times in seconds, in order within each user. The numeric columns are
    raw: log of the mean known price (NaN when none is known), log1p of the event
    count, log1p of the mean gap in days between events, and log1p of the gap in days
    before the latest event (0 for a single event). ``ProfileScaler`` standardises them.
    """
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    out = np.zeros((n, n_buckets + len(NUMERIC)))
    if n == 0 or len(items) == 0:
        return out
    rows = np.repeat(np.arange(n), lengths)
    # Category shares: an item with m categories gives 1/m to each; only categorised
    # events count, so a user whose items are all uncategorised has no shares at all.
    cats = buckets[items]  # [events, width]
    per_item = (cats >= 0).sum(axis=1)
    has = per_item > 0
    weight = np.where(has, 1.0 / np.maximum(per_item, 1), 0.0)
    r, c = np.nonzero(cats >= 0)
    shares = np.zeros((n, n_buckets))
    np.add.at(shares, (rows[r], cats[r, c]), weight[r])
    categorised = np.bincount(rows[has], minlength=n).astype(np.float64)
    out[:, :n_buckets] = shares / np.maximum(categorised, 1.0)[:, None]

    price = prices[items].astype(np.float64)
    known = ~np.isnan(price)
    total = np.bincount(rows[known], weights=price[known], minlength=n)
    count = np.bincount(rows[known], minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_price = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        out[:, n_buckets] = np.log(np.maximum(mean_price, 1e-6))
    out[count == 0, n_buckets] = np.nan

    out[:, n_buckets + 1] = np.log1p(lengths)
    first = times_s[offsets[:-1][lengths > 0]]
    last_idx = offsets[1:][lengths > 0] - 1
    last = times_s[last_idx]
    span_days = (last - first) / DAY_S
    gaps = np.maximum(lengths[lengths > 0] - 1, 1)
    cadence = np.zeros(n)
    cadence[lengths > 0] = np.log1p(np.maximum(span_days, 0.0) / gaps)
    out[:, n_buckets + 2] = cadence
    recency = np.zeros(n)
    several = lengths > 1
    if several.any():
        ends = offsets[1:][several] - 1
        recency[several] = np.log1p(np.maximum(times_s[ends] - times_s[ends - 1], 0) / DAY_S)
    out[:, n_buckets + 3] = recency
    return out


@dataclass(frozen=True)
class ProfileScaler:
    """Standardises the numeric columns with fixed statistics and applies the weights.

    Fitted once (on the first profiles a segmentation sees) and then frozen, so that
    centroids learnt at different times live in the same space. Only the price level is
    standardised with fitted statistics: its spread is the shop's and does not change as
    the stream goes on. Counts and gaps grow with every user's history, so statistics
    from the first profiles would blow them up later; they are divided by fixed scales
    instead (200 events, a year).
    """

    config: ProfileConfig
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, raw: np.ndarray, config: ProfileConfig) -> ProfileScaler:
        price = raw[:, config.n_buckets]
        price = price[~np.isnan(price)]
        mean = float(price.mean()) if len(price) else 0.0
        std = float(price.std()) if len(price) else 0.0
        # No known prices, or all equal: the feature carries nothing and is zeroed.
        std = std if std > 1e-9 else float("inf")
        return cls(config, (mean, 0.0, 0.0, 0.0), (std, *FIXED_SCALES))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Embeddings ``[n, dim]``: shares as they are, numeric features standardised."""
        out = raw.astype(np.float64, copy=True)
        nb = self.config.n_buckets
        z = (out[:, nb:] - np.array(self.mean)) / np.array(self.std)
        out[:, nb:] = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0) * self.config.weights()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": list(self.mean),
            "std": [s if np.isfinite(s) else None for s in self.std],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], config: ProfileConfig) -> ProfileScaler:
        std = tuple(float("inf") if s is None else float(s) for s in data["std"])
        return cls(config, tuple(float(m) for m in data["mean"]), std)
