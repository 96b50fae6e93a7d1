"""From user histories to reranked, explained recommendations: the path shared by the
stream and the HTTP API, so both answer the same for the same state.

Per micro-batch: one torch forward pass for the users of each model version, one
read of co-occurrence neighbours, trending items, consent flags and product data,
whatever the batch size.

Which path a user takes:
- consent withdrawn, or no history at all: trending items (time-decayed popularity);
- a model is serving: the sequence model's top items, and for a history of at most
  ``cold_blend_events`` events those blended with item-item neighbours;
- no model yet: item-item co-occurrence with popularity fill (the baseline).
Then every list is reranked by the business rules, and a user whose recent
categories hold items newer than the model gets the newest one in the last slot.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from models.abtest import CONTROL, TREATMENT, assign
from models.cooccurrence import REASON_COOC, recent_anchors
from models.cooccurrence import rank as cooc_rank
from models.rerank import Product, RerankConfig, Reranked, Rule, rerank_lists, rule_of
from models.sasrec import SASRec
from models.serving import top_k
from streams import metrics
from streams.serving.holder import ModelHolder, Served
from streams.settings import Settings
from streams.state.neighbours import NeighbourCache
from streams.state.segment_store import SegmentStore
from streams.state.store import Store

BASELINE_VERSION = "cooccurrence-v1"
TRENDING_VERSION = "trending-v1"
REASON_BECAUSE = "because_you_bought"
REASON_TRENDING = "trending"
REASON_NEW = "new_in_category"
_RRF = 10.0  # rank offset of reciprocal-rank fusion: small lists, so a small constant
_NEWEST_CATEGORIES = 10_000  # top-level categories whose newest items are kept in memory


@dataclass(frozen=True)
class Answer:
    items: list[Reranked]
    version: str
    path: str  # model, blend, baseline, trending
    # The model's own score of its first candidate, before the rules rescale the list
    # (what the score-drift monitor watches); None off the model path.
    model_top: float | None = None


def rerank_config(s: Settings) -> RerankConfig:
    return RerankConfig(
        drop_out_of_stock=s.drop_out_of_stock,
        min_price=s.min_price,
        max_price=s.max_price,
        margin_weight=s.margin_weight,
        promo_boost=s.promo_boost,
        max_per_category=s.max_per_category,
        category_depth=s.category_depth,
    )


def reason_text(item: Reranked) -> str:
    """The reason a notification shows, with the rule that boosted the item if any.

    >>> reason_text(Reranked("i1", 1.0, "trending", "promo"))
    'trending;boost:promo'
    """
    return item.reason if item.rule is None else f"{item.reason};boost:{item.rule}"


class Listing(NamedTuple):
    """One user's candidates as parallel lists: what the rules rerank."""

    items: list[str]
    scores: list[float]
    reasons: list[str]


EMPTY = Listing([], [], [])


