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

import numpy as np

from models.cooccurrence import REASON_COOC, recent_anchors
from models.cooccurrence import rank as cooc_rank
from models.rerank import Candidate, Product, RerankConfig, Reranked, rerank
from models.serving import top_k
from streams import metrics
from streams.serving.holder import ModelHolder, Served
from streams.settings import Settings
from streams.state.neighbours import NeighbourCache
from streams.state.store import Store

BASELINE_VERSION = "cooccurrence-v1"
TRENDING_VERSION = "trending-v1"
REASON_BECAUSE = "because_you_bought"
REASON_TRENDING = "trending"
REASON_NEW = "new_in_category"
_RRF = 10.0  # rank offset of reciprocal-rank fusion: small lists, so a small constant


@dataclass(frozen=True)
class Answer:
    items: list[Reranked]
    version: str
    path: str  # model, blend, baseline, trending


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


class ProductCache:
    """Catalog fields of items, read from Redis at most once per ``ttl_s`` per item."""

    def __init__(
        self,
        store: Store,
        ttl_s: float,
        max_items: int = 500_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.ttl_s, self.max_items, self.clock = store, ttl_s, max_items, clock
        self._items: dict[str, tuple[float, Product]] = {}

    async def get(self, item_ids: Iterable[str]) -> dict[str, Product]:
        now = self.clock()
        wanted = set(item_ids)
        stale = [i for i in wanted if i not in self._items or now - self._items[i][0] >= self.ttl_s]
        if stale:
            if len(self._items) + len(stale) > self.max_items:
                self._items = {i: v for i, v in self._items.items() if now - v[0] < self.ttl_s}
            for item, meta in (await self.store.item_meta(stale)).items():
                self._items[item] = (now, Product.from_meta(item, meta))
        return {i: self._items[i][1] for i in wanted}


def _top_category(product: Product | None) -> str:
    return product.category.split("/", 1)[0] if product and product.category else ""


class Serving:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        holder: ModelHolder | None,
        neighbours: NeighbourCache,
    ) -> None:
        self.settings = settings
        self.store = store
        self.holder = holder
        self.neighbours = neighbours
        self.products = ProductCache(store, settings.product_cache_s)
        self.rules = rerank_config(settings)

    async def _to_model(
        self, served: Served, histories: Sequence[Sequence[int]]
    ) -> list[list[int]]:
        """Store item indices to the model's (items the model does not know are dropped)."""
        top = max((max(h) for h in histories if h), default=0)
        table = served.store_to_model
        if top >= len(table):
            names = await self.store.item_ids(range(len(table), top + 1))
            grown = np.zeros(max(top + 1, 2 * len(table)), np.int64)
            grown[: len(table)] = table
            for idx in range(len(table), top + 1):
                name = names.get(idx)
                grown[idx] = served.index_of.get(name, 0) if name is not None else 0
            served.store_to_model = table = grown
        return [[int(i) for i in table[np.asarray(h, np.int64)] if i] for h in histories]

    async def recommend(
        self, uids: Sequence[str], histories: Sequence[Sequence[int]], k: int | None = None
    ) -> list[Answer]:
        """Recommendations for each (pseudonymised) user after their history (store indices)."""
        s = self.settings
        k = k or s.top_k
        pool = max(s.candidates, k)
        n = len(uids)
        withdrawn = await self.store.consent_withdrawn(uids)
        served = [self.holder.for_user(u) if self.holder else None for u in uids]
        cands: list[list[Candidate]] = [[] for _ in range(n)]
        versions, paths = [BASELINE_VERSION] * n, ["baseline"] * n

        trending_rows = [i for i in range(n) if uids[i] in withdrawn or not histories[i]]
        if trending_rows:
            trend = await self.store.trending(pool + s.history_length)
            names = await self.store.item_ids(i for i, _ in trend)
            for row in trending_rows:
                # consent withdrawn: nothing personal, so not even the history's exclusions
                seen = set() if uids[row] in withdrawn else set(histories[row])
                cands[row] = [
                    Candidate(names[i], math.log(max(w, 1e-300)), REASON_TRENDING)
                    for i, w in trend
                    if i not in seen
                ][:pool]
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
            mapped = await self._to_model(model, [histories[r] for r in rows])
            best = top_k(model.model, mapped, pool, exclude_seen=s.exclude_seen)
            ids, reasons = model.item_ids, model.reasons(REASON_BECAUSE)
            items, scores, because = (
                best.items.tolist(),
                best.scores.tolist(),
                best.because.tolist(),
            )
            for j, row in enumerate(rows):
                own = [
                    Candidate(ids[i - 1], sc, reasons[b])
                    for i, sc, b in zip(items[j], scores[j], because[j], strict=True)
                    if i
                ]
                versions[row], paths[row] = model.version, "model"
                if row in cooc_of:
                    own, paths[row] = _blend(own, cooc_of[row], pool), "blend"
                cands[row] = own
        for row in cooc_rows:
            if served[row] is None:
                cands[row] = cooc_of[row]

        recent = {
            r: recent_anchors(histories[r], 3) for r in personal if histories[r] and s.new_item_slot
        }
        recent_names = await self.store.item_ids(i for ids in recent.values() for i in ids)
        wanted = {c.item_id for cs in cands for c in cs} | {
            recent_names[i] for ids in recent.values() for i in ids if i in recent_names
        }
        products = await self.products.get(wanted)
        answers = [
            Answer(rerank(cands[row], products, self.rules, k), versions[row], paths[row])
            for row in range(n)
        ]
        if recent:
            await self._new_item_slot(answers, recent, recent_names, products, served, histories, k)
        for a in answers:
            metrics.RECOMMENDATIONS.labels(a.path).inc()
        return answers

    async def _cooc(self, histories: list[Sequence[int]], k: int) -> list[list[Candidate]]:
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
        return [
            [
                Candidate(
                    names[r.item],
                    math.log(max(r.score, 1e-300)),
                    f"{REASON_COOC}:{names[r.anchor]}"
                    if r.reason == REASON_COOC and r.anchor is not None
                    else r.reason,
                )
                for r in rs
            ]
            for rs in ranked
        ]

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
        fresh = await self.store.new_items(main.values(), 5)
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


def _blend(model: list[Candidate], cooc: list[Candidate], k: int) -> list[Candidate]:
    """Reciprocal-rank fusion of the model's list and the neighbours' list.

    A short history tells the model little; item-item neighbours of the one or two
    items bought are a strong signal then, and fusion needs no common score scale.
    """
    fused: dict[str, float] = {}
    reason: dict[str, tuple[float, str]] = {}
    for ranked in (model, cooc):
        for pos, c in enumerate(ranked):
            share = 1.0 / (_RRF + pos + 1)
            fused[c.item_id] = fused.get(c.item_id, 0.0) + share
            if c.item_id not in reason or share > reason[c.item_id][0]:
                reason[c.item_id] = (share, c.reason)
    order = sorted(fused.items(), key=lambda p: (-p[1], p[0]))[:k]
    return [Candidate(i, math.log(f), reason[i][1]) for i, f in order]
