"""One pass of the online segmentation over an event log, as the stream would make it.

Events are taken in time order in micro-batches; each user in a batch is profiled
from their history up to the end of the batch (the last ``history`` events, repeats
kept, as the stream retains them) and takes one online update. The first
``init_points`` profiles seed the centroids; a user is assigned at their first update
after that, as in the stream (the warm-up sample keeps no user ids).
This is what the ``segments`` report calls "online", and what tests check the
stream against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.data import Catalogue, Interactions
from models.segments.online import OnlineKMeans, SegmentModel, seed_model
from models.segments.profile import (
    ProfileConfig,
    ProfileScaler,
    item_buckets,
    path_categories,
    profile_features,
)


@dataclass(frozen=True)
class OnlineConfig:
    k: int = 6
    init_points: int = 500  # profiles buffered before the centroids are seeded
    init_min_events: int = 10  # only profiles of users with this many events enter the sample
    min_rate: float = 0.03
    seed: int = 0


@dataclass(frozen=True)
class OnlineRun:
    model: SegmentModel
    labels: np.ndarray = field(repr=False)  # int64 [n_users], -1 never assigned
    raw: np.ndarray = field(repr=False)  # raw profile of each user at their last event
    embeddings: np.ndarray = field(repr=False)  # the same, through the model's scaler


def mature(raw: np.ndarray, profile: ProfileConfig, online: OnlineConfig) -> np.ndarray:
    """Rows of users with at least ``init_min_events`` events.

    A first purchase puts all of a profile's share on one category; seeding on such
    profiles places centroids on single categories, far from where users settle.
    """
    return raw[:, profile.n_buckets + 1] >= np.log1p(online.init_min_events) - 1e-9


def seed_profiles(
    raw: np.ndarray, profile: ProfileConfig, online: OnlineConfig, version: str
) -> SegmentModel:
    """A model seeded from a warm-up sample of raw profiles, with its scaler fitted on them."""
    scaler = ProfileScaler.fit(raw, profile)
    return seed_model(scaler.transform(raw), online.k, version, scaler, online.seed)


def catalogue_features(
    catalogue: Catalogue, config: ProfileConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Bucket rows and prices indexed by item number, built the way the stream builds them.

    The stream sees a product's categories joined as one "/" path and uses each level.
    """
    names = []
    for row in catalogue.categories:
        cats = [catalogue.category_ids[c - 1] for c in row if c > 0]
        names.append(path_categories("/".join(cats))[: config.max_categories])
    buckets = item_buckets(names, config.n_buckets, config.max_categories)
    return buckets, catalogue.prices.astype(np.float64)


def last_profiles(
    interactions: Interactions, config: ProfileConfig, history: int = 200
) -> np.ndarray:
    """Raw profile of every user from their last ``history`` events."""
    buckets, prices = catalogue_features(interactions.catalogue, config)
    h = interactions.histories
    lengths = h.lengths()
    users = np.arange(len(h))
    window = interactions.windows(users, np.maximum(lengths - history, 0), lengths)
    return profile_features(
        window.offsets, window.items, window.times // 1000, buckets, prices, config.n_buckets
    )


def one_pass(
    interactions: Interactions,
    profile: ProfileConfig | None = None,
    online: OnlineConfig | None = None,
    batch: int = 256,
    history: int = 200,
) -> OnlineRun:
    """Stream ``interactions`` once through the online K-means (``repeats="keep"`` data)."""
    profile = profile or ProfileConfig()
    online = online or OnlineConfig()
    buckets, prices = catalogue_features(interactions.catalogue, profile)
    h = interactions.histories
    n_users = len(h)
    # Global time order of every event, as (user, position within the user).
    user_of = np.repeat(np.arange(n_users), h.lengths())
    pos_of = np.arange(len(h.items)) - h.offsets[user_of]
    order = np.argsort(h.times, kind="stable")
    labels = np.full(n_users, -1, dtype=np.int64)
    warm: list[np.ndarray] = []
    km: OnlineKMeans | None = None
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        # Each user's history up to the last of their events in this batch.
        ends: dict[int, int] = {}
        for u, p in zip(user_of[chunk].tolist(), pos_of[chunk].tolist(), strict=True):
            ends[u] = max(ends.get(u, 0), p + 1)
        users = np.fromiter(ends, dtype=np.int64)
        stops = np.fromiter(ends.values(), dtype=np.int64)
        window = interactions.windows(users, np.maximum(stops - history, 0), stops)
        raw = profile_features(
            window.offsets, window.items, window.times // 1000, buckets, prices, profile.n_buckets
        )
        if km is None:
            warm.extend(raw[mature(raw, profile, online)])
            if len(warm) >= online.init_points:
                km = OnlineKMeans(
                    seed_profiles(np.array(warm), profile, online, "online"),
                    online.min_rate,
                    online.seed,
                )
            continue
        assert km.model.scaler is not None
        x = km.model.scaler.transform(raw)
        for u, row in zip(users.tolist(), x, strict=True):
            labels[u], _ = km.learn_predict(row)
    if km is None:
        raise ValueError(
            f"only {len(warm)} user updates: fewer than init_points={online.init_points}"
        )
    centroids = km.centroids()
    final = SegmentModel(
        km.model.version, centroids, km.model.counts + km.delta()[1], km.model.scaler
    )
    raw_last = last_profiles(interactions, profile, history)
    assert final.scaler is not None
    return OnlineRun(final, labels, raw_last, final.scaler.transform(raw_last))
