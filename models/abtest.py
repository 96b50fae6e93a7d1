"""A/B tests of recommenders: a salted split of users and the report on the two arms.

`assign` puts a user in an arm by a keyed hash of the user id, the same in every
process and after every restart (Python's ``hash`` is salted per process). A new
``salt`` per experiment gives a split independent of the last one.

>>> [assign(u, "exp-2024-06", 0.5) for u in ("u1", "u2", "u3", "u4")]
['treatment', 'control', 'control', 'treatment']
>>> round(bucket("u2", "exp-2024-06"), 6), round(bucket("u2", "exp-2024-07"), 6)
(0.724977, 0.945252)
>>> assign("u2", "exp-2024-06", 1.0), assign("u2", "exp-2024-06", 0.0)
('treatment', 'control')

The report attributes a purchase to a recommendation when the user bought one of
its first ``k`` items within ``window_ms`` after it, and compares per arm:
conversion (share of exposed users with an attributed purchase), online HR@k and
MRR@k (per recommendation) and basket value (purchase value per exposed user from
their first recommendation on, zero for those who bought nothing). Recommendations
of one user are not independent, so HR and MRR get intervals but no test; the tests
are the two-proportion z-test on conversion and Welch's t-test on basket value.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from scipy import stats

CONTROL, TREATMENT = "control", "treatment"


def bucket(uid: str, salt: str) -> float:
    """The user's position in [0, 1) for this salt, from BLAKE2b of salt and id."""
    # The NUL keeps ("ab", "c") and ("a", "bc") apart.
    digest = hashlib.blake2b(f"{salt}\0{uid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign(uid: str, salt: str, treatment: float) -> str:
    """``"treatment"`` for the share ``treatment`` of users, ``"control"`` otherwise."""
    if not 0.0 <= treatment <= 1.0:
        raise ValueError(f"treatment must lie in [0, 1], got {treatment}")
    return TREATMENT if bucket(uid, salt) < treatment else CONTROL


@dataclass(frozen=True)
class Recommendation:
    """A list shown to a user at ``ts`` (epoch ms), best first."""

    user: str
    ts: int
    items: tuple[str, ...]


@dataclass(frozen=True)
class Purchase:
    user: str
    ts: int
    item: str
    value: float


@dataclass(frozen=True)
class ArmTotals:
    """Sums over one arm, enough for every statistic of the report; they add up."""

    users: int = 0
    converted: int = 0
    recommendations: int = 0
    hits: int = 0
    rr_sum: float = 0.0
    rr_squares: float = 0.0
    value_sum: float = 0.0
    value_squares: float = 0.0

    def __add__(self, other: ArmTotals) -> ArmTotals:
        return ArmTotals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def totals(
    recommendations: Iterable[Recommendation],
    purchases: Iterable[Purchase],
    arm_of: Callable[[str], str],
    window_ms: int,
    k: int = 10,
) -> dict[str, ArmTotals]:
    """Attribute purchases to recommendations and sum them per arm (``arm_of(user)``)."""
    bought: dict[str, list[Purchase]] = defaultdict(list)
    for p in purchases:
        bought[p.user].append(p)
    for ps in bought.values():
        ps.sort(key=lambda p: p.ts)
    by_user: dict[str, list[Recommendation]] = defaultdict(list)
    for r in recommendations:
        by_user[r.user].append(r)

    out: dict[str, ArmTotals] = {}
    for user, recs in by_user.items():
        ps = bought.get(user, [])
        times = [p.ts for p in ps]
        hits, rr, rr2 = 0, 0.0, 0.0
        for r in recs:
            lo = bisect.bisect_left(times, r.ts)
            hi = bisect.bisect_right(times, r.ts + window_ms)
            taken = {p.item for p in ps[lo:hi]}
            ranks = [i for i, item in enumerate(r.items[:k], 1) if item in taken]
            if ranks:
                hits += 1
                rr += 1 / ranks[0]
                rr2 += 1 / ranks[0] ** 2
        first = min(r.ts for r in recs)
        value = sum(p.value for p in ps[bisect.bisect_left(times, first) :])
        arm = arm_of(user)
        out[arm] = out.get(arm, ArmTotals()) + ArmTotals(
            1, int(hits > 0), len(recs), hits, rr, rr2, value, value * value
        )
    return out


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion (sound near 0 and 1, unlike the Wald one).

    >>> [round(x, 3) for x in wilson(8, 100)]
    [0.041, 0.15]
    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Estimate:
    """A statistic of one arm with its confidence interval, over ``n`` units."""

    value: float
    low: float
    high: float
    n: int
    sd: float = math.nan  # per unit, for means


def _proportion(successes: int, n: int, z: float) -> Estimate:
    return Estimate(successes / n if n else math.nan, *wilson(successes, n, z), n)


def _mean(total: float, squares: float, n: int, z: float) -> Estimate:
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = total / n
    sd = math.sqrt(max(squares - n * mean * mean, 0.0) / (n - 1)) if n > 1 else 0.0
    half = z * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n, sd)


@dataclass(frozen=True)
class Comparison:
    """Treatment against control: difference with its interval, lift, test and p-value."""

    metric: str
    control: Estimate
    treatment: Estimate
    difference: float
    low: float
    high: float
    lift: float  # difference / control
    test: str
    statistic: float
    p_value: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def compare_proportions(metric: str, c: Estimate, t: Estimate, z: float) -> Comparison:
    """Two-proportion z-test (pooled) and a Wald interval of the difference."""
    (p1, n1), (p2, n2) = (c.value, c.n), (t.value, t.n)
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    stat = (p2 - p1) / se0 if se0 > 0 else 0.0
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    diff = p2 - p1
    p_value = float(2 * stats.norm.sf(abs(stat)))
    lift = diff / p1 if p1 > 0 else math.nan
    return Comparison(metric, c, t, diff, diff - z * se, diff + z * se, lift, "z", stat, p_value)


