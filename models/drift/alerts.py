"""Drift alerts: what a monitor reports, and a debouncer that keeps one per incident.

>>> a = Alert("online_hit_rate", "adwin_mean_gap", -0.05, 0.03, 1800)
>>> a.record("sasrec-v3", 1_700_000_000_000)["monitor"]
'online_hit_rate'
>>> ticks = iter([0.0, 10.0, 100.0])
>>> d = Debouncer(cooldown_events=0, cooldown_s=60.0, clock=lambda: next(ticks))
>>> [d.admit(a) for _ in range(3)]
[True, False, True]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Alert:
    """A monitor crossed its threshold (the ``DriftAlert`` schema less version and time).

    ``value`` is the statistic as observed and ``threshold`` the bound it crossed;
    ``window`` is how many observations the statistic was computed over. The stream
    adds the serving model version and the detection time with `record`.
    """

    monitor: str
    statistic: str
    value: float
    threshold: float
    window: int

    def record(self, model_version: str, ts: int) -> dict[str, Any]:
        """The ``DriftAlert`` record (schemas/drift_alert.avsc); ``ts`` in epoch ms."""
        return {**asdict(self), "model_version": model_version, "ts": int(ts)}


class Debouncer:
    """At most one alert per monitor per cooldown, in events and/or seconds.

    A monitor against a fixed reference fires at every check while a shift lasts, and
    ADWIN can cut several times in a row during a gradual change; whoever reads the
    alert topic wants one alert per incident, and a reminder once the cooldown is over
    if the drift is still there. An alert is let through when, since the last one let
    through for the same monitor, at least ``cooldown_events`` events (counted with
    `tick`) and at least ``cooldown_s`` seconds (by ``clock``) have passed. Events make
    replays deterministic, since a replay runs faster than the wall clock; seconds bound
    the rate a person on call sees.
    """

    def __init__(
        self,
        cooldown_events: int = 10_000,
        cooldown_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cooldown_events < 0 or cooldown_s < 0:
            raise ValueError("cooldowns must not be negative")
        self.cooldown_events = cooldown_events
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._events = 0
        self._last: dict[str, tuple[int, float]] = {}  # monitor -> (events, seconds) then

    def tick(self, n: int = 1) -> None:
        """Count ``n`` more events on the stream."""
        self._events += n

    def admit(self, alert: Alert) -> bool:
        """Whether ``alert`` goes out; if it does, its monitor's cooldown starts again."""
        now = self._clock()
        last = self._last.get(alert.monitor)
        if last is not None and (
            self._events - last[0] < self.cooldown_events or now - last[1] < self.cooldown_s
        ):
            return False
        self._last[alert.monitor] = (self._events, now)
        return True

    def filter(self, alerts: Iterable[Alert], events: int = 0) -> list[Alert]:
        """Count ``events`` (one micro-batch), then keep the alerts that go out."""
        self.tick(events)
        return [a for a in alerts if self.admit(a)]
