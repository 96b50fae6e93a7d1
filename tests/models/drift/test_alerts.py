"""Alerts become DriftAlert records; the debouncer lets one through per cooldown."""

from __future__ import annotations

from models.drift import Alert, Debouncer
from schemas import Codec


def test_record_encodes_as_a_drift_alert() -> None:
    alert = Alert("category_mix", "psi", 0.41, 0.25, 2000)
    record = alert.record("sasrec-v2", 1_704_067_200_000)
    codec = Codec()
    decoded = codec.decode("DriftAlert", codec.encode("DriftAlert", record))
    assert decoded["monitor"] == "category_mix" and decoded["window"] == 2000
    assert decoded["value"] == 0.41 and decoded["model_version"] == "sasrec-v2"


def test_cooldown_in_events_is_per_monitor() -> None:
    d = Debouncer(cooldown_events=1000)
    psi = Alert("category_mix", "psi", 0.4, 0.25, 2000)
    ks = Alert("price_level", "ks", 0.2, 0.09, 1000)
    assert d.filter([psi, ks, psi], events=500) == [psi, ks]
    assert d.filter([psi], events=999) == []
    assert d.filter([psi, ks], events=1) == [psi, ks]
    assert d.filter([ks], events=999) == []


def test_cooldown_in_seconds_uses_the_clock_and_both_must_pass() -> None:
    now = [0.0]
    d = Debouncer(cooldown_events=10, cooldown_s=60.0, clock=lambda: now[0])
    a = Alert("online_hit_rate", "adwin_mean", 0.05, 0.1, 900)
    assert d.admit(a)
    now[0] = 120.0
    assert not d.admit(a)  # enough seconds, too few events
    d.tick(10)
    assert d.admit(a)
    d.tick(10)
    now[0] = 150.0
    assert not d.admit(a)  # enough events, but 30 s since the last one let through
    now[0] = 180.0
    assert d.admit(a)


def test_no_cooldown_lets_everything_through() -> None:
    d = Debouncer(cooldown_events=0)
    a = Alert("m", "psi", 1.0, 0.25, 10)
    assert d.filter([a, a, a]) == [a, a, a]
