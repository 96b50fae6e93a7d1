"""Online segmentation in the worker: profiles from histories, River K-means shared in Redis.

Per micro-batch: every user with an applied event is profiled from their retained
history (models.segments.profile), takes one online K-means update on the worker's
copy of the shared model, and the batch's centroid shifts, the users' segments and
each segment's trending items are merged into Redis in one atomic call, which also
returns the merged model for the next batch. How concurrent workers' updates combine
is described in segment_update.lua and the README.

Until the shared model exists, profiles (without user ids) go to a warm-up sample;
the worker whose push fills it seeds the centroids by k-means++, and the others take
that model. Users are assigned from their first update after the seeding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.rerank import Product
from models.segments.online import OnlineKMeans, SegmentModel
from models.segments.profile import ProfileConfig, item_buckets, path_categories, profile_features
from models.segments.replay import OnlineConfig, mature, seed_profiles
from streams.serving.serve import ProductCache
from streams.settings import Settings
from streams.state import Store
from streams.state.segment_store import SegmentStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    """A user's segment after this batch; ``old`` differs from ``new`` when it moved."""

    uid: str
    old: int | None
    new: int
    distance: float
    version: str

    @property
    def moved(self) -> bool:
        return self.old != self.new


class ItemFeatures:
    """Category buckets and price of each store item index, read once per catalog change."""

    def __init__(self, store: Store, products: ProductCache, config: ProfileConfig) -> None:
        self.store, self.products, self.config = store, products, config
        self.buckets = np.full((1024, config.max_categories), -1, dtype=np.int32)
        self.prices = np.full(1024, np.nan)
        self.known = np.zeros(1024, dtype=bool)
        self._index: dict[str, int] = {}
        products.on_change.append(self._forget)

    def _forget(self, changed: list[str] | None) -> None:
        if changed is None:
            self.known[:] = False
            return
        for item in changed:
            idx = self._index.get(item)
            if idx is not None:
                self.known[idx] = False

    def row(self, product: Product | None) -> tuple[np.ndarray, float]:
        cats = path_categories(product.category)[: self.config.max_categories] if product else []
        row = item_buckets([cats], self.config.n_buckets, self.config.max_categories)[0]
        price = product.price if product is not None and product.price is not None else np.nan
        return row, float(price)

    async def ensure(self, idxs: np.ndarray) -> None:
        """Make ``buckets`` and ``prices`` valid at every index in ``idxs``."""
        if len(idxs) == 0:
            return
        top = int(idxs.max())
        if top >= len(self.known):
            size = max(top + 1, 2 * len(self.known))
            grow = size - len(self.known)
            self.buckets = np.vstack(
                [self.buckets, np.full((grow, self.config.max_categories), -1, np.int32)]
            )
            self.prices = np.concatenate([self.prices, np.full(grow, np.nan)])
            self.known = np.concatenate([self.known, np.zeros(grow, bool)])
        missing = np.unique(idxs[~self.known[idxs]])
        if len(missing) == 0:
            return
        names = await self.store.item_ids(missing.tolist())
        wanted = {names[i] for i in missing.tolist() if i in names}
        products = await self.products.get(wanted) if wanted else {}
        for idx in missing.tolist():
            name = names.get(idx)
            found = products.get(name) if name is not None else None
            self.buckets[idx], self.prices[idx] = self.row(found[0] if found else None)
            self.known[idx] = True
            if name is not None:
                self._index[name] = idx