class ProductCache:
    """Catalog records of items and the rules' verdict on them, kept in the worker.

    Every catalog change is logged in Redis with a version (see put_product.lua); the
    cache reads the log at most every ``sync_s`` and drops exactly the items changed
    since, so an item is read from Redis once per change, not once per use.
    """

    def __init__(
        self,
        store: Store,
        config: RerankConfig,
        sync_s: float,
        max_items: int = 500_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.config, self.sync_s = store, config, sync_s
        self.max_items, self.clock = max_items, clock
        self._items: dict[str, tuple[Product, Rule]] = {}
        self._version = 0
        self._synced = float("-inf")
        # Called with the item ids changed since the last sync, or None for "any item":
        # other per-item caches built from catalog records follow the same log.
        self.on_change: list[Callable[[list[str] | None], None]] = []

    async def _sync(self) -> None:
        now = self.clock()
        if now - self._synced < self.sync_s:
            return
        version, changed = await self.store.catalog_changes(self._version)
        if changed is None or len(self._items) > self.max_items:
            self._items = {}
        else:
            for item in changed:
                self._items.pop(item, None)
        if changed is None or changed:
            for listener in self.on_change:
                listener(changed)
        self._version, self._synced = version, now

    async def get(self, item_ids: Iterable[str]) -> dict[str, tuple[Product, Rule]]:
        await self._sync()
        items = self._items
        wanted = set(item_ids)
        missing = [i for i in wanted if i not in items]
        if missing:
            for item, meta in (await self.store.item_meta(missing)).items():
                product = Product.from_meta(item, meta)
                items[item] = (product, rule_of(product, self.config))
        return {i: items[i] for i in wanted}


def model_counts(
    store_to_model: np.ndarray, indices: np.ndarray, weights: np.ndarray, n_columns: int
) -> np.ndarray:
    """Per-item weights keyed by store index, as a model's columns (unknown items left out).

    >>> model_counts(np.array([0, 2, 0, 1]), np.array([1, 2, 3]), np.array([5.0, 7.0, 9.0]), 3)
    array([0., 9., 5.])
    """
    columns = store_to_model[indices]
    counts = np.zeros(n_columns)
    np.add.at(counts, columns[columns > 0], weights[columns > 0])
    return counts


def _top_category(product: Product | None) -> str:
    return product.category.split("/", 1)[0] if product and product.category else ""


class Serving:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        holder: ModelHolder | None,
        neighbours: NeighbourCache,
        treatment: ModelHolder | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.holder = holder
        # The A/B test's treatment arm: its users are served by this holder's model.
        self.treatment = treatment if settings.ab_treatment_share > 0 else None
        self.neighbours = neighbours
        self.rules = rerank_config(settings)
        self.products = ProductCache(store, self.rules, settings.product_cache_s)
        # Newest items per top-level category. Only a catalog change alters them, and every
        # change reaches the product cache's log: read once per change, not once per batch.
        self._newest: dict[str, list[str]] = {}
        self.products.on_change.append(lambda _changed: self._newest.clear())
        self._cooc_reasons: dict[int, str] = {}  # "bought_with:<item>" per anchor, built once
        self.segments = SegmentStore(store.redis, settings.trending_tau_s)
        self.event_clock_s: float | None = None  # see observe_time

    def arm_of(self, uid: str) -> str:
        """The A/B arm a user is in ("control" while no test runs)."""
        if self.treatment is None:
            return CONTROL
        return assign(uid, self.settings.ab_salt, self.settings.ab_treatment_share)

    def _served(self, uid: str) -> Served | None:
        """The model version that serves a user: their arm's, then their canary's.

        A treatment arm whose model has not loaded yet is served by control's model;
        its recommendations say so in their version.
        """
        if self.treatment is not None and self.arm_of(uid) == TREATMENT:
            served = self.treatment.for_user(uid)
            if served is not None:
                return served
        return self.holder.for_user(uid) if self.holder else None

    async def _store_to_model(self, served: Served, top: int) -> np.ndarray:
        """Store index -> model index (0: unknown to the model) for indices up to ``top``."""
        table = served.store_to_model
        if top >= len(table):
            names = await self.store.item_ids(range(len(table), top + 1))
            grown = np.zeros(max(top + 1, 2 * len(table)), np.int64)
            grown[: len(table)] = table
            for idx in range(len(table), top + 1):
                name = names.get(idx)
                grown[idx] = served.index_of.get(name, 0) if name is not None else 0
            served.store_to_model = table = grown
        return table

    async def _to_model(
        self, served: Served, histories: Sequence[Sequence[int]]
    ) -> list[list[int]]:
        """Store item indices to the model's (items the model does not know are dropped)."""
        top = max((max(h) for h in histories if h), default=0)
        table = await self._store_to_model(served, top)
        return [[int(i) for i in table[np.asarray(h, np.int64)] if i] for h in histories]

    def observe_time(self, ts_s: float) -> None:
        """The newest event time applied so far (unix seconds): what "now" is for the trend."""
        if self.event_clock_s is None or ts_s > self.event_clock_s:
            self.event_clock_s = ts_s

    async def _refresh_trend(self, served: Served) -> None:
        """Give a model with a trend term the stream's trending items, at most every
        ``trend_refresh_s``: its checkpoint's trend ends where its training data did.

        The stream decays with ``trending_tau_s`` (a time constant), the model with its
        own half-life: trending_tau_s = trend_days / ln 2 days makes them one.
        """
        model = served.model
        if not isinstance(model, SASRec) or model.trend_weight is None:
            return
        now = time.monotonic()
        if now - served.trend_read_s < self.settings.trend_refresh_s:
            return
        served.trend_read_s = now
        indices, weights = await self.store.trending_counts(self.event_clock_s)
        if not len(indices):
            return  # nothing applied yet: the checkpoint's trend is all there is
        table = await self._store_to_model(served, int(indices.max()))
        model.use_trend_counts(model_counts(table, indices, weights, len(model.item_ids) + 1))
        metrics.TREND_REFRESHES.inc()

    async def recommend(
        self,
        uids: Sequence[str],
        histories: Sequence[Sequence[int]],
        k: int | None = None,
        withdrawn: set[str] | None = None,
    ) -> list[Answer]:
        """Recommendations for each (pseudonymised) user after their history (store indices).

        ``withdrawn`` is the set of these users who withdrew consent, when the caller
        has read it already.
        """
        s = self.settings
        k = k or s.top_k
        pool = max(s.candidates, k)
        n = len(uids)
        if withdrawn is None:
            withdrawn = await self.store.consent_withdrawn(uids)
        served = [self._served(u) for u in uids]
        cands: list[Listing] = [EMPTY] * n
        versions, paths = [BASELINE_VERSION] * n, ["baseline"] * n

        trending_rows = [i for i in range(n) if uids[i] in withdrawn or not histories[i]]
        if trending_rows:
            for row, listing in (
                await self._trending(uids, histories, trending_rows, withdrawn, pool)
            ).items():
                cands[row] = listing
                versions[row], paths[row] = TRENDING_VERSION, "trending"
        cold = set(trending_rows)
        personal = [i for i in range(n) if i not in cold]

        by_version: dict[str, list[int]] = {}
        for row in personal:
            if served[row] is not None:
                by_version.setdefault(served[row].version, []).append(row)  # type: ignore[union-attr]
        cooc_rows = [
            r for r in personal if served[r] is None or len(histories[r]) <= s.cold_blend_events
        ]
        cooc = await self._cooc([histories[r] for r in cooc_rows], pool)
        cooc_of = dict(zip(cooc_rows, cooc, strict=True))
        for rows in by_version.values():
            model = served[rows[0]]
            assert model is not None
            await self._refresh_trend(model)
            mapped = await self._to_model(model, [histories[r] for r in rows])
            best = top_k(model.model, mapped, pool, exclude_seen=s.exclude_seen)
            ids, reasons = model.item_ids, model.reasons(REASON_BECAUSE)
            items, scores, because = (
                best.items.tolist(),
                best.scores.tolist(),
                best.because.tolist(),
            )
            for j, row in enumerate(rows):
                found = [i for i in items[j] if i]
                own = Listing(
                    [ids[i - 1] for i in found],
                    scores[j][: len(found)],
                    [reasons[b] for b in because[j][: len(found)]],
                )
                versions[row], paths[row] = model.version, "model"
                if row in cooc_of:
                    own, paths[row] = _blend(own, cooc_of[row], pool), "blend"
                cands[row] = own
        for row in cooc_rows:
            if served[row] is None:
                cands[row] = cooc_of[row]

        # Only a model can be blind to a new item: the baseline's neighbours grow with it.
        recent = (
            {r: recent_anchors(histories[r], 3) for rows in by_version.values() for r in rows}
            if s.new_item_slot
            else {}
        )
        recent_names = await self.store.item_ids(i for ids in recent.values() for i in ids)
        wanted = {i for c in cands for i in c.items} | {
            recent_names[i] for ids in recent.values() for i in ids if i in recent_names
        }
        known = await self.products.get(wanted)
        rules = {i: v[1] for i, v in known.items()}
        cap = self.rules.max_per_category
        answers = [
            Answer(
                rerank_lists(c.items, c.scores, c.reasons, rules, cap, k),
                versions[row],
                paths[row],
                c.scores[0] if paths[row] == "model" and c.scores else None,
            )
            for row, c in enumerate(cands)
        ]
        if recent:
            products = {i: v[0] for i, v in known.items()}
            await self._new_item_slot(answers, recent, recent_names, products, served, histories, k)
        # One labelled increment per path and batch: a labels() lookup per answer costs
        # as much as the rest of the bookkeeping.
        for path, n in Counter(a.path for a in answers).items():
            metrics.RECOMMENDATIONS.labels(path).inc(n)
        return answers

    async def _trending(
        self,
        uids: Sequence[str],
        histories: Sequence[Sequence[int]],
        rows: Sequence[int],
        withdrawn: set[str],
        pool: int,
    ) -> dict[int, Listing]:
        """Trending items for users with no history: their segment's when they have one
        (placed by declared preferences) and consented, else the whole shop's."""
        depth = pool + self.settings.history_length
        segment_of = await self.segments.segments_of(
            uids[r] for r in rows if uids[r] not in withdrawn
        )
        lists: dict[int | None, list[tuple[int, float]]] = {None: await self.store.trending(depth)}
        for s in set(segment_of.values()):
            lists[s] = await self.segments.trending(s, depth)
        names = await self.store.item_ids(i for ranked in lists.values() for i, _ in ranked)
        out = {}
        for row in rows:
            seg: int | None = segment_of.get(uids[row])
            trend, reason = lists[seg], f"{REASON_TRENDING}_in_segment:{seg}"
            if seg is None or len(trend) < pool:
                trend, reason = lists[None], REASON_TRENDING
            # consent withdrawn: nothing personal, so not even the history's exclusions
            seen = set() if uids[row] in withdrawn else set(histories[row])
            top = [(names[i], w) for i, w in trend if i not in seen][:pool]
            out[row] = Listing(
                [i for i, _ in top], [math.log(max(w, 1e-300)) for _, w in top], [reason] * len(top)
            )
        return out

    async def _cooc(self, histories: list[Sequence[int]], k: int) -> list[Listing]:
        if not histories:
            return []
        s = self.settings
        anchors = {a for h in histories for a in recent_anchors(h, s.cooc_anchors)}
        similar, top = await self.neighbours.get(anchors)
        ranked = [cooc_rank(h, similar, top, k, s.cooc_anchors) for h in histories]
        names = await self.store.item_ids(
            {r.item for rs in ranked for r in rs}
            | {r.anchor for rs in ranked for r in rs if r.anchor}
        )
        reasons = self._cooc_reasons
        out = []
        log = math.log
        for rs in ranked:
            items, scores, why = [], [], []
            for item, score, reason, anchor in rs:
                items.append(names[item])
                scores.append(log(score) if score > 0 else -1e300)
                if reason == REASON_COOC and anchor is not None:
                    text = reasons.get(anchor)
                    if text is None:
                        text = reasons[anchor] = f"{REASON_COOC}:{names[anchor]}"
                    why.append(text)
                else:
                    why.append(reason)
            out.append(Listing(items, scores, why))
        return out

    async def _new_item_slot(
        self,
        answers: list[Answer],
        recent: dict[int, list[int]],
        names: dict[int, str],
        products: dict[str, Product],
        served: Sequence[Served | None],
        histories: Sequence[Sequence[int]],
        k: int,
    ) -> None:
        """Put the newest item of the user's main recent category in the last slot,
        when the serving model has never seen it (so no model could rank it)."""
        main: dict[int, str] = {}
        for row, ids in recent.items():
            counts = Counter(_top_category(products.get(names.get(i, ""))) for i in ids)
            counts.pop("", None)
            if counts:
                main[row] = counts.most_common(1)[0][0]
        if not main:
            return
        missing = {c for c in main.values() if c not in self._newest}
        if missing:
            if len(self._newest) > _NEWEST_CATEGORIES:
                self._newest.clear()
            self._newest.update(await self.store.new_items(missing, 5))
        fresh = self._newest
        for row, category in main.items():
            model = served[row]
            answer = answers[row]
            if model is None or answer.path == "trending":
                continue
            taken = {i.item_id for i in answer.items}
            bought = {names.get(i) for i in histories[row]}
            for item in fresh.get(category, []):
                if item in model.index_of or item in taken or item in bought:
                    continue
                floor = answer.items[-1].score if answer.items else 1.0
                new = Reranked(item, floor, f"{REASON_NEW}:{category}", None)
                keep = answer.items[: k - 1] if len(answer.items) >= k else answer.items
                answer.items[:] = [*keep, new]
                break


def _blend(model: Listing, cooc: Listing, k: int) -> Listing:
    """Reciprocal-rank fusion of the model's list and the neighbours' list.

    A short history tells the model little; item-item neighbours of the one or two
    items bought are a strong signal then, and fusion needs no common score scale.
    """
    fused: dict[str, float] = {}
    reason: dict[str, tuple[float, str]] = {}
    for ranked in (model, cooc):
        for pos, (item, why) in enumerate(zip(ranked.items, ranked.reasons, strict=True)):
            share = 1.0 / (_RRF + pos + 1)
            fused[item] = fused.get(item, 0.0) + share
            if item not in reason or share > reason[item][0]:
                reason[item] = (share, why)
    order = sorted(fused.items(), key=lambda p: (-p[1], p[0]))[:k]
    return Listing(
        [i for i, _ in order], [math.log(f) for _, f in order], [reason[i][1] for i, _ in order]
    )
