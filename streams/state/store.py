"""Redis access for the workers: every read and write goes through here, batched."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from schemas.errors import ServiceError
from streams import keys
from streams.state.sequence import decode_sequence

APPLIED, REDELIVERED, DUPLICATE, TOO_OLD = 1, 2, 0, 3


def _pairs(reply: list[Any]) -> list[tuple[int, float]]:
    """(item index, score) pairs from a WITHSCORES reply in RESP3 or RESP2 shape."""
    if reply and isinstance(reply[0], list):
        return [(int(m), float(sc)) for m, sc in reply]
    it = iter(reply)
    return [(int(m), float(sc)) for m, sc in zip(it, it, strict=True)]


def _script(name: str) -> str:
    return resources.files("streams.state").joinpath(name).read_text()


@dataclass(frozen=True, slots=True)
class Interaction:
    """A validated purchase or review, as the sequence update needs it."""

    uid: str  # pseudonym
    event_hash: bytes
    item_id: str
    ts_s: int
    source: str  # "topic:partition", for redelivery detection
    offset: int


@dataclass(frozen=True, slots=True)
class ApplyResult:
    statuses: list[int]
    item_index: list[int]
    before: dict[str, np.ndarray]  # pseudonym -> sequence before the batch
    created: set[int] = field(default_factory=set)  # item indexes first seen in this batch


@dataclass(frozen=True, slots=True)
class Preference:
    uid: str
    kind: str
    item_id: str | None
    value: str | None
    ts: int


class Store:
    """State of users and items, shared by every worker through one Redis."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        history_length: int = 200,
        cooc_window: int = 3,
        cooc_cap: int = 100,
        trending_tau_s: float = 7 * 86_400,
    ) -> None:
        self.redis = redis
        self.history_length = history_length
        self.trending_tau_s = trending_tau_s
        self.cooc_window = cooc_window
        self.cooc_cap = cooc_cap
        self._apply = redis.register_script(_script("apply_interactions.lua"))
        self._preference = redis.register_script(_script("apply_preference.lua"))
        self._product = redis.register_script(_script("put_product.lua"))
        # The vocabulary only grows and an index never changes meaning, so caching it
        # in the worker is always safe.
        self._item_ids: dict[int, str] = {}

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Store:
        return cls(aioredis.from_url(url, decode_responses=False), **kwargs)

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> None:
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise ServiceError(f"Redis does not answer: {exc}") from exc

    async def apply(self, events: Sequence[Interaction]) -> ApplyResult:
        """Apply a batch in one atomic script call; see apply_interactions.lua."""
        if not events:
            return ApplyResult([], [], {})
        argv: list[Any] = [
            self.history_length,
            self.cooc_window,
            self.cooc_cap,
            len(events),
            self.trending_tau_s,
        ]
        for ev in events:
            argv += [ev.uid, ev.event_hash, ev.item_id, ev.ts_s, ev.source, ev.offset]
        statuses, idxs, uids, blobs, created = await self._apply(
            keys=[
                keys.ITEM_INDEX,
                keys.ITEM_IDS,
                keys.ITEM_NEXT,
                keys.POPULARITY,
                keys.APPLIED_OFFSETS,
                keys.STATS,
                keys.USERS_SEEN,
                keys.TRENDING,
                keys.TRENDING_EPOCH,
            ],
            args=argv,
        )
        before = {u.decode(): decode_sequence(b) for u, b in zip(uids, blobs, strict=True)}
        for ev, idx in zip(events, idxs, strict=True):
            if idx:
                self._item_ids.setdefault(int(idx), ev.item_id)
        return ApplyResult(
            [int(s) for s in statuses], [int(i) for i in idxs], before, {int(i) for i in created}
        )

    async def scoring_inputs(
        self, anchors: Iterable[int], neighbours: int, popular: int
    ) -> tuple[dict[int, list[tuple[int, float]]], list[tuple[int, float]], dict[int, float]]:
        """Co-occurrence lists of the anchors, the most popular items, and popularity
        of every item involved: two round trips whatever the batch size."""
        anchor_list = list(dict.fromkeys(anchors))
        # Raw commands: redis-py's reply callbacks for sorted sets cost more than the
        # round trip itself at thousands of members per batch.
        pipe = self.redis.pipeline(transaction=False)
        for a in anchor_list:
            pipe.execute_command("ZREVRANGE", keys.cooc(a), 0, neighbours - 1, "WITHSCORES")
        pipe.execute_command("ZREVRANGE", keys.POPULARITY, 0, popular - 1, "WITHSCORES")
        replies = await pipe.execute()
        lists = {a: _pairs(rep) for a, rep in zip(anchor_list, replies[:-1], strict=True)}
        top = _pairs(replies[-1])
        pop = dict(top)
        wanted = {a for a in anchor_list if a not in pop}
        for rep in lists.values():
            wanted.update(m for m, _ in rep if m not in pop)
        if wanted:
            order = list(wanted)
            scores = await self.redis.execute_command("ZMSCORE", keys.POPULARITY, *order)
            pop.update((m, float(s or 0.0)) for m, s in zip(order, scores, strict=True))
        return lists, top, pop

    async def catalog_changes(self, since: int) -> tuple[int, list[str] | None]:
        """The catalog version now and the items changed after version ``since``; None
        when the change log no longer reaches back that far (refresh everything)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.CATALOG_VERSION)
        pipe.zrangebyscore(keys.CATALOG_CHANGES, f"({since}", "+inf")
        pipe.get(keys.CATALOG_FLOOR)
        version, changed, floor = await pipe.execute()
        now = int(version or 0)
        if since < int(floor or 0):
            return now, None
        return now, [c.decode() if isinstance(c, bytes) else c for c in changed]

    async def trending_counts(self, now_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every trending item index and its weight decayed to ``now_s`` (unix seconds;
        default the trending epoch): the stream's counts, on the model's footing."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.execute_command("ZRANGE", keys.TRENDING, 0, -1, "WITHSCORES")
        pipe.get(keys.TRENDING_EPOCH)
        reply, epoch = await pipe.execute()
        pairs = _pairs(reply)
        indices = np.array([i for i, _ in pairs], np.int64)
        weights = np.array([w for _, w in pairs], np.float64)
        if epoch is not None and now_s is not None:
            # the zset holds weights relative to the epoch, which may lag the newest
            # event by many time constants
            weights *= math.exp((float(epoch) - now_s) / self.trending_tau_s)
        return indices, weights

    async def trending(self, n: int) -> list[tuple[int, float]]:
        """The ``n`` items with the highest time-decayed popularity, best first."""
        reply = await self.redis.execute_command("ZREVRANGE", keys.TRENDING, 0, n - 1, "WITHSCORES")
        return _pairs(reply)

    async def new_items(self, categories: Iterable[str], n: int) -> dict[str, list[str]]:
        """The ``n`` newest item ids of each top-level category, newest first."""
        order = list(dict.fromkeys(categories))
        if not order:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for c in order:
            pipe.zrevrange(keys.new_in_category(c), 0, n - 1)
        replies = await pipe.execute()
        return {
            c: [m.decode() if isinstance(m, bytes) else m for m in rep]
            for c, rep in zip(order, replies, strict=True)
        }

    async def consent_withdrawn(self, uids: Iterable[str]) -> set[str]:
        """Those of ``uids`` whose latest consent event withdrew consent (one round trip)."""
        order = list(dict.fromkeys(uids))
        if not order:
            return set()
        flags = await self.redis.execute_command("SMISMEMBER", keys.CONSENT_WITHDRAWN, *order)
        return {u for u, f in zip(order, flags, strict=True) if int(f)}

    async def item_ids(self, idxs: Iterable[int]) -> dict[int, str]:
        missing = [i for i in set(idxs) if i not in self._item_ids]
        if missing:
            values = await self.redis.hmget(keys.ITEM_IDS, missing)
            for i, v in zip(missing, values, strict=True):
                if v is not None:
                    self._item_ids[i] = v.decode() if isinstance(v, bytes) else v
        return self._item_ids

    async def history(self, uid: str) -> list[int]:
        """A user's retained history as item indices, oldest first (what scoring reads)."""
        blob = await self.redis.get(keys.seq(uid))
        return [int(i) for i in decode_sequence(blob if isinstance(blob, bytes) else None)["item"]]

    async def sequence(self, uid: str) -> list[tuple[int, str]]:
        """A user's retained history as (ts seconds, item id), oldest first."""
        blob = await self.redis.get(keys.seq(uid))
        arr = decode_sequence(blob if isinstance(blob, bytes) else None)
        names = await self.item_ids(int(i) for i in arr["item"])
        return [(int(t), names[int(i)]) for t, i in zip(arr["ts"], arr["item"], strict=True)]

    async def put_products(self, products: Sequence[Mapping[str, Any]]) -> list[bool]:
        pipe = self.redis.pipeline(transaction=False)
        for p in products:
            fields: list[Any] = []
            for name in ("title", "brand", "price", "stock", "margin", "promo"):
                if p.get(name) is not None:
                    fields += [name, p[name]]
            where = [
                keys.item_meta(p["item_id"]),
                keys.CATALOG_VERSION,
                keys.CATALOG_CHANGES,
                keys.CATALOG_FLOOR,
            ]
            if p.get("category"):
                fields += ["category", "/".join(p["category"])]
                where.append(keys.new_in_category(p["category"][0]))
            await self._product(keys=where, args=[p["ts"], p["item_id"], *fields], client=pipe)
        return [bool(r) for r in await pipe.execute()]

    async def item_meta(self, item_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        pipe = self.redis.pipeline(transaction=False)
        for i in item_ids:
            pipe.hgetall(keys.item_meta(i))
        replies = await pipe.execute()
        return {
            i: {k.decode(): v.decode() for k, v in rep.items()}
            for i, rep in zip(item_ids, replies, strict=True)
        }

    async def apply_preferences(self, prefs: Sequence[Preference]) -> list[int]:
        pipe = self.redis.pipeline(transaction=False)
        for p in prefs:
            await self._preference(
                keys=[
                    keys.prefs(p.uid),
                    keys.wishlist(p.uid),
                    keys.subscriptions(p.uid),
                    keys.CONSENT_WITHDRAWN,
                    keys.SEGMENT_SIZES,
                    keys.segment(p.uid),
                    *keys.user_keys(p.uid),
                ],
                args=[p.kind, p.item_id or "", p.value or "", p.ts, p.uid],
                client=pipe,
            )
        return [int(r) for r in await pipe.execute()]

    async def preferences(self, uid: str) -> dict[str, Any]:
        """Current wishlist, subscriptions and consent of a user."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.wishlist(uid))
        pipe.hgetall(keys.subscriptions(uid))
        pipe.hget(keys.prefs(uid), "consent")
        wish, subs, consent = await pipe.execute()

        def active(h: dict[bytes, bytes]) -> list[str]:
            return sorted(k.decode() for k, v in h.items() if v.endswith(b":1"))

        return {
            "wishlist": active(wish),
            "subscriptions": active(subs),
            "consent": None if consent is None else consent.endswith(b":1"),
        }

    async def user_exists(self, uid: str) -> bool:
        return bool(await self.redis.exists(*keys.user_keys(uid)))

    async def stats(self) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.STATS)
        pipe.pfcount(keys.USERS_SEEN)
        pipe.get(keys.ITEM_NEXT)
        raw, users, items = await pipe.execute()
        out = {k.decode(): int(v) for k, v in raw.items()}
        out["users_seen"] = int(users)
        out["items_seen"] = int(items or 0)
        return out

    async def incr_stats(self, counts: Mapping[str, int]) -> None:
        if any(counts.values()):
            pipe = self.redis.pipeline(transaction=False)
            for k, v in counts.items():
                if v:
                    pipe.hincrby(keys.STATS, k, v)
            await pipe.execute()
