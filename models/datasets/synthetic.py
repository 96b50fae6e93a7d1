"""A generated shop with planted ground truth, to check that models find what is there.

Users belong to segments; each segment prefers a few categories and a price level.
Every item has a fixed successor in its category, and a user's next purchase follows
it with probability ``FOLLOW_PROB``; that is the pattern a sequence model should
learn. With ``drift_at`` the segments switch to other categories at that fraction of
the timeline, which drift monitors should notice; ``price_drift`` also scales the
prices paid from then on.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.datasets.base import Dataset, Event, sort_events
from models.datasets.records import Record, epoch_ms, product, purchase, review

NAME = "synthetic"
START_MS = epoch_ms(2024, 1, 1)
SPAN_MS = 30 * 86_400_000
PRICE_LEVELS = (5.0, 20.0, 80.0)
FOLLOW_PROB = 0.5
PREFERRED_PER_SEGMENT = 3
PREFERRED_MASS = 0.85
SESSION_RATE = 0.3
CLICK_GAP_MS = 120_000
CURRENCY = "EUR"


@dataclass(frozen=True)
class SyntheticDataset(Dataset):
    """A generated Dataset together with the structure planted in it."""

    segment_of: dict[str, int] = field(repr=False)
    successor: dict[str, str] = field(repr=False)
    drift_ts: int | None
    segment_categories: dict[int, list[str]]
    segment_categories_after_drift: dict[int, list[str]]
    segment_price_level: dict[int, float]
    item_category: dict[str, str] = field(repr=False)
    follow_prob: float

    @property
    def truth(self) -> dict[str, Any]:
        """Everything planted, as one plain dict (for reports and assertions)."""
        return {
            "segment_of": self.segment_of,
            "successor": self.successor,
            "drift_ts": self.drift_ts,
            "segment_categories": self.segment_categories,
            "segment_categories_after_drift": self.segment_categories_after_drift,
            "segment_price_level": self.segment_price_level,
            "item_category": self.item_category,
            "follow_prob": self.follow_prob,
        }


def generate(
    n_users: int = 2000,
    n_items: int = 500,
    n_segments: int = 4,
    events_per_user: tuple[int, int] = (5, 40),
    n_categories: int = 10,
    drift_at: float | None = None,
    seed: int = 0,
    review_rate: float = 0.0,
    price_drift: float | None = None,
) -> SyntheticDataset:
    """Generate purchases (and optionally reviews) spread over 30 days from 2024-01-01.

    ``events_per_user`` bounds each user's purchase count (inclusive). A purchase is
    followed by a review of the same item with probability ``review_rate``; ratings are
    higher for categories the user's segment prefers. With ``price_drift`` (needs
    ``drift_at``) every purchase from the drift on pays that factor times the item's
    price, as after a general price rise. The same arguments always give the same data.
    """
    lo, hi = events_per_user
    if not 1 <= lo <= hi:
        raise ValueError(f"events_per_user must satisfy 1 <= low <= high, got {events_per_user}")
    if n_items < 2 * n_categories:
        raise ValueError("n_items must be at least 2 * n_categories (each needs a successor)")
    if drift_at is not None and not 0.0 < drift_at < 1.0:
        raise ValueError(f"drift_at must lie strictly between 0 and 1, got {drift_at}")
    if price_drift is not None and (drift_at is None or not price_drift > 0):
        raise ValueError(f"price_drift must be positive and needs drift_at, got {price_drift}")
    if min(n_users, n_segments, n_categories) < 1:
        raise ValueError("n_users, n_segments and n_categories must be positive")

    rng = np.random.default_rng(seed)
    shop = _Shop.build(rng, n_items, n_categories, n_segments, drift_at is not None)
    drift_ts = None if drift_at is None else START_MS + int(drift_at * SPAN_MS)
    segments = rng.integers(n_segments, size=n_users)
    events: list[Event] = []
    for u in range(n_users):
        n = int(rng.integers(lo, hi + 1))
        events.extend(
            _user_events(rng, shop, u, int(segments[u]), n, drift_ts, review_rate, price_drift)
        )
    sort_events(events)

    def names(prefs: list[np.ndarray]) -> dict[int, list[str]]:
        return {s: [_category(c) for c in sorted(p.tolist())] for s, p in enumerate(prefs)}

    return SyntheticDataset(
        name=NAME,
        products=shop.products,
        events=events,
        source=f"generate(n_users={n_users}, n_items={n_items}, n_segments={n_segments}, "
        f"events_per_user={events_per_user}, n_categories={n_categories}, "
        f"drift_at={drift_at}, seed={seed}, review_rate={review_rate}"
        + ("" if price_drift is None else f", price_drift={price_drift}")
        + ")",
        segment_of={_user(u): int(s) for u, s in enumerate(segments)},
        successor={_item(i): _item(j) for i, j in enumerate(shop.successor)},
        drift_ts=drift_ts,
        segment_categories=names(shop.preferred[0]),
        segment_categories_after_drift=names(shop.preferred[-1]),
        segment_price_level={s: PRICE_LEVELS[lvl] for s, lvl in enumerate(shop.segment_level)},
        item_category={_item(i): _category(c) for i, c in enumerate(shop.category)},
        follow_prob=FOLLOW_PROB,
    )


@dataclass
class _Shop:
    """Items, segments and the sampling tables derived from them."""

    category: list[int]
    price: list[float]
    successor: list[int]
    # preferred[phase][segment]: phase 0 before drift, phase 1 after (when drifting)
    preferred: list[list[np.ndarray]]
    segment_level: list[int]
    # category_cdf[phase][segment], item_cdf[(price level, category)] = (items, cdf)
    category_cdf: list[list[list[float]]]
    item_cdf: dict[tuple[int, int], tuple[list[int], list[float]]]
    products: list[Record]

    @classmethod
    def build(
        cls,
        rng: np.random.Generator,
        n_items: int,
        n_categories: int,
        n_segments: int,
        drifting: bool,
    ) -> _Shop:
        # Two guaranteed items per category, so no item is its own successor.
        base = np.repeat(np.arange(n_categories), 2)
        extra = rng.integers(n_categories, size=n_items - base.size)
        category = rng.permutation(np.concatenate([base, extra])).tolist()
        level = rng.integers(len(PRICE_LEVELS), size=n_items).tolist()
        popularity = rng.lognormal(0.0, 1.0, size=n_items).tolist()
        price = [round(PRICE_LEVELS[lvl] * float(rng.lognormal(0.0, 0.25)), 2) for lvl in level]
        members = [[i for i in range(n_items) if category[i] == c] for c in range(n_categories)]
        successor = [0] * n_items
        for group in members:
            cycle = rng.permutation(group).tolist()
            for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True):
                successor[a] = b

        k = min(PREFERRED_PER_SEGMENT, n_categories)
        before = [rng.choice(n_categories, size=k, replace=False) for _ in range(n_segments)]
        preferred = [before]
        if drifting:
            preferred.append([_moved(rng, p, n_categories) for p in before])
        segment_level = rng.integers(len(PRICE_LEVELS), size=n_segments).tolist()

        category_cdf = [[_category_cdf(p, n_categories) for p in phase] for phase in preferred]
        item_cdf = {}
        for lvl, c in itertools.product(range(len(PRICE_LEVELS)), range(n_categories)):
            # Items near the segment's price level sell more; popularity spreads the rest.
            weights = [popularity[i] * math.exp(-abs(level[i] - lvl)) for i in members[c]]
            item_cdf[(lvl, c)] = (members[c], list(itertools.accumulate(weights)))

        products = [
            product(
                _item(i),
                START_MS,
                title=f"Item {i}",
                category=[_category(category[i])],
                brand=f"brand{int(rng.integers(25))}",
                price=price[i],
                stock=int(rng.integers(0, 500)),
                margin=round(float(rng.uniform(0.05, 0.45)), 3),
                promo=1.2 if rng.random() < 0.1 else None,  # a boost factor while it runs
            )
            for i in range(n_items)
        ]
        return cls(
            category, price, successor, preferred, segment_level, category_cdf, item_cdf, products
        )


def _moved(rng: np.random.Generator, before: np.ndarray, n_categories: int) -> np.ndarray:
    """New preferred categories, disjoint from the old ones where the catalogue allows."""
    others = np.setdiff1d(np.arange(n_categories), before)
    pool = others if others.size >= before.size else np.arange(n_categories)
    return rng.choice(pool, size=before.size, replace=False)


def _category_cdf(preferred: np.ndarray, n_categories: int) -> list[float]:
    probs = np.full(n_categories, (1.0 - PREFERRED_MASS) / n_categories)
    probs[preferred] += PREFERRED_MASS / preferred.size
    return np.cumsum(probs).tolist()


def _draw(cdf: list[float], u: float) -> int:
    return min(bisect.bisect_right(cdf, u * cdf[-1]), len(cdf) - 1)


def _user_events(
    rng: np.random.Generator,
    shop: _Shop,
    u: int,
    segment: int,
    n: int,
    drift_ts: int | None,
    review_rate: float,
    price_drift: float | None = None,
) -> list[Event]:
    user_id = _user(u)
    times, sessions = _timestamps(rng, n)
    uniforms = rng.random((n, 5)).tolist()
    quantities = rng.geometric(0.7, size=n).tolist()
    lvl = shop.segment_level[segment]
    events: list[Event] = []
    prev: int | None = None
    for k, (ts, session, (u_follow, u_cat, u_item, u_review, u_rating)) in enumerate(
        zip(times, sessions, uniforms, strict=True)
    ):
        phase = 1 if drift_ts is not None and ts >= drift_ts else 0
        if prev is not None and u_follow < FOLLOW_PROB:
            item = shop.successor[prev]
        else:
            c = _draw(shop.category_cdf[phase][segment], u_cat)
            items, cdf = shop.item_cdf[(lvl, c)]
            item = items[_draw(cdf, u_item)]
        prev = item
        price = shop.price[item]
        if phase == 1 and price_drift is not None:
            price = round(price * price_drift, 2)
        event_id = f"{NAME}:{u}:{k}"
        events.append(
            (
                "purchase",
                purchase(
                    event_id,
                    user_id,
                    _item(item),
                    ts,
                    quantity=int(quantities[k]),
                    price=price,
                    currency=CURRENCY,
                    session_id=f"{user_id}-s{session}",
                ),
            )
        )
        if u_review < review_rate:
            liked = shop.category[item] in shop.preferred[phase][segment]
            rating = float(min(5, max(1, round((4.3 if liked else 3.0) + 1.4 * (u_rating - 0.5)))))
            # Given u_review < review_rate, u_review / review_rate is uniform on [0, 1).
            review_ts = ts + int(86_400_000 * (0.2 + 2 * u_review / max(review_rate, 1e-9)))
            record = review(f"{event_id}:review", user_id, _item(item), review_ts, rating=rating)
            events.append(("review", record))
    return events


def _timestamps(rng: np.random.Generator, n: int) -> tuple[list[int], list[int]]:
    """Event times grouped into sessions: sessions spread over the span, clicks minutes apart."""
    n_sessions = 1 + int(rng.binomial(n - 1, SESSION_RATE))
    cuts = np.sort(rng.choice(np.arange(1, n), size=n_sessions - 1, replace=False))
    starts = np.sort(rng.integers(0, SPAN_MS - 86_400_000, size=n_sessions))
    session_of = np.searchsorted(cuts, np.arange(n), side="right")
    gaps = rng.exponential(CLICK_GAP_MS, size=n).astype(np.int64)
    times: list[int] = []
    for s in range(n_sessions):
        in_session = np.flatnonzero(session_of == s)
        offsets = np.cumsum(gaps[in_session]) - gaps[in_session[0]]
        times.extend((START_MS + int(starts[s]) + offsets).tolist())
    # Two sessions that start minutes apart may overlap; clamp so a user's own order holds.
    return list(itertools.accumulate(times, max)), session_of.tolist()


def _user(u: int) -> str:
    return f"u{u}"


def _item(i: int) -> str:
    return f"i{i}"


def _category(c: int) -> str:
    return f"c{c}"
