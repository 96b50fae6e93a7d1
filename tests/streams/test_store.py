"""The Redis state step (Lua) against a real Redis."""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import pytest
import redis
from redis import asyncio as aioredis

from models.cooccurrence import CoOccurrenceRecommender
from streams.state import Interaction, Store, event_hash
from streams.state.store import APPLIED, DUPLICATE, REDELIVERED, TOO_OLD, Preference
from tests.streams.harness import zscores

pytestmark = pytest.mark.integration


def ev(uid: str, eid: str, item: str, ts: int, offset: int, source: str = "p:0") -> Interaction:
    return Interaction(uid, event_hash(eid), item, ts, source, offset)


def with_store(redis_url: str, fn: Any, **kwargs: Any) -> Any:
    async def go() -> Any:
        store = Store(aioredis.from_url(redis_url), **kwargs)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


def test_statuses_dedup_and_time_order(redis_url: str, redis_client: redis.Redis) -> None:
    async def go(store: Store) -> None:
        first = [ev("u", f"e{i}", f"i{i}", 100 + i, i) for i in range(4)]
        res = await store.apply(first)
        assert res.statuses == [APPLIED] * 4
        # The same events at the same offsets: a redelivery; at new offsets: a re-publish.
        assert (await store.apply(first)).statuses == [REDELIVERED] * 4
        again = [ev("u", f"e{i}", f"i{i}", 100 + i, 10 + i) for i in range(4)]
        assert (await store.apply(again)).statuses == [DUPLICATE] * 4
        # A late event lands in time order; ties keep arrival order.
        await store.apply([ev("u", "late", "L", 101, 20), ev("u", "tie", "T", 101, 21)])
        assert [i for _, i in await store.sequence("u")] == ["i0", "i1", "L", "T", "i2", "i3"]
        # Duplicates inside one batch are applied once.
        res = await store.apply([ev("v", "x", "a", 5, 30), ev("v", "x", "a", 5, 31)])
        assert res.statuses == [APPLIED, DUPLICATE]

    with_store(redis_url, go)


