"""Interaction sequences: the training and evaluation view of a Dataset.

Items are numbered from 1 in order of first appearance; 0 is padding, so an item
index can address a row of an embedding table directly. Histories are stored as
CSR arrays (``offsets`` into flat ``items``/``times``), which keeps a 300,000-event
set in a few contiguous numpy arrays instead of a Python list per user.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from models.datasets import Dataset
from models.datasets.base import SplitKind

PAD = 0
Repeats = Literal["first", "keep"]


@dataclass(frozen=True)
class Catalogue:
    """Item ids and side features, indexed by item number (row 0 is padding)."""

    item_ids: tuple[str, ...]
    categories: np.ndarray = field(repr=False)  # int32 [n_items + 1, max_categories], 0 pads
    category_ids: tuple[str, ...] = field(repr=False)  # category number c is category_ids[c - 1]
    prices: np.ndarray = field(repr=False)  # float32 [n_items + 1], NaN when unknown

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_categories(self) -> int:
        return len(self.category_ids)

    def index(self) -> dict[str, int]:
        """Item id -> item number."""
        return {item: n for n, item in enumerate(self.item_ids, start=1)}

    def price_buckets(self, n_buckets: int = 10) -> np.ndarray:
        """Price decile of each item (1..n_buckets), 0 when the price is unknown.

        >>> cat = Catalogue(("a", "b", "c"), np.zeros((4, 1), np.int32), (),
        ...                 np.array([np.nan, 1.0, np.nan, 9.0], np.float32))
        >>> cat.price_buckets(2).tolist()
        [0, 1, 0, 2]
        """
        buckets = np.zeros(len(self.prices), dtype=np.int64)
        known = ~np.isnan(self.prices)
        if not known.any():
            return buckets
        edges = np.quantile(self.prices[known], np.linspace(0, 1, n_buckets + 1)[1:-1])
        buckets[known] = np.searchsorted(edges, self.prices[known], side="right") + 1
        return buckets


@dataclass(frozen=True)
class Histories:
    """A batch of item sequences, most recent last, in CSR form.

    ``users[i]`` is the user's number in the training data, or -1 for a user the
    model never saw (a model that needs user factors then works from the items).
    """

    users: np.ndarray  # int64 [n]
    offsets: np.ndarray  # int64 [n + 1]
    items: np.ndarray  # int32 [offsets[-1]]
    times: np.ndarray  # int64 [offsets[-1]], epoch ms

    def __len__(self) -> int:
        return len(self.users)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, i: int) -> np.ndarray:
        return self.items[self.offsets[i] : self.offsets[i + 1]]

    def slice(self, start: int, stop: int) -> Histories:
        """Rows ``start:stop`` without copying the flat arrays' data more than needed."""
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return Histories(
            users=self.users[start:stop],
            offsets=self.offsets[start : stop + 1] - lo,
            items=self.items[lo:hi],
            times=self.times[lo:hi],
        )

    def padded(self, maxlen: int, values: np.ndarray | None = None) -> np.ndarray:
        """The last ``maxlen`` entries of each row, left-padded with 0: ``[n, maxlen]``.

        >>> h = from_lists([[1, 2, 3], [4]])
        >>> h.padded(2).tolist()
        [[2, 3], [0, 4]]
        """
        source = self.items if values is None else values
        n = len(self)
        out = np.zeros((n, maxlen), dtype=source.dtype)
        lengths = np.minimum(self.lengths(), maxlen)
        if n == 0 or maxlen == 0:
            return out
        rows = np.repeat(np.arange(n), lengths)
        # position of each kept entry counted from the row's end
        ends = self.offsets[1:]
        starts = ends - lengths
        flat = _flat_index(starts, ends)
        cols = maxlen - lengths[rows] + (flat - starts[rows])
        out[rows, cols] = source[flat]
        return out