def compare_means(metric: str, c: Estimate, t: Estimate, confidence: float) -> Comparison:
    """Welch's t-test and its interval of the difference (Welch-Satterthwaite df)."""
    v1, v2 = c.sd**2 / c.n, t.sd**2 / t.n
    diff = t.value - c.value
    result = stats.ttest_ind_from_stats(t.value, t.sd, t.n, c.value, c.sd, c.n, equal_var=False)
    se = math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / (c.n - 1) + v2**2 / (t.n - 1)) if se > 0 else 1.0
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    lift = diff / c.value if c.value > 0 else math.nan
    stat, p_value = float(result.statistic), float(result.pvalue)
    return Comparison(metric, c, t, diff, diff - half, diff + half, lift, "welch_t", stat, p_value)


def _cell(e: Estimate, scale: float, unit: str, digits: int) -> str:
    v, lo, hi = e.value * scale, e.low * scale, e.high * scale
    return f"{v:.{digits}f}{unit} [{lo:.{digits}f}, {hi:.{digits}f}]"


@dataclass(frozen=True)
class ABReport:
    """Per arm estimates (metric -> arm -> estimate) and the two tests."""

    k: int
    window_ms: int
    confidence: float
    arms: dict[str, ArmTotals]
    estimates: dict[str, dict[str, Estimate]]
    conversion: Comparison
    basket_value: Comparison

    def markdown(self) -> str:
        """A Markdown table: each arm's value [interval], then difference, lift and p."""
        pct = {"conversion", f"HR@{self.k}"}
        tested = {"conversion": self.conversion, "basket value": self.basket_value}
        level = f"{self.confidence:.0%}"
        lines = [
            f"| metric | {CONTROL} | {TREATMENT} | difference [{level}] | lift | p-value |",
            "|---|---|---|---|---|---|",
            f"| users exposed | {self.arms[CONTROL].users} | {self.arms[TREATMENT].users} | | | |",
        ]
        for metric, per_arm in self.estimates.items():
            scale, unit = (100.0, "%") if metric in pct else (1.0, "")
            digits = 4 if metric.startswith("MRR") else 2  # a reciprocal rank is small
            cells = [_cell(per_arm[arm], scale, unit, digits) for arm in (CONTROL, TREATMENT)]
            row = f"| {metric} | {cells[0]} | {cells[1]} |"
            cmp = tested.get(metric)
            if cmp is None:
                lines.append(row + " | | |")
                continue
            unit = " pp" if metric in pct else ""
            lines.append(
                row + f" {cmp.difference * scale:+.2f}{unit} [{cmp.low * scale:+.2f}, "
                f"{cmp.high * scale:+.2f}] | {cmp.lift:+.1%} | {cmp.p_value:.3g} ({cmp.test}) |"
            )
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """Bars per arm with their confidence intervals as whiskers, one panel a metric."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        fig, axes = plt.subplots(1, len(self.estimates), figsize=(3.0 * len(self.estimates), 3.4))
        tested = {"conversion": self.conversion, "basket value": self.basket_value}
        for ax, (metric, per_arm) in zip(axes, self.estimates.items(), strict=True):
            arms = [CONTROL, TREATMENT]
            values = [per_arm[a].value for a in arms]
            errors = [
                [per_arm[a].value - per_arm[a].low for a in arms],
                [per_arm[a].high - per_arm[a].value for a in arms],
            ]
            ax.bar(arms, values, yerr=errors, capsize=6, color=["#8c8c8c", "#2b7bba"])
            title = metric
            if metric in tested:
                title += f"\np = {tested[metric].p_value:.3g}"
            ax.set_title(title, fontsize=10)
        fig.suptitle(f"A/B test, {self.confidence:.0%} intervals", fontsize=11)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def report(
    arms: Mapping[str, ArmTotals], k: int, window_ms: int, confidence: float = 0.95
) -> ABReport:
    """The report from per-arm totals (from `totals`, or kept by the stream)."""
    missing = {CONTROL, TREATMENT} - set(arms)
    if missing or any(arms[a].users < 2 for a in (CONTROL, TREATMENT)):
        raise ValueError(f"each arm needs at least two exposed users (missing: {missing})")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    estimates: dict[str, dict[str, Estimate]] = {
        "conversion": {},
        f"HR@{k}": {},
        f"MRR@{k}": {},
        "basket value": {},
    }
    for arm in (CONTROL, TREATMENT):
        a = arms[arm]
        estimates["conversion"][arm] = _proportion(a.converted, a.users, z)
        estimates[f"HR@{k}"][arm] = _proportion(a.hits, a.recommendations, z)
        estimates[f"MRR@{k}"][arm] = _mean(a.rr_sum, a.rr_squares, a.recommendations, z)
        estimates["basket value"][arm] = _mean(a.value_sum, a.value_squares, a.users, z)
    conv, basket = estimates["conversion"], estimates["basket value"]
    return ABReport(
        k,
        window_ms,
        confidence,
        {arm: arms[arm] for arm in (CONTROL, TREATMENT)},
        estimates,
        compare_proportions("conversion", conv[CONTROL], conv[TREATMENT], z),
        compare_means("basket value", basket[CONTROL], basket[TREATMENT], confidence),
    )