def test_full_history_trims_and_replays_change_nothing(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def go(store: Store) -> None:
        events = [ev("u", f"e{i}", f"i{i}", 100 + i // 2, i) for i in range(8)]
        await store.apply(events)
        assert [i for _, i in await store.sequence("u")] == ["i5", "i6", "i7"]
        before = raw(redis_client)
        # Re-published: evicted ones (e4 shares its second with the oldest kept, e5) are
        # told from new ones, e5 is still kept.
        res = await store.apply([ev("u", f"e{i}", f"i{i}", 100 + i // 2, 50 + i) for i in range(6)])
        assert res.statuses == [TOO_OLD] * 4 + [DUPLICATE, DUPLICATE]
        assert raw(redis_client) == before
        # An event older than the whole full history changes nothing either.
        assert (await store.apply([ev("u", "late", "x", 99, 60)])).statuses == [TOO_OLD]
        assert raw(redis_client) == before

    with_store(redis_url, go, history_length=3)


def test_a_large_same_second_invoice_is_applied_whole_and_idempotently(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def go(store: Store) -> None:
        invoice = [ev("u", f"line{i}", f"i{i}", 500, i) for i in range(10)]
        assert (await store.apply(invoice[:4])).statuses == [APPLIED] * 4
        assert (await store.apply(invoice[4:])).statuses == [APPLIED] * 6
        assert [i for _, i in await store.sequence("u")] == ["i7", "i8", "i9"]
        before = raw(redis_client)
        again = [ev("u", f"line{i}", f"i{i}", 500, 100 + i) for i in range(10)]
        assert (await store.apply(again)).statuses == [DUPLICATE] * 10
        assert raw(redis_client) == before
        # The next second moves the edge on: the hashes of second 500 are no longer kept.
        later = [ev("u", f"next{i}", f"n{i}", 501, 200 + i) for i in range(3)]
        assert (await store.apply(later)).statuses == [APPLIED] * 3
        assert not redis_client.exists("u:{u}:edge")

    with_store(redis_url, go, history_length=3)


def raw(client: redis.Redis) -> dict[bytes, Any]:
    return {k: client.dump(k) for k in sorted(client.scan_iter(match="u:*"))} | {
        b"pop": client.dump("pop")
    }


def test_counts_match_the_in_memory_reference(redis_url: str, redis_client: redis.Redis) -> None:
    rng = random.Random(7)
    stream = [(f"u{rng.randrange(30)}", f"i{rng.randrange(40)}") for _ in range(3000)]
    ref = CoOccurrenceRecommender[str](window=4, history_length=50)
    ref.learn_many(stream)

    async def go(store: Store) -> None:
        batch = [ev(u, f"e{n}", item, 1000 + n, n) for n, (u, item) in enumerate(stream)]
        for i in range(0, len(batch), 700):
            await store.apply(batch[i : i + 700])
        names = await store.item_ids(range(1, 41))
        pop = {names[int(m)]: c for m, c in zscores(redis_client, "pop")}
        assert pop == dict(ref.popularity)
        for anchor_idx in range(1, 41):
            got = {names[int(m)]: c for m, c in zscores(redis_client, f"co:{anchor_idx}")}
            assert got == dict(ref.pairs[names[anchor_idx]])
        for user, hist in ref.history.items():
            assert [i for _, i in await store.sequence(str(user))] == list(hist)

    # A cap above any count: nothing is trimmed, so the counts must agree exactly.
    with_store(redis_url, go, history_length=50, cooc_window=4, cooc_cap=10_000)


def test_catalog_newest_version_wins(redis_url: str, redis_client: redis.Redis) -> None:
    async def go(store: Store) -> None:
        new = {"item_id": "a", "title": "New", "category": ["x", "y"], "price": 2.0, "ts": 20}
        old = {"item_id": "a", "title": "Old", "category": [], "stock": 3, "ts": 10}
        assert await store.put_products([new, old]) == [True, False]
        assert await store.item_meta(["a"]) == {
            "a": {"ts": "20", "title": "New", "category": "x/y", "price": "2.0"}
        }

    with_store(redis_url, go)


def test_erase_removes_every_key_of_the_user(redis_url: str, redis_client: redis.Redis) -> None:
    async def go(store: Store) -> None:
        await store.apply([ev("u", "e1", "a", 1, 1), ev("w", "e2", "a", 1, 2)])
        await store.apply_preferences(
            [
                Preference("u", "wishlist_add", "a", None, 5),
                Preference("u", "subscribe", None, "news", 5),
                Preference("u", "consent_given", None, None, 5),
            ]
        )
        assert await store.preferences("u") == {
            "wishlist": ["a"],
            "subscriptions": ["news"],
            "consent": True,
        }
        assert await store.apply_preferences([Preference("u", "erase", None, None, 6)]) == [4]
        assert not await store.user_exists("u")
        assert await store.user_exists("w")

    with_store(redis_url, go)


def test_trending_counts_are_decayed_to_the_time_asked(
    redis_url: str, redis_client: redis.Redis
) -> None:
    day = 86_400

    async def go(store: Store) -> None:
        assert [len(a) for a in await store.trending_counts(0.0)] == [0, 0]
        # two buys of A on day 0, one of B on day 7: with a 7-day time constant, on day 7
        # A weighs 2/e and B 1, whatever epoch the zset's weights are relative to
        await store.apply([ev("u", "1", "A", 0, 1), ev("v", "2", "A", 0, 2)])
        await store.apply([ev("w", "3", "B", 7 * day, 3)])
        indices, weights = await store.trending_counts(7 * day)
        by_item = dict(zip(indices.tolist(), weights.tolist(), strict=True))
        names = await store.item_ids(by_item)
        counts = {names[i]: w for i, w in by_item.items()}
        assert counts == pytest.approx({"A": 2 / math.e, "B": 1.0})

    with_store(redis_url, go, trending_tau_s=7 * day)
