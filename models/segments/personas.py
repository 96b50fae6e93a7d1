"""Personas: what the users of each segment buy, at what price, how often, how lately.

Every figure is read off the interactions themselves (category names from the
catalogue, not the profile's hashed buckets), so a persona describes the segment
whatever embedding produced it. Medians throughout: a few heavy buyers would
otherwise describe a segment of occasional ones.

>>> per_30_days(np.array([3, 12]), np.array([10.0, 120.0]))
array([3., 3.])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.baselines.features import row_index
from models.data import Interactions
from models.segments.offline import NOISE
from models.trend import DAY_MS

TOP = 5
PLOT_POINTS = 5000


def per_30_days(events: np.ndarray, tenure_days: np.ndarray) -> np.ndarray:
    """Events per 30 days since a user's first event, counting at least 30 days.

    The floor keeps a user first seen yesterday from counting as 30 purchases a month.
    """
    return events / np.maximum(tenure_days, 30.0) * 30.0


@dataclass(frozen=True)
class Persona:
    segment: int  # -1: users no segment took (HDBSCAN noise)
    size: int
    share: float
    categories: tuple[tuple[str, float, float], ...]  # name, share of events, lift vs all
    price: float  # median over users of their mean known price; NaN when none known
    price_relative: float  # price / the same median over every user
    events: float  # median events per user
    rate: float  # median events per 30 days (see per_30_days)
    recency_days: float  # median days from a user's last event to the data set's end
    # events, rate and recency_days each / the same median over every user
    relative: tuple[float, float, float]
    items: tuple[tuple[str, int], ...]  # item label, users of the segment who took it
    prototype: str  # user id nearest the segment's centroid in the embedding

    @property
    def title(self) -> str:
        return "Outliers (no segment)" if self.segment == NOISE else f"Segment {self.segment}"


def personas(
    interactions: Interactions,
    labels: np.ndarray,
    x: np.ndarray,
    titles: Mapping[str, str] | None = None,
) -> list[Persona]:
    """One persona per segment of ``labels`` (users in order), noise last when present."""
    h = interactions.histories
    cat = interactions.catalogue
    n = interactions.n_users
    rows = row_index(h)
    lengths = h.lengths().astype(np.float64)
    end = int(h.times.max(initial=0))
    has = lengths > 0
    first = np.full(n, float(end))
    last = np.full(n, float(end))
    first[has] = h.times[h.offsets[:-1][has]]
    last[has] = h.times[h.offsets[1:][has] - 1]
    tenure = (end - first) / DAY_MS
    recency = (end - last) / DAY_MS
    rate = per_30_days(lengths, tenure)

    price = cat.prices[h.items].astype(np.float64)
    known = ~np.isnan(price)
    total = np.bincount(rows[known], weights=price[known], minlength=n)
    count = np.bincount(rows[known], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        user_price = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    overall_price = _median(user_price)
    overall = np.array([np.median(v) if n else math.nan for v in (lengths, rate, recency)])

    # Category events: an item with m categories counts 1/m for each of them.
    item_cats = cat.categories[h.items]  # [events, width], 0 pads
    per_item = (item_cats > 0).sum(axis=1)
    ev, col = np.nonzero(item_cats > 0)
    cat_ids = item_cats[ev, col] - 1
    cat_weight = 1.0 / per_item[ev]
    overall_cats = np.bincount(cat_ids, weights=cat_weight, minlength=cat.n_categories)
    overall_cats = overall_cats / max(overall_cats.sum(), 1e-12)

    def item_label(number: int) -> str:
        item = cat.item_ids[number - 1]
        name = (titles or {}).get(item)
        return f"{name} [{item}]" if name else item

    out = []
    segments = sorted(set(labels.tolist()), key=lambda s: (s == NOISE, s))
    for s in segments:
        members = labels == s
        member_events = members[rows]
        seg_cats = np.bincount(
            cat_ids[member_events[ev]],
            weights=cat_weight[member_events[ev]],
            minlength=cat.n_categories,
        )
        seg_share = seg_cats / max(seg_cats.sum(), 1e-12)
        top_cats = np.argsort(-seg_share, kind="stable")[:3]
        categories = tuple(
            (cat.category_ids[c], float(seg_share[c]), float(seg_share[c] / overall_cats[c]))
            for c in top_cats
            if seg_share[c] > 0
        )
        # Items by how many of the segment's users took them, not by events: one heavy
        # buyer's favourite is not the segment's.
        pairs = np.unique(np.stack([rows[member_events], h.items[member_events]]), axis=1)
        takers = np.bincount(pairs[1], minlength=cat.n_items + 1)
        top_items = np.argsort(-takers, kind="stable")[:TOP]
        items = tuple((item_label(int(i)), int(takers[i])) for i in top_items if takers[i] > 0)
        seg_price = _median(user_price[members])
        medians = np.array([np.median(v[members]) for v in (lengths, rate, recency)])
        with np.errstate(invalid="ignore", divide="ignore"):
            relative = np.where(overall > 0, medians / overall, math.nan)
        out.append(
            Persona(
                segment=int(s),
                size=int(members.sum()),
                share=float(members.mean()),
                categories=categories,
                price=seg_price,
                price_relative=seg_price / overall_price if overall_price > 0 else math.nan,
                events=float(medians[0]),
                rate=float(medians[1]),
                recency_days=float(medians[2]),
                relative=(float(relative[0]), float(relative[1]), float(relative[2])),
                items=items,
                prototype=interactions.user_ids[_prototype(x, members)],
            )
        )
    return out


def _median(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else math.nan


def _prototype(x: np.ndarray, members: np.ndarray) -> int:
    """The member nearest the members' mean embedding (a real user, unlike the centroid)."""
    index = np.flatnonzero(members)
    centroid = x[index].mean(axis=0)
    return int(index[np.argmin(((x[index] - centroid) ** 2).sum(axis=1))])


