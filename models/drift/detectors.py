"""River's drift detectors behind one call, ``update(x) -> Alert | None``.

`Adwin`, `PageHinkley` and `Kswin` wrap ``river.drift``'s detectors of the same name,
give each a monitor name and the statistic it reports, and turn River's
``drift_detected`` flag into an `Alert`. Two monitors are built from them:

- `hit_rate_monitor`: ADWIN on the online hit stream (1 when a recommendation was
  followed by a purchase of one of its items within the attribution window, else 0).
  With ``delta=0.002`` a drop from 0.10 to 0.05 is flagged 511 to 1,599
  recommendations after it (median 895, over 50 seeds); stationary streams of
  100,000 hits at 0.10 gave one false alarm in 120.
- `score_monitor`: ADWIN on the rank of each score within a reference sample of the
  first scores. ADWIN's bound assumes values in [0, 1]; raw model scores are not, and
  on values of scale 100 it alarms on a stationary stream. The rank is in [0, 1] and
  uniform while nothing changes, whatever the scale. A shift of the mean by one
  standard deviation is flagged 71 to 135 scores after it (50 seeds); 20 stationary
  streams of 100,000 scores gave no alarm.

`Kswin` runs a KS test at every update (about 0.3 ms each), too slow for a per-event
stream; the score monitor and `models.drift.mix.KsMonitor` cover distributions instead.

>>> import random
>>> rng = random.Random(1)
>>> m = hit_rate_monitor()
>>> stream = [float(rng.random() < 0.3) for _ in range(3000)]
>>> stream += [float(rng.random() < 0.1) for _ in range(3000)]
>>> [(a.statistic, round(a.value, 1), round(a.threshold, 1)) for a in m.update_many(stream)]
[('adwin_mean', 0.1, 0.3)]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from river import drift

from models.drift.alerts import Alert


class Monitor(Protocol):
    """What the stream drives: a name, a statistic and ``update``/``update_many``."""

    name: str
    statistic: str

    def update(self, x: float) -> Alert | None: ...

    def update_many(self, values: Iterable[float]) -> list[Alert]: ...


class _Detector:
    name: str
    statistic: str

    def update(self, x: float) -> Alert | None:
        raise NotImplementedError

    def update_many(self, values: Iterable[float]) -> list[Alert]:
        """Feed a micro-batch in order; the alerts it raised."""
        return [a for a in map(self.update, values) if a is not None]


@dataclass(frozen=True)
class AdwinConfig:
    """River's ADWIN parameters, and how many latest values an alert reports the mean of.

    ``delta`` is the significance of each cut; ``recent`` sizes the ring buffer.
    """

    delta: float = 0.002
    clock: int = 32
    min_window_length: int = 5
    grace_period: int = 10
    recent: int = 256
    # "down" alerts only when the level falls: a hit rate that rises as an online
    # model learns is no news to ops.
    direction: Literal["both", "down", "up"] = "both"


class Adwin(_Detector):
    """ADWIN on a stream of values in [0, 1].

    An alert's ``value`` is the level now, the mean of the last ``recent`` values, and
    its ``threshold`` the level ADWIN held before, the mean of its window just before it
    cut; value below threshold means the level fell. (River keeps its cut point to
    itself, and the part it drops in one update is rarely the whole old regime, so the
    levels are read from a ring buffer and the window instead.)
    """

    statistic = "adwin_mean"

    def __init__(self, name: str, config: AdwinConfig | None = None) -> None:
        self.name = name
        self.config = config or AdwinConfig()
        c = self.config
        if c.recent < 1:
            raise ValueError(f"recent must be positive, got {c.recent}")
        self._river = drift.ADWIN(
            delta=c.delta,
            clock=c.clock,
            min_window_length=c.min_window_length,
            grace_period=c.grace_period,
        )
        self._recent: deque[float] = deque(maxlen=c.recent)
        self.n = 0

    @property
    def estimation(self) -> float:
        """Mean of ADWIN's current window (the rate now, on a 0/1 stream)."""
        return float(self._river.estimation)

    def update(self, x: float) -> Alert | None:
        river = self._river
        # River empties its window on the update after a detection.
        before = 0.0 if river.drift_detected else river.estimation
        width = 0 if river.drift_detected else int(river.width)
        river.update(x)
        self._recent.append(x)
        self.n += 1
        if not river.drift_detected:
            return None
        now = sum(self._recent) / len(self._recent)
        direction = self.config.direction
        if (direction == "down" and now >= before) or (direction == "up" and now <= before):
            return None
        return Alert(self.name, self.statistic, now, before, width + 1)


@dataclass(frozen=True)
class PageHinkleyConfig:
    """River's Page-Hinkley parameters, in the units of the values.

    The defaults suit standardised values (standard deviation 1): ``delta`` is half the
    smallest shift worth catching and ``threshold`` 25 deviations, which flags a shift
    of one deviation 20 to 70 values after it and nothing in 100,000 stationary ones.
    River's default ``alpha`` (1 - 1e-4) fades the sums until, after about 1 / (1 -
    alpha) values, they no longer drift by ``delta`` and wander past the threshold
    (five false alarms per 100,000 values); 1.0 keeps the test as Page wrote it.
    """

    min_instances: int = 30
    delta: float = 0.5
    threshold: float = 25.0
    alpha: float = 1.0
    mode: str = "both"


