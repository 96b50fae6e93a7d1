"""PSI and KS monitors: the statistic, bounded memory, and the synthetic shop's drift."""

from __future__ import annotations

import numpy as np
import pytest

from models.datasets import generate
from models.drift import KsConfig, KsMonitor, MixConfig, PsiMonitor, psi
from models.drift.mix import OTHER


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    ref = np.array([400, 300, 200, 100])
    assert psi(ref, ref * 3) == pytest.approx(0.0, abs=1e-12)
    small = psi(ref, np.array([380, 310, 200, 110]))
    large = psi(ref, np.array([200, 300, 200, 300]))
    assert 0 < small < 0.1 < 0.25 < large


def test_psi_monitor_levels_and_unseen_categories() -> None:
    monitor = PsiMonitor("category_mix", MixConfig(reference=1000, window=400, every=100))
    rng = np.random.default_rng(0)
    assert monitor.update_many(rng.choice(["a", "b"], 1400).tolist()) == []
    assert monitor.level == "ok" and monitor.value is not None and monitor.value < 0.1
    assert set(monitor.categories) == {"a", "b", OTHER} and monitor.categories[-1] == OTHER
    # A category the reference never saw takes a third of the window.
    alerts = monitor.update_many(rng.choice(["a", "b", "z"], 400).tolist())
    assert alerts and monitor.level == "alert" and alerts[-1].window == 400


def test_psi_monitor_skips_before_its_reference() -> None:
    monitor = PsiMonitor("m", MixConfig(reference=500, window=200, every=100, skip=300))
    # What comes while the source settles is not the reference: "b" never enters it.
    monitor.update_many(["b"] * 300 + ["a"] * 500)
    assert monitor.categories == ["a", OTHER]
    assert monitor.update_many(["a"] * 200) == [] and monitor.value == pytest.approx(0.0)


def test_a_trailing_reference_lets_slow_wander_pass_and_catches_a_jump() -> None:
    rng = np.random.default_rng(2)
    config = MixConfig(reference=1000, window=500, every=100, lag=1000)

    def stream(shares: np.ndarray) -> list:
        return [int(rng.random() < p) for p in shares]

    # The share of category 1 drifts from 0.2 to 0.6 over 40,000 observations.
    wander = stream(np.linspace(0.2, 0.6, 40_000))
    assert PsiMonitor("m", config).update_many(wander) == []
    fixed = PsiMonitor("m", MixConfig(reference=1000, window=500, every=100))
    assert fixed.update_many(wander)  # against the first reference it is an alarm
    # A jump from 0.2 to 0.6 is flagged, and stops once the reference has caught up.
    monitor = PsiMonitor("m", config)
    jump = stream(np.full(5000, 0.2)) + stream(np.full(6000, 0.6))
    fired = [i for i, x in enumerate(jump) if monitor.update(x) is not None]
    assert fired and 5000 < fired[0] <= 5500
    assert fired[-1] < 5000 + 500 + 1000 + 1000


def test_psi_monitor_caps_its_categories() -> None:
    monitor = PsiMonitor(
        "item_mix", MixConfig(reference=5000, window=500, every=100, max_categories=10)
    )
    rng = np.random.default_rng(1)
    monitor.update_many(rng.integers(0, 10_000, 20_000).tolist())  # ids, not categories
    assert len(monitor.categories) == 10
    assert len(monitor._window) == 500 and monitor._counts.sum() == 500
    assert len(monitor._first) == 0


def test_ks_monitor_memory_is_fixed_and_the_sample_is_uniform() -> None:
    config = KsConfig(reference=50_000, sample=2000, window=500, every=100)
    monitor = KsMonitor("price_level", config)
    monitor.update_many(np.arange(60_000, dtype=float).tolist())
    assert monitor._sample.shape == (2000,) and monitor._ring.shape == (500,)
    # A reservoir sample of 0..49,999 has its mean near 25,000, not near the start.
    assert abs(monitor._sample.mean() - 25_000) < 1_500
    assert monitor._sample.max() < 50_000


def test_ks_monitor_rebase_takes_a_new_reference() -> None:
    monitor = KsMonitor("price_level", KsConfig(reference=2000, window=500, every=100))
    rng = np.random.default_rng(2)
    monitor.update_many(rng.normal(0, 1, 3000).tolist())
    assert monitor.update_many(rng.normal(2, 1, 1000).tolist())
    monitor.rebase()
    assert monitor.update_many(rng.normal(2, 1, 10_000).tolist()) == []


@pytest.fixture(scope="module")
def drifting_purchases() -> tuple[list[tuple[int, str, float]], int]:
    shop = generate(drift_at=0.5, price_drift=1.3)
    assert shop.drift_ts is not None
    rows = [
        (r["ts"], shop.item_category[r["item_id"]], r["price"])
        for kind, r in shop.events
        if kind == "purchase"
    ]
    return rows, shop.drift_ts


def _first_alert_ts(monitor: PsiMonitor | KsMonitor, rows: list, column: int) -> list[int]:
    fired = []
    for start in range(0, len(rows), 500):  # micro-batches in time order
        batch = rows[start : start + 500]
        for row in batch:
            if monitor.update(row[column]) is not None:
                fired.append(row[0])
    return fired


def test_category_mix_of_the_synthetic_shop_fires_after_its_drift(drifting_purchases) -> None:
    """Within 2,500 purchases (one window and one check) of drift_ts, none before."""
    rows, drift_ts = drifting_purchases
    fired = _first_alert_ts(PsiMonitor("category_mix"), rows, 1)
    assert fired and min(fired) >= drift_ts
    at = next(i for i, r in enumerate(rows) if r[0] >= drift_ts)
    first = next(i for i, r in enumerate(rows) if r[0] == fired[0])
    assert first - at <= 2_500


def test_price_level_of_the_synthetic_shop_fires_after_its_drift(drifting_purchases) -> None:
    rows, drift_ts = drifting_purchases
    fired = _first_alert_ts(KsMonitor("price_level"), rows, 2)
    assert fired and min(fired) >= drift_ts
    at = next(i for i, r in enumerate(rows) if r[0] >= drift_ts)
    first = next(i for i, r in enumerate(rows) if r[0] == fired[0])
    assert first - at <= 1_250


def test_price_drift_scales_only_the_prices_after_drift_ts() -> None:
    plain = generate(n_users=200, drift_at=0.5)
    risen = generate(n_users=200, drift_at=0.5, price_drift=1.3)
    assert plain.drift_ts == risen.drift_ts and plain.drift_ts is not None
    assert "price_drift=1.3" in risen.source and "price_drift" not in plain.source
    for (_, a), (_, b) in zip(plain.events, risen.events, strict=True):
        assert a["item_id"] == b["item_id"] and a["ts"] == b["ts"]
        expected = round(a["price"] * 1.3, 2) if a["ts"] >= plain.drift_ts else a["price"]
        assert b["price"] == expected
    with pytest.raises(ValueError):
        generate(n_users=10, price_drift=1.3)
