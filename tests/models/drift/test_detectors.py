"""The River wrappers: what their alerts report, Page-Hinkley and KSWIN, rebasing."""

from __future__ import annotations

import numpy as np
import pytest

from models.drift import (
    Adwin,
    AdwinConfig,
    Kswin,
    PageHinkley,
    ScoreMonitor,
    hit_rate_monitor,
)


def test_adwin_alert_reports_the_level_now_and_before() -> None:
    rng = np.random.default_rng(3)
    monitor = hit_rate_monitor()
    values = np.concatenate([rng.random(20_000) < 0.10, rng.random(5_000) < 0.05])
    alerts = monitor.update_many(values.astype(float).tolist())
    assert len(alerts) >= 1
    first = alerts[0]
    assert abs(first.threshold - 0.10) < 0.01  # ADWIN's window before the cut
    assert abs(first.value - 0.05) < 0.03  # the last 256 hits
    assert first.window > 19_000
    assert monitor.n == 25_000


def test_the_hit_rate_monitor_alerts_on_a_fall_and_not_on_a_rise() -> None:
    rng = np.random.default_rng(4)
    rise = np.concatenate([rng.random(20_000) < 0.05, rng.random(5_000) < 0.10])
    fall = np.concatenate([rng.random(20_000) < 0.10, rng.random(5_000) < 0.05])
    assert hit_rate_monitor().update_many(rise.astype(float).tolist()) == []
    assert hit_rate_monitor().update_many(fall.astype(float).tolist())
    both = Adwin("m", AdwinConfig(direction="both"))
    assert both.update_many(rise.astype(float).tolist())


def test_adwin_keeps_only_its_recent_buffer() -> None:
    monitor = Adwin("m", AdwinConfig(recent=64))
    monitor.update_many([0.5] * 10_000)
    assert len(monitor._recent) == 64
    assert abs(monitor.estimation - 0.5) < 1e-9


def test_page_hinkley_flags_a_shift_of_one_deviation_and_not_noise() -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        monitor = PageHinkley("standardised_score")
        assert monitor.update_many(rng.normal(0, 1, 100_000).tolist()) == []
        monitor = PageHinkley("standardised_score")
        values = np.concatenate([rng.normal(0, 1, 5_000), rng.normal(1, 1, 1_000)])
        fired = [i for i, x in enumerate(values.tolist()) if monitor.update(x) is not None]
        assert fired and 5_000 <= fired[0] <= 5_100, fired[:3]


def test_page_hinkley_alert_carries_its_statistic() -> None:
    monitor = PageHinkley("x")
    alerts = monitor.update_many([0.0] * 100 + [3.0] * 100)
    assert alerts[0].statistic == "page_hinkley"
    assert alerts[0].value > alerts[0].threshold == 25.0


def test_kswin_flags_a_shift_within_a_hundred_values() -> None:
    rng = np.random.default_rng(0)
    monitor = Kswin("score_distribution")
    values = np.concatenate([rng.normal(0, 1, 1_000), rng.normal(1, 1, 300)])
    fired = [i for i, x in enumerate(values.tolist()) if monitor.update(x) is not None]
    assert fired and 1_000 <= fired[0] <= 1_100
    assert monitor.update_many(rng.normal(5, 1, 1).tolist()) == []


def test_score_monitor_ignores_scale_and_rebases() -> None:
    rng = np.random.default_rng(1)
    for scale in (1e-3, 1.0, 1e3):  # raw ADWIN alarms on scores of scale 100
        monitor = ScoreMonitor("score_distribution", reference=1000)
        assert monitor.update_many((rng.normal(8, 2, 50_000) * scale).tolist()) == []
    monitor = ScoreMonitor("score_distribution", reference=1000)
    monitor.update_many(rng.normal(8, 2, 5_000).tolist())
    assert monitor.rank(8.0) == pytest.approx(0.5, abs=0.05)
    monitor.rebase()
    assert monitor.update_many(rng.normal(20, 2, 5_000).tolist()) == []  # the new normal
    assert monitor.rank(20.0) == pytest.approx(0.5, abs=0.05)