class Segmenter:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        products: ProductCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.profile = ProfileConfig()
        self.online = OnlineConfig(
            k=settings.segments_k,
            init_points=settings.segments_init_points,
            min_rate=settings.segments_min_rate,
            init_min_events=settings.segments_init_min_events,
        )
        self.features = ItemFeatures(store, products, self.profile)
        self.products = products
        self.segments = SegmentStore(store.redis, settings.trending_tau_s)
        self.clock = clock
        self.km: OnlineKMeans | None = None

    def _load(self, data: Mapping[str, object]) -> None:
        model = SegmentModel.from_dict(data, self.profile)
        if self.km is None:
            self.km = OnlineKMeans(model, self.online.min_rate, self.online.seed)
        else:
            self.km.load(model)

    async def _ready(self, raw: np.ndarray) -> bool:
        """Take the shared model if it exists; else add to the warm-up sample (and seed)."""
        current = await self.segments.model()
        if current is not None:
            self._load(current)
            return True
        if await self.segments.warm_push(raw[mature(raw, self.profile, self.online)]) < (
            self.online.init_points
        ):
            return False
        sample = await self.segments.warm_sample(self.online.init_points)
        version = f"kmeans-k{self.online.k}-{int(self.clock() * 1000)}"
        seeded = seed_profiles(sample, self.profile, self.online, version)
        won, current = await self.segments.seed(seeded.to_dict())
        self._load(current)
        log.info(
            "segmentation %s %s from %d profiles",
            current["version"],
            "seeded" if won else "taken from another worker",
            len(sample),
        )
        # This batch's users are in the sample; they are assigned at their next update.
        return False

    async def update(
        self,
        histories: Mapping[str, tuple[Sequence[int], Sequence[int]]],
        events: Sequence[tuple[str, int, int]],
        sources: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    ) -> list[Change]:
        """One online update per user from their history (items, times in seconds).

        ``events`` are the batch's applied (user, item index, ts) for segment trending;
        ``sources`` the event that places each user and their redelivered ones
        (``SegmentStore.merge``).
        """
        uids = list(histories)
        if not uids:
            return []
        lengths = np.array([len(histories[u][0]) for u in uids], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        items = np.fromiter((i for u in uids for i in histories[u][0]), np.int64, offsets[-1])
        times = np.fromiter((t for u in uids for t in histories[u][1]), np.int64, offsets[-1])
        await self.features.ensure(items)
        f = self.features
        raw = profile_features(offsets, items, times, f.buckets, f.prices, self.profile.n_buckets)
        if self.km is None and not await self._ready(raw):
            return []
        km = self.km
        assert km is not None and km.model.scaler is not None
        x = km.model.scaler.transform(raw)
        learnt = [km.learn_predict(row) for row in x]
        seg_of = {u: s for u, (s, _) in zip(uids, learnt, strict=True)}
        return await self._merge(
            uids, learnt, [(seg_of[u], i, t) for u, i, t in events if u in seg_of], sources
        )

    async def _merge(
        self,
        uids: Sequence[str],
        assigned: Sequence[tuple[int, float]],
        trending: Sequence[tuple[int, int, int]],
        sources: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    ) -> list[Change]:
        km = self.km
        assert km is not None
        version = km.model.version
        shifts, counts = km.delta()
        merged = await self.segments.merge(
            version,
            shifts,
            counts,
            [(u, s) for u, (s, _) in zip(uids, assigned, strict=True)],
            trending,
            sources,
        )
        if merged.stale:
            # Reseeded by someone else (or deleted): start again from what is there.
            log.warning("segmentation model %s replaced; batch not merged", version)
            self.km = None
            if merged.model is not None:
                self._load(merged.model)
            return []
        assert merged.model is not None
        self._load(merged.model)
        return [
            Change(u, old, s, d, version)
            for u, (s, d), old, gone in zip(
                uids, assigned, merged.previous, merged.skipped, strict=True
            )
            if not gone
        ]

    async def declare(self, uids: Sequence[str]) -> list[Change]:
        """Assign users who have no purchases yet from their wishlist and subscriptions.

        Declared interests place a user but do not move centroids: they are not
        behaviour, and one user's long wishlist should not pull a segment.
        """
        if self.km is None:
            current = await self.segments.model()
            if current is None:
                return []
            self._load(current)
        km = self.km
        assert km is not None and km.model.scaler is not None
        rows: list[list[tuple[list[str], float]]] = []
        kept: list[str] = []
        for uid in uids:
            if await self.store.history(uid):
                continue  # what they bought places them, not what they declared
            prefs = await self.store.preferences(uid)
            products = await self.products.get(prefs["wishlist"])
            declared = [
                (path_categories(p.category)[: self.profile.max_categories], p.price or np.nan)
                for p, _ in products.values()
            ] + [([c], np.nan) for c in prefs["subscriptions"]]
            if declared:
                rows.append(declared)
                kept.append(uid)
        if not kept:
            return []
        flat = [d for r in rows for d in r]
        buckets = item_buckets(
            [c for c, _ in flat], self.profile.n_buckets, self.profile.max_categories
        )
        prices = np.array([p for _, p in flat], dtype=np.float64)
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        items = np.arange(len(flat))
        raw = profile_features(
            offsets, items, np.zeros(len(flat), np.int64), buckets, prices, self.profile.n_buckets
        )
        segs, dists = km.predict(km.model.scaler.transform(raw))
        assigned = list(zip(segs.tolist(), dists.tolist(), strict=True))
        return await self._merge(kept, assigned, [])
