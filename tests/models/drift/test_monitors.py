"""Every monitor kind on a generated stream: a drift at a known index raises an alert
within a stated delay, and 100,000 stationary values raise none.

The delays below are bounds, set above the largest delay measured over 50 seeds for
each kind; the tests check three seeds each, so they are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from models.drift import (
    KsMonitor,
    Monitor,
    PsiMonitor,
    hit_rate_monitor,
    score_monitor,
    segment_mix_monitor,
    share_monitor,
)

DRIFT_AT = 20_000
STATIONARY = 100_000
BATCH = 500  # the stream feeds micro-batches

Draw = Callable[[np.random.Generator, int, bool], list]


def _binary(before: float, after: float) -> Draw:
    def draw(rng: np.random.Generator, n: int, drifted: bool) -> list:
        return (rng.random(n) < (after if drifted else before)).astype(float).tolist()

    return draw


def _scores(rng: np.random.Generator, n: int, drifted: bool) -> list:
    # Top-1 scores (logits) whose mean moves up by one standard deviation.
    return rng.normal(10.0 if drifted else 8.0, 2.0, n).tolist()


CATEGORIES = [f"c{i}" for i in range(12)]


def _categories(rng: np.random.Generator, n: int, drifted: bool) -> list:
    # 85% of purchases in three favourite categories; the favourites change.
    favourites = [3, 4, 5] if drifted else [0, 1, 2]
    p = np.full(len(CATEGORIES), 0.15 / len(CATEGORIES))
    p[favourites] += 0.85 / 3
    return [CATEGORIES[i] for i in rng.choice(len(CATEGORIES), n, p=p)]


def _prices(rng: np.random.Generator, n: int, drifted: bool) -> list:
    # Three price levels with lognormal spread, as in the synthetic shop; prices +30%.
    levels = np.array([5.0, 20.0, 80.0])
    prices = np.round(levels[rng.integers(3, size=n)] * rng.lognormal(0.0, 0.25, n), 2)
    return (prices * (1.3 if drifted else 1.0)).tolist()


def _segments(rng: np.random.Generator, n: int, drifted: bool) -> list:
    # The smallest of four segments triples (a campaign), the largest halves.
    p = [0.2, 0.3, 0.2, 0.3] if drifted else [0.4, 0.3, 0.2, 0.1]
    return rng.choice(4, n, p=p).tolist()


@dataclass(frozen=True)
class Kind:
    make: Callable[[], Monitor]
    draw: Draw
    bound: int  # the largest delay allowed, in observations


KINDS = {
    "hit_rate": Kind(hit_rate_monitor, _binary(0.10, 0.05), 2_000),
    "score_distribution": Kind(score_monitor, _scores, 150),
    "category_mix": Kind(lambda: PsiMonitor("category_mix"), _categories, 1_000),
    "price_level": Kind(lambda: KsMonitor("price_level"), _prices, 1_250),
    "new_item_share": Kind(lambda: share_monitor("new_item_share"), _binary(0.05, 0.10), 2_000),
    "new_user_share": Kind(lambda: share_monitor("new_user_share"), _binary(0.10, 0.20), 1_000),
    "segment_mix": Kind(segment_mix_monitor, _segments, 2_000),
}


def first_alerts(monitor: Monitor, values: list) -> list[int]:
    """Indices of the values after which an alert came, fed in micro-batches."""
    fired = []
    for start in range(0, len(values), BATCH):
        for i, x in enumerate(values[start : start + BATCH], start):
            if monitor.update(x) is not None:
                fired.append(i)
    return fired


def delay(kind: Kind, seed: int, extra: int | None = None) -> tuple[list[int], int | None]:
    """Alerts before the drift, and the delay of the first one after it."""
    rng = np.random.default_rng(seed)
    n_after = extra if extra is not None else kind.bound + 1
    values = kind.draw(rng, DRIFT_AT, False) + kind.draw(rng, n_after, True)
    fired = first_alerts(kind.make(), values)
    early = [i for i in fired if i < DRIFT_AT]
    late = [i - DRIFT_AT for i in fired if i >= DRIFT_AT]
    return early, late[0] if late else None


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(KINDS))
def test_drift_is_flagged_within_the_bound(name: str, seed: int) -> None:
    kind = KINDS[name]
    early, after = delay(kind, seed)
    assert early == [], f"{name}: false alarm before the drift at {early}"
    assert after is not None, f"{name}: no alert within {kind.bound} of the drift"
    assert 0 <= after <= kind.bound


@pytest.mark.parametrize("name", list(KINDS))
def test_stationary_stream_raises_nothing(name: str) -> None:
    kind = KINDS[name]
    monitor = kind.make()
    values = kind.draw(np.random.default_rng(12_345), STATIONARY, False)
    assert first_alerts(monitor, values) == []


def test_alerts_name_their_monitor_and_cross_their_threshold() -> None:
    for name, kind in KINDS.items():
        rng = np.random.default_rng(7)
        monitor = kind.make()
        alerts = monitor.update_many(kind.draw(rng, DRIFT_AT, False))
        alerts += monitor.update_many(kind.draw(rng, 3 * kind.bound, True))
        assert alerts, name
        a = alerts[0]
        assert a.monitor == monitor.name and a.statistic == monitor.statistic
        assert a.window > 0
        if a.statistic in ("psi", "ks"):
            assert a.value > a.threshold
        elif name == "hit_rate":  # the level now against the level before
            assert a.value < a.threshold
        else:
            assert a.value > a.threshold
