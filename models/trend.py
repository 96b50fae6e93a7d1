"""Time-decayed item popularity: what the popularity baselines rank by and what a
sequence model may add to its scores as the shop's trend."""

from __future__ import annotations

import numpy as np

from models.data import Histories

DAY_MS = 86_400_000
# Log of (decayed count + this): an item nobody took lately sits a few units below one
# taken a handful of times, rather than at minus infinity.
TREND_FLOOR = 0.1


def decayed_counts(
    histories: Histories, n_columns: int, half_life_days: float, now_ms: int | None = None
) -> np.ndarray:
    """Events per item, each weighted 0.5 ** (its age in days / ``half_life_days``).

    Age is measured back from ``now_ms`` (default: the last event), so the newest
    events count 1 whatever the data's calendar.

    >>> from models.data import from_lists
    >>> h = from_lists([[1, 2]], times=[[0, 2 * DAY_MS]])
    >>> decayed_counts(h, 3, half_life_days=2.0).tolist()
    [0.0, 0.5, 1.0]
    """
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days}")
    if not len(histories.times):
        return np.zeros(n_columns)
    now = int(histories.times.max()) if now_ms is None else now_ms
    age_days = (now - histories.times).astype(np.float64) / DAY_MS
    weights = np.exp2(-age_days / half_life_days)
    return np.bincount(histories.items, weights=weights, minlength=n_columns)


def log_counts(counts: np.ndarray) -> np.ndarray:
    """``log(counts + TREND_FLOOR)``, float32: the trend term of a model's scores.

    >>> np.exp(log_counts(np.array([0.0, 0.5, 2.0])).astype(float)).round(3).tolist()
    [0.1, 0.6, 2.1]
    """
    return np.log(np.asarray(counts, np.float64) + TREND_FLOOR).astype(np.float32)