def _number(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def markdown(people: Sequence[Persona], what: str) -> str:
    """A summary table and one section per persona; ``what`` names the segmentation."""
    lines = [
        f"Personas of {what}. Medians over each segment's users; price is a user's mean",
        "known price; x overall = segment median / median over every user; rate = events",
        "per 30 days since the user's first event (at least 30 days counted).",
        "",
        "| segment | users | share | top categories | price (x overall) | events/user "
        "| events/30 days | days since last |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for p in people:
        cats = ", ".join(name for name, _, _ in p.categories) or "none known"
        lines.append(
            f"| {p.title} | {p.size:,} | {100 * p.share:.1f} % | {cats} "
            f"| {_number(p.price, 2)} ({_number(p.price_relative, 2)}) | {_number(p.events)} "
            f"| {_number(p.rate, 2)} | {_number(p.recency_days)} |"
        )
    for p in people:
        lines += ["", f"### {p.title}: {p.size:,} users ({100 * p.share:.1f} %)", ""]
        if p.categories:
            cats = "; ".join(
                f"{name} {100 * share:.0f} % of events (x{lift:.2f} vs all)"
                for name, share, lift in p.categories
            )
        else:
            cats = "none known (the catalogue has no categories)"
        if math.isnan(p.price):
            price = "unknown (no prices in the catalogue)"
        else:
            price = f"median {p.price:,.2f}, x{_number(p.price_relative, 2)} the overall median"
        lines += [
            f"- Top categories: {cats}",
            f"- Price level: {price}",
            f"- Frequency: {_number(p.events)} events per user, {_number(p.rate, 2)} per 30 days",
            f"- Recency: {_number(p.recency_days)} days since the last event",
            "- Top items (users who took them): "
            + "; ".join(f"{name}: {users}" for name, users in p.items),
            f"- Prototype user (nearest the centroid): {p.prototype}",
        ]
    return "\n".join(lines) + "\n"


def plot_projection(x: np.ndarray, labels: np.ndarray, path: Path, title: str) -> Path:
    """Users on the first two principal components of ``x``, coloured by segment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    keep = np.sort(rng.permutation(len(x))[:PLOT_POINTS])
    xy = PCA(2, random_state=0).fit_transform(x)[keep]
    shown = labels[keep]
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    noise = shown == NOISE
    if noise.any():
        ax.scatter(xy[noise, 0], xy[noise, 1], s=4, c="lightgrey", label="outliers")
    cmap = plt.get_cmap("tab10")
    for s in sorted(set(shown[~noise].tolist())):
        at = shown == s
        ax.scatter(xy[at, 0], xy[at, 1], s=4, color=cmap(s % 10), label=f"segment {s}")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=10)
    ax.legend(markerscale=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_profiles(people: Sequence[Persona], path: Path, title: str) -> Path:
    """Grouped bars per segment: size, price, frequency, rate, recency against all users.

    Each bar is the segment's median over the median of every user (size: share x the
    number of segments), so 1 means "like everyone" and the measures share one axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    segments = sum(p.segment != NOISE for p in people)
    measures = {
        "size (share x segments)": [p.share * segments for p in people],
        "price level": [p.price_relative for p in people],
        "events/user": [p.relative[0] for p in people],
        "events/30 days": [p.relative[1] for p in people],
        "days since last": [p.relative[2] for p in people],
    }
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    width = 0.8 / len(measures)
    where = np.arange(len(people))
    for i, (name, values) in enumerate(measures.items()):
        ax.bar(where + i * width, np.nan_to_num(np.array(values, np.float64)), width, label=name)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(where + 0.4 - width / 2, [p.title.replace("Segment ", "s") for p in people])
    ax.set_ylabel("segment median / all users' median")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