class PageHinkley(_Detector):
    """Page-Hinkley (a CUSUM of deviations from the running mean).

    An alert's ``value`` is the larger of the upward and downward cumulative sums, read
    from River's detector at the moment it fired, and ``threshold`` the configured one.
    """

    statistic = "page_hinkley"

    def __init__(self, name: str, config: PageHinkleyConfig | None = None) -> None:
        self.name = name
        self.config = config or PageHinkleyConfig()
        c = self.config
        self._river = drift.PageHinkley(
            min_instances=c.min_instances,
            delta=c.delta,
            threshold=c.threshold,
            alpha=c.alpha,
            mode=c.mode,
        )
        self._since_reset = 0

    def update(self, x: float) -> Alert | None:
        river = self._river
        if river.drift_detected:
            self._since_reset = 0
        river.update(x)
        self._since_reset += 1
        if not river.drift_detected:
            return None
        up = river._sum_increase - river._min_increase
        down = river._max_decrease - river._sum_decrease
        value = float(max(up, down))
        return Alert(self.name, self.statistic, value, self.config.threshold, self._since_reset)


@dataclass(frozen=True)
class KswinConfig:
    """River's KSWIN parameters; ``alpha`` is the p-value below which it fires."""

    alpha: float = 1e-5
    window_size: int = 300
    stat_size: int = 100
    seed: int = 0


class Kswin(_Detector):
    """KSWIN: a KS test between the latest values and a sample of older ones.

    An alert's ``value`` is the test's p-value and ``threshold`` is ``alpha``.
    """

    statistic = "kswin_p_value"

    def __init__(self, name: str, config: KswinConfig | None = None) -> None:
        self.name = name
        self.config = config or KswinConfig()
        c = self.config
        self._river = drift.KSWIN(
            alpha=c.alpha, window_size=c.window_size, stat_size=c.stat_size, seed=c.seed
        )

    def update(self, x: float) -> Alert | None:
        self._river.update(x)
        if not self._river.drift_detected:
            return None
        c = self.config
        return Alert(self.name, self.statistic, float(self._river.p_value), c.alpha, c.window_size)


class ScoreMonitor(_Detector):
    """ADWIN on where each score falls within a reference sample of the first scores.

    The first ``reference`` scores are kept (sorted) and raise nothing; each later
    score becomes its mid-rank among them, in [0, 1], 0.5 on average while nothing
    changes. The alert reports mean ranks as `Adwin` reports means: 0.75 now against
    0.5 before says recent scores sit a quarter of the reference higher.

    ADWIN treats values as independent, and scores are not: a user's scores are alike,
    and the mix of users online wanders. On generated shops the mean rank of 1,000
    scores wandered by up to 0.09 with nothing changed, and ADWIN cut there; so a cut
    is an alert only if the mean rank lies ``min_effect`` or more from 0.5. ADWIN cuts
    within tens of scores of a sharp change, when the recent ones are still mostly old;
    so a cut that is not yet an alert arms the monitor, which alerts as soon as the mean
    rank since the cut (over ``confirm`` scores or more) lies that far from 0.5.
    Memory: ``reference`` floats and ADWIN's logarithmic buckets.
    """

    def __init__(
        self,
        name: str,
        reference: int = 1000,
        config: AdwinConfig | None = None,
        min_effect: float = 0.05,
        confirm: int = 64,
    ) -> None:
        if reference < 1:
            raise ValueError(f"reference must be positive, got {reference}")
        if not 0.0 <= min_effect < 0.5:
            raise ValueError(f"min_effect must lie in [0, 0.5), got {min_effect}")
        if confirm < 1:
            raise ValueError(f"confirm must be positive, got {confirm}")
        self.name = name
        self.reference = reference
        self.min_effect = min_effect
        self.confirm = confirm
        self._adwin = Adwin(name, config)
        self.statistic = "adwin_mean_rank"
        self._first: list[float] = []
        self._sorted: np.ndarray | None = None
        self._armed: tuple[float, float, int] | None = None  # (level before, sum, count)

    def rank(self, x: float) -> float:
        """Mid-rank of ``x`` in the reference sample, in [0, 1]."""
        if self._sorted is None:
            raise RuntimeError(f"{self.name}: the reference is not complete yet")
        lo = int(np.searchsorted(self._sorted, x, side="left"))
        hi = int(np.searchsorted(self._sorted, x, side="right"))
        return (lo + hi) / (2 * self.reference)

    def update(self, x: float) -> Alert | None:
        if self._sorted is None:
            self._first.append(float(x))
            if len(self._first) == self.reference:
                self._sorted = np.sort(np.asarray(self._first))
                self._first = []
            return None
        r = self.rank(x)
        alert = self._adwin.update(r)
        if alert is not None:
            if abs(alert.value - 0.5) >= self.min_effect:
                self._armed = None
                return Alert(self.name, self.statistic, alert.value, alert.threshold, alert.window)
            self._armed = (alert.threshold, 0.0, 0)
            return None
        if self._armed is None:
            return None
        before, total, n = self._armed
        total, n = total + r, n + 1
        self._armed = (before, total, n)
        if n < self.confirm or abs(total / n - 0.5) < self.min_effect:
            return None
        self._armed = None
        return Alert(self.name, self.statistic, total / n, before, n)

    def rebase(self) -> None:
        """Take the next ``reference`` scores as the new reference (a new model)."""
        self._first, self._sorted = [], None
        self._adwin = Adwin(self.name, self._adwin.config)
        self._armed = None


def hit_rate_monitor(name: str = "online_hit_rate", delta: float = 0.002) -> Adwin:
    """ADWIN on the 0/1 hit of each recommendation (or attributed purchase); it alerts
    when the hit rate falls."""
    return Adwin(name, AdwinConfig(delta=delta, direction="down"))


def score_monitor(name: str = "score_distribution", reference: int = 1000) -> ScoreMonitor:
    """ADWIN on the rank of each top-1 score within the first ``reference`` scores."""
    return ScoreMonitor(name, reference)
