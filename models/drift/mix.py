"""Input-mix monitors: the latest window of a stream against a reference window.

What the model was trained on is what the first observations look like; these
monitors keep that as the reference and compare a sliding window of the latest
observations with it every ``every`` observations:

- `PsiMonitor`: the population stability index of category shares (the categories
  bought, the segments of the users seen). 0.1 is the usual "look at it", 0.25 the
  usual "it has shifted": `level` reports the first, an `Alert` the second.
- `KsMonitor`: the two-sample KS statistic between a fixed-size sample of the
  reference and the window, for a continuous value such as the price paid.
- `share_monitor`: ADWIN on a 0/1 stream, for the share of new items and new users.
  PSI on two categories hardly moves when a small share doubles (0.05 to 0.10 gives
  0.04), while ADWIN flags it.

Memory is bounded whatever the stream length: the reference is a count per category
(at most ``max_categories``) or a sample of ``sample`` values, the window a ring buffer.
The reference stays until `rebase` (a new model was trained on newer data), so while a
shift lasts every check raises an alert; `models.drift.alerts.Debouncer` thins them.

Measured with the defaults on the generated streams of
tests/models/drift/test_monitors.py (`python -m bench.drift_delays`, 50 seeds each), in
observations after the change: three favourite categories out of twelve replaced by
three others, 499 (the first check); the smallest of four segments tripling, 749 to
1,749 (`segment_mix_monitor`); prices up 30%, 499 to 999 (the three price levels dilute
the KS distance to about 0.11); the share of new items from 0.05 to 0.10, 255 to 959;
of new users from 0.10 to 0.20, 127 to 575. Twenty stationary streams of 100,000
observations gave no alarm from any of them.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from models.drift.alerts import Alert
from models.drift.detectors import Adwin, AdwinConfig

OTHER = "<other>"
Level = Literal["ok", "warn", "alert"]


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float = 1e-4) -> float:
    """Population stability index between two count vectors over the same categories.

    Each share gets ``epsilon`` added (then the shares are renormalised) so that a
    category absent on one side gives a large but finite term.

    >>> round(psi(np.array([50, 50]), np.array([50, 50])), 3)
    0.0
    >>> round(psi(np.array([50, 50]), np.array([80, 20])), 3)
    0.416
    >>> round(psi(np.array([100, 0]), np.array([90, 10])), 2)
    0.7
    """
    r = reference / max(reference.sum(), 1) + epsilon
    c = current / max(current.sum(), 1) + epsilon
    r, c = r / r.sum(), c / c.sum()
    return float(((c - r) * np.log(c / r)).sum())


@dataclass(frozen=True)
class MixConfig:
    """Window sizes and PSI thresholds of a `PsiMonitor`."""

    reference: int = 5000
    window: int = 2000
    every: int = 500
    warn: float = 0.1
    alert: float = 0.25
    epsilon: float = 1e-4
    max_categories: int = 50
    skip: int = 0  # observations ignored before the reference, while the source settles
    # With a lag, the reference trails: the ``reference`` observations that ended ``lag``
    # before the window. Slow wander then stays below the threshold, a change within
    # ``lag`` observations does not, and an alert stops once the reference holds the
    # change. Without one, the reference is the first observations until `rebase`.
    lag: int | None = None

    def __post_init__(self) -> None:
        if min(self.reference, self.window, self.every, self.max_categories) < 1:
            raise ValueError("reference, window, every and max_categories must be positive")
        if self.skip < 0 or (self.lag is not None and self.lag < 0):
            raise ValueError(f"skip and lag cannot be negative, got {self.skip}, {self.lag}")


class PsiMonitor:
    """PSI of the category shares in the latest ``window`` against the first ``reference``
    (or a trailing one, with ``lag``).

    The reference keeps its ``max_categories - 1`` most frequent categories; any other
    category, on either side, counts as one `OTHER`, so a category the reference never
    saw shows up as that share growing.
    """

    statistic = "psi"

    def __init__(self, name: str, config: MixConfig | None = None) -> None:
        self.name = name
        self.config = config or MixConfig()
        self.rebase()

    def rebase(self) -> None:
        """Take the next ``reference`` observations, after ``skip``, as the reference."""
        self._first: Counter[Hashable] = Counter()
        self._seen = -self.config.skip
        self._code: dict[Hashable, int] = {}
        self._reference = np.zeros(1, np.int64)
        self._window: deque[int] = deque(maxlen=self.config.window)
        # With a lag: the raw first reference in order, then codes between the window
        # and the reference (``gap``) and the reference's own codes (``trail``).
        self._order: list[Hashable] = []
        self._gap: deque[int] = deque()
        self._trail: deque[int] = deque()
        self._counts = np.zeros(1, np.int64)
        self._since = 0
        self.value: float | None = None
        self.level: Level = "ok"

    @property
    def categories(self) -> list[Hashable]:
        """The reference's categories in code order; `OTHER` last."""
        return [*self._code, OTHER]

    def update(self, x: Hashable) -> Alert | None:
        c = self.config
        if self._seen < c.reference:
            if self._seen >= 0:
                self._first[x] += 1
                if c.lag is not None:
                    self._order.append(x)
            self._seen += 1
            if self._seen == c.reference:
                self._freeze()
            return None
        code = self._code.get(x, len(self._code))
        if len(self._window) == c.window:
            self._counts[self._window[0]] -= 1
            if c.lag is not None:
                self._trails(self._window[0])
        self._window.append(code)
        self._counts[code] += 1
        self._since += 1
        if len(self._window) < c.window or self._since < c.every:
            return None
        self._since = 0
        return self._check()

    def update_many(self, values: Iterable[Hashable]) -> list[Alert]:
        """Feed a micro-batch in order; the alerts it raised."""
        return [a for a in map(self.update, values) if a is not None]

    def _freeze(self) -> None:
        kept = self._first.most_common(self.config.max_categories - 1)
        self._code = {cat: i for i, (cat, _) in enumerate(kept)}
        self._reference = np.zeros(len(kept) + 1, np.int64)
        for cat, n in self._first.items():
            self._reference[self._code.get(cat, len(kept))] += n
        self._counts = np.zeros_like(self._reference)
        self._first = Counter()
        self._trail = deque(self._code.get(x, len(kept)) for x in self._order)
        self._order = []
        # The first check comes once the window is full, then every ``every``.
        self._since = self.config.every - self.config.window

    def _trails(self, code: int) -> None:
        """An observation leaves the window: it crosses the gap, then joins the reference."""
        assert self.config.lag is not None
        self._gap.append(code)
        if len(self._gap) <= self.config.lag:
            return
        joined = self._gap.popleft()
        self._trail.append(joined)
        self._reference[joined] += 1
        self._reference[self._trail.popleft()] -= 1

    def _check(self) -> Alert | None:
        c = self.config
        self.value = psi(self._reference, self._counts, c.epsilon)
        self.level = "alert" if self.value >= c.alert else "warn" if self.value >= c.warn else "ok"
        if self.level != "alert":
            return None
        return Alert(self.name, self.statistic, self.value, c.alert, len(self._window))


