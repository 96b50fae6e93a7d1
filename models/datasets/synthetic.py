"""A generated shop with planted ground truth, to check that models find what is there.

Users belong to segments; each segment prefers a few categories and a price level.
Every item has a fixed successor in its category, and a user's next purchase follows
it with probability ``FOLLOW_PROB``; that is the pattern a sequence model should
learn. With ``drift_at`` the segments switch to other categories at that fraction of
the timeline, which drift monitors should notice; ``price_drift`` also scales the
prices paid from then on, ``new_items`` releases items then and ``wave`` brings a wave
of new users from one segment. ``shift_categories=False`` keeps the categories, so
that each of those can drift alone.

By default every user's sessions spread over the whole 30 days, so in a replay the
share of new users falls and histories lengthen throughout. ``active_days`` makes
users join at a steady rate and stay that many days: from ``active_days`` in until
``active_days`` before the end (when no one joins any more), the stream is stationary
but for the drift, as a shop that has run for months is.
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
DAY_MS = 86_400_000
WAVE_JOIN_MS = DAY_MS  # the wave's users join within a day of the drift
NEW_ITEM_POPULARITY = 3.0  # how much better a released item sells than a typical one
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
    released: tuple[str, ...] = ()  # items first sold at drift_ts
    wave_segment: int | None = None  # the segment of the users who join at drift_ts

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
            "released": self.released,
            "wave_segment": self.wave_segment,
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
    *,
    shift_categories: bool = True,
    new_items: int = 0,
    wave: int = 0,
    active_days: float | None = None,
) -> SyntheticDataset:
    """Generate purchases (and optionally reviews) spread over 30 days from 2024-01-01.

    ``events_per_user`` bounds each user's purchase count (inclusive). A purchase is
    followed by a review of the same item with probability ``review_rate``; ratings are
    higher for categories the user's segment prefers. With ``price_drift`` (needs
    ``drift_at``) every purchase from the drift on pays that factor times the item's
    price, as after a general price rise. ``new_items`` items (their ids follow the
    catalogue's) go on sale at the drift and sell ``NEW_ITEM_POPULARITY`` times better
    than a typical item; ``wave`` extra users of the smallest segment join within a
    day of it. With ``active_days`` each user joins at a uniform time and shops within
    that many days after. The same arguments always give the same data, and the defaults
    the same data as before these options existed.
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
    if min(new_items, wave) < 0 or (drift_at is None and (new_items or wave)):
        raise ValueError(
            f"new_items and wave need drift_at and cannot be negative, got {new_items}, {wave}"
        )
    if active_days is not None and not 1.0 < active_days <= SPAN_MS / DAY_MS:
        raise ValueError(f"active_days must lie in (1, {SPAN_MS // DAY_MS}], got {active_days}")
    if min(n_users, n_segments, n_categories) < 1:
        raise ValueError("n_users, n_segments and n_categories must be positive")

    rng = np.random.default_rng(seed)
    drift_ts = None if drift_at is None else START_MS + int(drift_at * SPAN_MS)
    shop = _Shop.build(
        rng, n_items, n_categories, n_segments, drift_at is not None, shift_categories
    )
    # Released items and the wave draw from streams of their own and leave the main
    # stream's draws alone: before the drift, the shop is the same with or without them.
    released = []
    if drift_ts is not None and new_items:
        release_rng = np.random.default_rng([seed, 1])
        released = shop.release(release_rng, new_items, drift_ts, n_categories)
    segments = rng.integers(n_segments, size=n_users)
    active_ms = None if active_days is None else int(active_days * DAY_MS)
    events: list[Event] = []
    for u in range(n_users):
        n = int(rng.integers(lo, hi + 1))
        window = None
        if active_ms is not None:
            window = (int(rng.integers(0, SPAN_MS - active_ms + 1)), active_ms)
        events.extend(
            _user_events(
                rng, shop, u, int(segments[u]), n, drift_ts, review_rate, price_drift, window
            )
        )
    wave_segment = None
    if drift_ts is not None and wave:
        wave_segment = int(np.argmin(np.bincount(segments, minlength=n_segments)))
        wave_rng = np.random.default_rng([seed, 2])
        for u in range(n_users, n_users + wave):
            n = int(wave_rng.integers(lo, hi + 1))
            join = drift_ts - START_MS + int(wave_rng.integers(0, WAVE_JOIN_MS))
            width = SPAN_MS - join if active_ms is None else min(active_ms, SPAN_MS - join)
            window = (join, max(width, DAY_MS + 1))
            events.extend(
                _user_events(
                    wave_rng, shop, u, wave_segment, n, drift_ts, review_rate, price_drift, window
                )
            )
    sort_events(events)
    segment_of = {_user(u): int(s) for u, s in enumerate(segments)}
    if wave_segment is not None:
        segment_of.update({_user(u): wave_segment for u in range(n_users, n_users + wave)})

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
        + ("" if shift_categories else ", shift_categories=False")
        + ("" if not new_items else f", new_items={new_items}")
        + ("" if not wave else f", wave={wave}")
        + ("" if active_days is None else f", active_days={active_days}")
        + ")",
        segment_of=segment_of,
        successor={_item(i): _item(j) for i, j in enumerate(shop.successor)},
        drift_ts=drift_ts,
        segment_categories=names(shop.preferred[0]),
        segment_categories_after_drift=names(shop.preferred[-1]),
        segment_price_level={s: PRICE_LEVELS[lvl] for s, lvl in enumerate(shop.segment_level)},
        item_category={_item(i): _category(c) for i, c in enumerate(shop.category)},
        follow_prob=FOLLOW_PROB,
        released=tuple(_item(i) for i in released),
        wave_segment=wave_segment,
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
    # category_cdf[phase][segment], item_cdf[phase][(price level, category)] = (items, cdf)
    category_cdf: list[list[list[float]]]
    item_cdf: list[dict[tuple[int, int], tuple[list[int], list[float]]]]
    products: list[Record]
    level: list[int]
    popularity: list[float]

    @classmethod
    def build(
        cls,
        rng: np.random.Generator,
        n_items: int,
        n_categories: int,
        n_segments: int,
        drifting: bool,
        shift_categories: bool = True,
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
            moved = [_moved(rng, p, n_categories) for p in before]
            preferred.append(moved if shift_categories else before)
        segment_level = rng.integers(len(PRICE_LEVELS), size=n_segments).tolist()

        category_cdf = [[_category_cdf(p, n_categories) for p in phase] for phase in preferred]
        item_cdf = _item_cdf(members, level, popularity)

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
            category,
            price,
            successor,
            preferred,
            segment_level,
            category_cdf,
            [item_cdf],
            products,
            level,
            popularity,
        )

    def release(self, rng: np.random.Generator, n: int, ts: int, n_categories: int) -> list[int]:
        """Put ``n`` new items on sale from ``ts``: their indexes.

        A released item's successor is an older item of its category; nothing leads to
        it but its category's draws, in which it sells well.
        """
        first = len(self.category)
        for i in range(first, first + n):
            c = int(rng.integers(n_categories))
            lvl = int(rng.integers(len(PRICE_LEVELS)))
            peers = [j for j in range(first) if self.category[j] == c]
            self.category.append(c)
            self.level.append(lvl)
            self.popularity.append(NEW_ITEM_POPULARITY * float(rng.lognormal(0.0, 0.5)))
            self.price.append(round(PRICE_LEVELS[lvl] * float(rng.lognormal(0.0, 0.25)), 2))
            self.successor.append(peers[int(rng.integers(len(peers)))])
            self.products.append(
                product(
                    _item(i),
                    ts,
                    title=f"Item {i}",
                    category=[_category(c)],
                    brand=f"brand{int(rng.integers(25))}",
                    price=self.price[i],
                    stock=int(rng.integers(1, 500)),
                    margin=round(float(rng.uniform(0.05, 0.45)), 3),
                    promo=None,
                )
            )
        members = [[i for i, c in enumerate(self.category) if c == k] for k in range(n_categories)]
        self.item_cdf.append(_item_cdf(members, self.level, self.popularity))
        return list(range(first, first + n))


def _item_cdf(
    members: list[list[int]], level: list[int], popularity: list[float]
) -> dict[tuple[int, int], tuple[list[int], list[float]]]:
    """(items, cumulative weights) per (segment price level, category)."""
    cdf = {}
    for lvl, c in itertools.product(range(len(PRICE_LEVELS)), range(len(members))):
        # Items near the segment's price level sell more; popularity spreads the rest.
        weights = [popularity[i] * math.exp(-abs(level[i] - lvl)) for i in members[c]]
        cdf[(lvl, c)] = (members[c], list(itertools.accumulate(weights)))
    return cdf


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
    window: tuple[int, int] | None = None,
) -> list[Event]:
    """A user's purchases; ``window`` is (start, width) in ms from START_MS."""
    user_id = _user(u)
    if window is None:
        times, sessions = _timestamps(rng, n)
    else:
        times, sessions = _timestamps(rng, n, *window, joins=True)
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
            items, cdf = shop.item_cdf[min(phase, len(shop.item_cdf) - 1)][(lvl, c)]
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


def _timestamps(
    rng: np.random.Generator, n: int, offset: int = 0, width: int = SPAN_MS, joins: bool = False
) -> tuple[list[int], list[int]]:
    """Event times grouped into sessions: sessions spread over ``width`` ms from
    ``offset``, clicks minutes apart; with ``joins`` the first session is at ``offset``."""
    n_sessions = 1 + int(rng.binomial(n - 1, SESSION_RATE))
    cuts = np.sort(rng.choice(np.arange(1, n), size=n_sessions - 1, replace=False))
    starts = offset + np.sort(rng.integers(0, width - DAY_MS, size=n_sessions))
    if joins:
        starts[0] = offset
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
