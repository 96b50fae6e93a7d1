"""Redis bytes per user and of the global keys, after histories applied through Store."""

from __future__ import annotations

import secrets
from typing import Any

from redis import asyncio as aioredis

from models.datasets import generate
from streams import keys
from streams.pseudonym import Pseudonymiser
from streams.settings import Settings
from streams.state import ENTRY_BYTES, Interaction, Store, event_hash


async def _usage(client: aioredis.Redis, names: list[bytes]) -> list[int]:
    # SAMPLES 0: exact size of hashes and zsets instead of an estimate from 5 elements.
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.memory_usage(name, samples=0)
    return [int(v or 0) for v in await pipe.execute()]


async def _scan(client: aioredis.Redis, pattern: str) -> list[bytes]:
    return [k async for k in client.scan_iter(match=pattern, count=1000)]


async def redis_memory(
    settings: Settings,
    redis_url: str,
    *,
    users: int = 2000,
    events_per_user: int = 50,
    items: int = 3000,
) -> dict[str, Any]:
    """Apply ``events_per_user`` synthetic purchases for each of ``users`` users, in
    worker-sized batches, then measure the keys they left with ``MEMORY USAGE``.

    The global figures describe everything in this Redis: they are this run's alone
    only when it starts empty.
    """
    ds = generate(n_users=users, n_items=items, events_per_user=(events_per_user, events_per_user))
    pseudonym = Pseudonymiser(secrets.token_bytes(16))
    source = f"bench-memory-{secrets.token_hex(4)}:0"
    batch = [
        Interaction(
            uid=pseudonym(rec["user_id"]),
            event_hash=event_hash(rec["event_id"]),
            item_id=rec["item_id"],
            ts_s=rec["ts"] // 1000,
            source=source,
            offset=offset,
        )
        for offset, (_, rec) in enumerate(ds.events)
    ]
    store = Store.from_url(
        redis_url,
        history_length=settings.history_length,
        cooc_window=settings.cooc_window,
        cooc_cap=2 * settings.cooc_neighbours,
    )
    client = store.redis
    try:
        for i in range(0, len(batch), settings.batch_size):
            await store.apply(batch[i : i + settings.batch_size])

        ours = {keys.seq(ev.uid).encode() for ev in batch}
        seq_keys = [k for k in await _scan(client, "u:*:seq") if k in ours]
        seq_bytes = await _usage(client, seq_keys)
        lengths = [int(n) for n in await _pipeline_strlen(client, seq_keys)]
        tags = _tags(ours)
        user_keys = [k for k in await _scan(client, "u:*") if k.split(b":", 2)[1] in tags]

        cooc_keys = await _scan(client, "co:*")
        vocabulary = [keys.ITEM_INDEX, keys.ITEM_IDS, keys.ITEM_NEXT]
        other = [keys.APPLIED_OFFSETS, keys.STATS, keys.USERS_SEEN]
        vocab_bytes = await _usage(client, [k.encode() for k in vocabulary])
        pop_bytes = await _usage(client, [keys.POPULARITY.encode()])
        cooc_bytes = await _usage(client, cooc_keys)
        other_bytes = await _usage(client, [k.encode() for k in other])
        items_seen = int(await client.get(keys.ITEM_NEXT) or 0)
    finally:
        await store.close()

    n = len(seq_keys)
    return {
        "e_users": n,
        "e_events_per_user": events_per_user,
        "e_entries_per_user_min": min(lengths) // ENTRY_BYTES if lengths else 0,
        "e_seq_payload_bytes_per_user": events_per_user * ENTRY_BYTES,
        "e_redis_bytes_per_user_mean": round(sum(seq_bytes) / n, 1) if n else 0.0,
        "e_redis_bytes_per_user_max": max(seq_bytes, default=0),
        "e_user_keys_per_user": round(len(user_keys) / n, 2) if n else 0.0,
        "e_items": items_seen,
        "e_global_item_vocabulary_bytes": sum(vocab_bytes),
        "e_global_cooccurrence_bytes": sum(cooc_bytes),
        "e_global_cooccurrence_keys": len(cooc_keys),
        "e_global_popularity_bytes": sum(pop_bytes),
        "e_global_other_bytes": sum(other_bytes),
    }


async def _pipeline_strlen(client: aioredis.Redis, names: list[bytes]) -> list[int]:
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.strlen(name)
    return [int(v) for v in await pipe.execute()]


def _tags(seq_keys: set[bytes]) -> set[bytes]:
    """The ``{pseudonym}`` hash tags of ``u:{pseudonym}:seq`` keys."""
    return {k.split(b":", 2)[1] for k in seq_keys}