@dataclass(frozen=True)
class KsConfig:
    """Window sizes and the KS threshold of a `KsMonitor`.

    The alert threshold on the KS distance D is the larger of its critical value at
    ``alpha`` for the two sample sizes (one check's false-alarm rate) and
    ``min_effect``, so that a large window does not flag a shift too small to matter.
    """

    reference: int = 5000
    sample: int = 5000
    window: int = 1000
    every: int = 250
    alpha: float = 1e-6
    min_effect: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.reference, self.sample, self.window, self.every) < 1:
            raise ValueError("reference, sample, window and every must be positive")

    @property
    def sample_size(self) -> int:
        """The sample is drawn from the reference, so it holds at most that many."""
        return min(self.sample, self.reference)

    @property
    def threshold(self) -> float:
        """Alert when the KS distance exceeds this.

        >>> round(KsConfig().threshold, 3), round(KsConfig(window=20_000).threshold, 3)
        (0.093, 0.05)
        """
        n, m = self.sample_size, self.window
        critical = math.sqrt(-math.log(self.alpha / 2) / 2) * math.sqrt((n + m) / (n * m))
        return max(critical, self.min_effect)


class KsMonitor:
    """KS distance between a sample of the first ``reference`` values and the latest ones.

    The sample is a uniform reservoir sample of the reference observations, so its
    size stays ``sample`` whatever ``reference`` is; the window is a ring buffer.
    """

    statistic = "ks"

    def __init__(self, name: str, config: KsConfig | None = None) -> None:
        self.name = name
        self.config = config or KsConfig()
        self.rebase()

    def rebase(self) -> None:
        """Take the next ``reference`` observations as the reference."""
        c = self.config
        self._rng = np.random.default_rng(c.seed)
        self._sample = np.empty(c.sample_size)
        self._seen = 0
        self._ring = np.empty(c.window)
        self._filled = 0
        self._since = 0
        self.value: float | None = None

    def update(self, x: float) -> Alert | None:
        c = self.config
        if self._seen < c.reference:
            self._reservoir(float(x))
            return None
        self._ring[self._filled % c.window] = x
        self._filled += 1
        self._since += 1
        if self._filled < c.window or self._since < c.every:
            return None
        self._since = 0
        self.value = float(stats.ks_2samp(self._sample, self._ring, method="asymp").statistic)
        if self.value <= c.threshold:
            return None
        return Alert(self.name, self.statistic, self.value, c.threshold, c.window)

    def update_many(self, values: Iterable[float]) -> list[Alert]:
        """Feed a micro-batch in order; the alerts it raised."""
        return [a for a in map(self.update, values) if a is not None]

    def _reservoir(self, x: float) -> None:
        # Algorithm R: after n values, each has had the same chance to be in the sample.
        n, size = self._seen, self.config.sample_size
        if n < size:
            self._sample[n] = x
        else:
            j = int(self._rng.integers(n + 1))
            if j < size:
                self._sample[j] = x
        self._seen += 1
        if self._seen == self.config.reference:
            self._since = self.config.every - self.config.window


SEGMENT_MIX = MixConfig(reference=2000, window=1000, every=250, skip=2000, lag=3000)


def segment_mix_monitor(name: str = "segment_mix") -> PsiMonitor:
    """PSI over the segments of the users seen, on smaller windows than categories.

    With k segments, PSI between two samples of the same mix has an expectation near
    (k - 1)(1/reference + 1/window): 0.0075 for six segments here, or about three times
    that when each user's events come in sessions of about three, far below the 0.25
    alert. The stream's segments are known only once the segmentation is seeded, and
    the smaller windows make up for that late start. The first 2,000 are skipped: an
    online K-means moves its centroids most in its first updates, and a reference taken
    then holds segments that no longer mean the same. For the same reason the
    reference trails the window by 3,000: centroids that keep learning wander, and over
    a long run the shares against the first reference drift as far as a wave does (PSI
    0.25 after 50,000 purchases of a stationary generated shop, where the trailing
    reference stays quiet over 102,991: tests/streams/test_drift.py).
    """
    return PsiMonitor(name, SEGMENT_MIX)


def share_monitor(name: str, delta: float = 0.002) -> Adwin:
    """ADWIN on a 0/1 stream: 1 for each event whose item (or user) is new."""
    return Adwin(name, AdwinConfig(delta=delta))