def from_lists(
    sequences: Sequence[Sequence[int]],
    users: Sequence[int] | None = None,
    times: Sequence[Sequence[int]] | None = None,
) -> Histories:
    """Build Histories from Python lists (tests, serving from a Redis sequence).

    >>> from_lists([[1, 2], [3]]).lengths().tolist()
    [2, 1]
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    items = np.array([i for s in sequences for i in s], dtype=np.int32)
    if times is None:
        flat_times = np.zeros(len(items), dtype=np.int64)
    else:
        flat_times = np.array([t for s in times for t in s], dtype=np.int64)
    user_ids = np.arange(len(sequences)) if users is None else np.asarray(users)
    return Histories(user_ids.astype(np.int64), offsets, items, flat_times)


@dataclass(frozen=True)
class Interactions:
    """Every user's interactions in time order, with the catalogue they refer to."""

    name: str
    user_ids: tuple[str, ...]
    catalogue: Catalogue
    histories: Histories  # one row per user, users[u] == u
    ratings: np.ndarray = field(repr=False)  # float32 per event, NaN for purchases
    timed: bool = field(default=True, kw_only=True)  # the data set's Dataset.timed
    split: SplitKind = field(default="leave-one-out", kw_only=True)  # its Dataset.split

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_events(self) -> int:
        return int(self.histories.offsets[-1])

    def prefixes(self, users: np.ndarray, lengths: np.ndarray) -> Histories:
        """The first ``lengths[i]`` events of each user ``users[i]``."""
        return _gather(self.histories, users, np.zeros_like(lengths), lengths)

    def windows(self, users: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> Histories:
        """Events ``starts[i]:stops[i]`` of each user ``users[i]``."""
        return _gather(self.histories, users, starts, stops)

    def truncated(self, lengths: np.ndarray) -> Interactions:
        """The same users with only their first ``lengths[u]`` events (a training view)."""
        users = np.arange(self.n_users)
        zeros = np.zeros(self.n_users, dtype=np.int64)
        base = self.histories.offsets[users]
        flat = _flat_index(base, base + lengths)
        return Interactions(
            name=self.name,
            user_ids=self.user_ids,
            catalogue=self.catalogue,
            histories=_gather(self.histories, users, zeros, lengths),
            ratings=self.ratings[flat],
            timed=self.timed,
            split=self.split,
        )


def _flat_index(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(starts[i], stops[i])`` without a Python loop."""
    lengths = np.maximum(stops - starts, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    row_starts = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return row_starts + np.arange(total)


def _gather(
    source: Histories, users: np.ndarray, starts: np.ndarray, stops: np.ndarray
) -> Histories:
    users = np.asarray(users, dtype=np.int64)
    base = source.offsets[users]
    lo, hi = base + np.asarray(starts, np.int64), base + np.asarray(stops, np.int64)
    flat = _flat_index(lo, hi)
    offsets = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(np.maximum(hi - lo, 0), out=offsets[1:])
    return Histories(users, offsets, source.items[flat], source.times[flat])


def from_dataset(dataset: Dataset, repeats: Repeats = "first") -> Interactions:
    """Turn a Dataset's purchases and reviews into per-user sequences.

    ``repeats="first"`` keeps only a user's first interaction with each item: the
    evaluation protocol ranks items the user has not seen yet, so a repeat can never
    be a target, and dropping repeats from the inputs keeps train and test alike.
    Users are numbered in order of first event, items in catalogue order.
    """
    item_index: dict[str, int] = {}
    user_index: dict[str, int] = {}
    per_user: list[list[tuple[int, int, float]]] = []
    seen: list[set[int]] = []
    for p in dataset.products:
        item_index.setdefault(p["item_id"], len(item_index) + 1)
    for kind, record in dataset.events:
        item = item_index.setdefault(record["item_id"], len(item_index) + 1)
        u = user_index.get(record["user_id"])
        if u is None:
            u = user_index[record["user_id"]] = len(per_user)
            per_user.append([])
            seen.append(set())
        if repeats == "first":
            if item in seen[u]:
                continue
            seen[u].add(item)
        rating = record.get("rating") if kind == "review" else None
        per_user[u].append((item, record["ts"], np.nan if rating is None else float(rating)))

    lengths = np.array([len(events) for events in per_user], dtype=np.int64)
    offsets = np.zeros(len(per_user) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = [event for events in per_user for event in events]
    items = np.array([e[0] for e in flat], dtype=np.int32)
    times = np.array([e[1] for e in flat], dtype=np.int64)
    ratings = np.array([e[2] for e in flat], dtype=np.float32)
    histories = Histories(np.arange(len(per_user), dtype=np.int64), offsets, items, times)
    return Interactions(
        name=dataset.name,
        user_ids=tuple(user_index),
        catalogue=_catalogue(dataset, item_index),
        histories=histories,
        ratings=ratings,
        timed=dataset.timed,
        split=dataset.split,
    )


def _catalogue(dataset: Dataset, item_index: dict[str, int]) -> Catalogue:
    n = len(item_index)
    products = {p["item_id"]: p for p in dataset.products}
    category_index: dict[str, int] = {}
    per_item: list[list[int]] = [[] for _ in range(n + 1)]
    prices = np.full(n + 1, np.nan, dtype=np.float32)
    for item, number in item_index.items():
        p = products.get(item)
        if p is None:
            continue
        per_item[number] = [
            category_index.setdefault(c, len(category_index) + 1) for c in p.get("category") or ()
        ]
        if p.get("price") is not None:
            prices[number] = p["price"]
    width = max(1, max(len(c) for c in per_item))
    categories = np.zeros((n + 1, width), dtype=np.int32)
    for number, cats in enumerate(per_item):
        categories[number, : len(cats)] = cats
    return Catalogue(tuple(item_index), categories, tuple(category_index), prices)
