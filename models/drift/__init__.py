"""Drift monitoring: River's detectors and input-mix monitors behind one alert type.

Every monitor speaks ``update(x) -> Alert | None`` and ``update_many(values) ->
list[Alert]``; the stream feeds them one micro-batch at a time, passes the alerts
through a `Debouncer` and publishes them as ``DriftAlert`` records.
"""

from models.drift.alerts import Alert, Debouncer
from models.drift.detectors import (
    Adwin,
    AdwinConfig,
    Kswin,
    KswinConfig,
    Monitor,
    PageHinkley,
    PageHinkleyConfig,
    ScoreMonitor,
    hit_rate_monitor,
    score_monitor,
)
from models.drift.mix import (
    KsConfig,
    KsMonitor,
    MixConfig,
    PsiMonitor,
    psi,
    segment_mix_monitor,
    share_monitor,
)

__all__ = [
    "Adwin",
    "AdwinConfig",
    "Alert",
    "Debouncer",
    "KsConfig",
    "KsMonitor",
    "Kswin",
    "KswinConfig",
    "MixConfig",
    "Monitor",
    "PageHinkley",
    "PageHinkleyConfig",
    "PsiMonitor",
    "ScoreMonitor",
    "hit_rate_monitor",
    "psi",
    "score_monitor",
    "segment_mix_monitor",
    "share_monitor",
]
