"""A/B tests: the salted split, the attribution behind the report, its tests and outputs."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.abtest import (
    CONTROL,
    TREATMENT,
    ABReport,
    ArmTotals,
    Purchase,
    Recommendation,
    assign,
    bucket,
    report,
    totals,
)

DAY_MS = 86_400_000
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("share", [0.5, 0.2])
def test_split_matches_the_setting_on_100k_users(share: float) -> None:
    arms = [assign(f"user-{u}", "exp-1", share) for u in range(100_000)]
    assert abs(arms.count(TREATMENT) / len(arms) - share) < 0.01


def test_split_is_stable_across_processes_and_fresh_per_salt() -> None:
    users = [f"user-{u}" for u in range(200)]
    here = [assign(u, "exp-1", 0.5) for u in users]
    code = (
        "from models.abtest import assign\n"
        f"print(','.join(assign(u, 'exp-1', 0.5) for u in {users!r}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another str hash; must not matter
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().split(",") == here
    assert round(bucket("user-0", "exp-1"), 6) == round(bucket("user-0", "exp-1"), 6)
    other = [assign(u, "exp-2", 0.5) for u in users]
    agree = sum(a == b for a, b in zip(here, other, strict=True)) / len(users)
    assert 0.35 < agree < 0.65  # a new salt reshuffles: about half keep their arm
    with pytest.raises(ValueError):
        assign("u", "s", 1.5)


def test_attribution_by_hand() -> None:
    recs = [
        Recommendation("u1", 1000, ("a", "b", "c", "d")),
        Recommendation("u1", 2000, ("e",)),
        Recommendation("u2", 500, ("a",)),
        Recommendation("u3", 0, ("a", "b")),
    ]
    purchases = [
        Purchase("u1", 900, "x", 5.0),  # before the first recommendation: not counted
        Purchase("u1", 1050, "b", 10.0),  # rank 2 within the window: a hit, RR 1/2
        Purchase("u1", 1060, "d", 20.0),  # rank 4, beyond k = 3
        Purchase("u1", 1200, "c", 30.0),  # after the window: only basket value
        Purchase("u2", 500, "a", 7.0),  # at the very time: a hit, RR 1
        Purchase("u3", 101, "a", 4.0),  # 101 ms after a 100 ms window
    ]
    got = totals(recs, purchases, lambda user: TREATMENT, window_ms=100, k=3)
    assert got == {
        TREATMENT: ArmTotals(
            users=3,
            converted=2,
            recommendations=4,
            hits=2,
            rr_sum=1.5,
            rr_squares=1.25,
            value_sum=71.0,
            value_squares=60.0**2 + 7.0**2 + 4.0**2,
        )
    }


def simulate(
    seed: int, n_users: int, follow: dict[str, float], k: int = 10
) -> tuple[list[Recommendation], list[Purchase]]:
    """Users see 1 to 3 lists; after each, they buy one of its items with the arm's
    probability (ranks near the top likelier), and buy unrelated items besides."""
    rng = np.random.default_rng(seed)
    recs: list[Recommendation] = []
    purchases: list[Purchase] = []
    for u in range(n_users):
        user = f"u{seed}-{u}"
        p = follow[assign(user, f"exp-{seed}", 0.5)]
        n = int(rng.integers(1, 4))
        starts = np.sort(rng.integers(0, 20 * DAY_MS, n))
        shown = rng.integers(0, 500, (n, k))
        follows = rng.random(n) < p
        ranks = np.minimum(rng.geometric(0.3, n), k) - 1
        delays = rng.integers(0, DAY_MS, n)
        for t, items, f, r, d in zip(starts, shown, follows, ranks, delays, strict=True):
            names = tuple(f"i{i}" for i in items)
            recs.append(Recommendation(user, int(t), names))
            if f:
                purchases.append(Purchase(user, int(t + d), names[r], float(rng.lognormal(3, 0.5))))
        for _ in range(int(rng.poisson(0.5))):
            when, item = int(rng.integers(0, 25 * DAY_MS)), f"i{int(rng.integers(500))}"
            purchases.append(Purchase(user, when, item, float(rng.lognormal(3, 0.5))))
    return recs, purchases


def _report(seed: int, n_users: int, control: float, treatment: float) -> ABReport:
    recs, purchases = simulate(seed, n_users, {CONTROL: control, TREATMENT: treatment})
    arm_of = functools.partial(assign, salt=f"exp-{seed}", treatment=0.5)
    return report(totals(recs, purchases, arm_of, window_ms=DAY_MS, k=10), k=10, window_ms=DAY_MS)


def test_a_better_treatment_is_significant() -> None:
    r = _report(0, 6_000, control=0.05, treatment=0.08)
    conv = r.conversion
    assert conv.treatment.value > conv.control.value
    assert conv.p_value < 1e-3 and conv.low > 0
    assert 0.3 < conv.lift < 0.8  # about 0.6 more per list, diluted by unrelated buys
    assert r.estimates["HR@10"][TREATMENT].value > r.estimates["HR@10"][CONTROL].high
    assert r.basket_value.difference > 0 and r.basket_value.test == "welch_t"
    assert r.arms[CONTROL].users + r.arms[TREATMENT].users == 6_000
    for per_arm in r.estimates.values():
        for e in per_arm.values():
            assert e.low <= e.value <= e.high


def test_equal_arms_are_rarely_significant() -> None:
    """40 fixed seeds: about 5% of the tests may come out significant, not many more."""
    reports = [_report(seed, 1_500, control=0.06, treatment=0.06) for seed in range(40)]
    conversion = sum(r.conversion.significant() for r in reports)
    basket = sum(r.basket_value.significant() for r in reports)
    assert conversion <= 5 and basket <= 5, (conversion, basket)
    covered = sum(r.conversion.low <= 0 <= r.conversion.high for r in reports)
    assert covered >= 35


def test_markdown_and_plot(tmp_path: Path) -> None:
    r = _report(1, 2_000, control=0.05, treatment=0.08)
    table = r.markdown()
    lines = table.splitlines()
    assert lines[0].startswith("| metric | control | treatment |")
    assert len(lines) == 7
    assert any(line.startswith("| conversion |") and "(z)" in line for line in lines)
    assert any(line.startswith("| basket value |") and "(welch_t)" in line for line in lines)
    assert any(line.startswith("| HR@10 |") for line in lines)
    png = r.plot(tmp_path / "ab.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_report_needs_both_arms() -> None:
    with pytest.raises(ValueError):
        report({CONTROL: ArmTotals(users=10)}, k=10, window_ms=DAY_MS)
