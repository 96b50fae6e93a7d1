"""Online segmentation on a real Redis, with two processors standing in for two workers.

The processors run in-process (the worker tests drive the same code through Kafka):
users are split between them by a hash, as partitions split them, and they share the
segmentation model only through Redis.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from sklearn.metrics import adjusted_rand_score

from models.datasets import SyntheticDataset, generate
from schemas.codec import Codec
from streams import keys
from streams.pseudonym import Pseudonymiser
from streams.settings import Settings
from tests.streams.harness import (
    InProcess,
    consume,
    make_settings,
    publish_records,
    stat,
    wait_for,
)
from tests.streams.harness import Worker as WorkerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shop() -> SyntheticDataset:
    return generate(n_users=1000, n_segments=4, seed=1)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(
        pseudonym_secret="s",
        redis_url=redis_url,
        product_cache_s=0,
        segments_k=4,
        segments_init_points=300,
    )


@pytest.fixture
def workers(
    redis_client: redis.Redis, redis_url: str, settings: Settings, shop: SyntheticDataset
) -> Iterator[list[InProcess]]:
    pair = [InProcess(settings, redis_url, p) for p in (0, 1)]
    pair[0].send(settings.topic_catalog, "Product", list(shop.products))
    yield pair
    for w in pair:
        w.close()


def owner(user_id: str) -> int:
    return zlib.crc32(user_id.encode()) % 2


def stream(
    workers: list[InProcess], events: list[dict[str, Any]], batch: int = 200
) -> list[dict[str, Any]]:
    """Both workers take turns on batches of their own users' events, in time order."""
    changes = []
    mine: list[list[dict[str, Any]]] = [[], []]
    for ev in events:
        mine[owner(ev["user_id"])].append(ev)
    for start in range(0, max(len(m) for m in mine), batch):
        for w, own in zip(workers, mine, strict=True):
            if own[start : start + batch]:
                outs = w.send(w.settings.topic_purchases, "Purchase", own[start : start + batch])
                changes += w.changes(outs)
    return changes


def purchases(shop: SyntheticDataset) -> list[dict[str, Any]]:
    return [rec for kind, rec in shop.events if kind == "purchase"]


def stored_segments(client: redis.Redis, settings: Settings, users: list[str]) -> list[int]:
    pseudo = Pseudonymiser(settings.secret_bytes())
    values = client.mget([keys.segment(pseudo(u)) for u in users])
    return [-1 if v is None else int(v) for v in values]


def test_two_workers_recover_planted_segments_and_agree(
    workers: list[InProcess], redis_client: redis.Redis, settings: Settings, shop: SyntheticDataset
) -> None:
    changes = stream(workers, purchases(shop))
    users = sorted(shop.segment_of)
    found = stored_segments(redis_client, settings, users)
    truth = [shop.segment_of[u] for u in users]
    assigned = [i for i, s in enumerate(found) if s >= 0]
    assert len(assigned) >= 0.98 * len(users)
    ari = adjusted_rand_score([truth[i] for i in assigned], [found[i] for i in assigned])
    assert ari >= 0.8, ari

    # One shared model: both workers hold what Redis holds after their last merge,
    # and its counts are the updates both made.
    model = json.loads(redis_client.get(keys.SEGMENT_MODEL))  # type: ignore[arg-type]
    versions = {w.proc.segmenter.km.model.version for w in workers}  # type: ignore[union-attr]
    assert versions == {model["version"]}
    assert redis_client.llen(keys.SEGMENT_WARM) == 0

    # Each user's last SegmentChange names the segment Redis holds; a first assignment
    # has no old segment and every later one moves.
    last: dict[str, int] = {}
    for c in changes:
        assert c["old"] is None if c["user_id"] not in last else c["old"] == last[c["user_id"]]
        assert c["old"] != c["new"]
        assert c["model_version"] == model["version"]
        last[c["user_id"]] = c["new"]
    assert last == {u: s for u, s in zip(users, found, strict=True) if s >= 0}
    sizes = {int(k): int(v) for k, v in redis_client.hgetall(keys.SEGMENT_SIZES).items()}
    assert sizes == {s: found.count(s) for s in set(found) if s >= 0}


def test_a_restarted_worker_continues_the_shared_model(
    workers: list[InProcess],
    redis_client: redis.Redis,
    redis_url: str,
    settings: Settings,
    shop: SyntheticDataset,
) -> None:
    events = purchases(shop)
    half = len(events) // 2
    stream(workers, events[:half])
    before = json.loads(redis_client.get(keys.SEGMENT_MODEL))  # type: ignore[arg-type]
    for w in workers:
        w.close()
    workers[:] = [InProcess(settings, redis_url, p) for p in (0, 1)]
    for w in workers:
        w.offset = 10**6  # a restart resumes at its committed offsets, past the first half
    stream(workers, events[half:])
    after = json.loads(redis_client.get(keys.SEGMENT_MODEL))  # type: ignore[arg-type]
    assert after["version"] == before["version"]  # taken from Redis, not reseeded
    assert sum(after["counts"]) > sum(before["counts"])
    users = sorted(shop.segment_of)
    found = stored_segments(redis_client, settings, users)
    truth = [shop.segment_of[u] for u in users]
    assert adjusted_rand_score(truth, found) >= 0.8


def test_a_move_whose_change_was_lost_is_announced_again_on_redelivery(
    workers: list[InProcess], redis_client: redis.Redis, settings: Settings, shop: SyntheticDataset
) -> None:
    events = purchases(shop)
    half = len(events) // 2
    stream(workers, events[:half])
    w = workers[0]
    batch = [e for e in events[half:] if owner(e["user_id"]) == 0][:300]
    committed = w.offset
    # Redis is written, then the worker dies before producing: these are never delivered.
    lost = w.changes(w.send(settings.topic_purchases, "Purchase", batch))
    assert len(lost) >= 5
    w.offset = committed  # the next owner resumes at the last committed offset
    again = {
        c["user_id"]: c for c in w.changes(w.send(settings.topic_purchases, "Purchase", batch))
    }
    for c in lost:
        redone = again.get(c["user_id"])
        assert redone is not None, f"the move of {c['user_id']} was never announced"
        # Either the same move again, or a further one from where it had gone.
        assert (redone["old"], redone["new"]) == (c["old"], c["new"]) or redone["old"] == c["new"]
    pseudo = Pseudonymiser(settings.secret_bytes())
    for user, c in again.items():
        assert int(redis_client.get(keys.segment(pseudo(user)))) == c["new"]  # type: ignore[arg-type]
    # The remembered move is the user's data: an erasure takes it with the rest.
    gone = lost[0]["user_id"]
    assert redis_client.exists(keys.segment_move(pseudo(gone)))
    erase = {"event_id": "bye", "user_id": gone, "kind": "erase", "item_id": None}
    w.send(settings.topic_preferences, "Preference", [erase | {"value": None, "ts": 1}])
    assert list(redis_client.scan_iter(match=f"u:{{{pseudo(gone)}}}:*")) == []


def test_declared_preferences_place_a_new_user_and_trending_follows_the_segment(
    workers: list[InProcess], redis_client: redis.Redis, settings: Settings, shop: SyntheticDataset
) -> None:
    stream(workers, purchases(shop))
    # A newcomer who wishlists what one planted segment buys lands in that segment.
    target = 2
    members = [u for u, s in shop.segment_of.items() if s == target]
    segs = stored_segments(redis_client, settings, members)
    home = max(set(segs), key=segs.count)
    liked = [
        rec["item_id"]
        for kind, rec in shop.events
        if kind == "purchase" and shop.segment_of[rec["user_id"]] == target
    ][:8]
    w = workers[0]
    outs = w.send(
        settings.topic_preferences,
        "Preference",
        [
            {
                "event_id": f"wish-{i}",
                "user_id": "newcomer",
                "kind": "wishlist_add",
                "item_id": item,
                "value": None,
                "ts": 1_706_000_000_000 + i,
            }
            for i, item in enumerate(liked)
        ],
    )
    (change,) = w.changes(outs)
    assert change["user_id"] == "newcomer" and change["old"] is None
    assert change["new"] == home

    pseudo = Pseudonymiser(settings.secret_bytes())("newcomer")
    (answer,) = w.loop.run_until_complete(w.proc.serving.recommend([pseudo], [[]]))
    assert answer.path == "trending"
    assert {i.reason for i in answer.items} == {f"trending_in_segment:{home}"}
    bought_by_segment = {
        rec["item_id"]
        for kind, rec in shop.events
        if kind == "purchase" and shop.segment_of[rec["user_id"]] == target
    }
    share = np.mean([i.item_id in bought_by_segment for i in answer.items])
    assert share == 1.0

    # Erasure takes the segment and its count away.
    size = int(redis_client.hget(keys.SEGMENT_SIZES, str(home)))  # type: ignore[arg-type]
    w.send(
        settings.topic_preferences,
        "Preference",
        [
            {
                "event_id": "bye",
                "user_id": "newcomer",
                "kind": "erase",
                "item_id": None,
                "value": None,
                "ts": 1_706_000_100_000,
            }
        ],
    )
    assert redis_client.get(keys.segment(pseudo)) is None
    assert int(redis_client.hget(keys.SEGMENT_SIZES, str(home))) == size - 1  # type: ignore[arg-type]


def test_withdrawn_users_are_not_segmented(
    workers: list[InProcess], redis_client: redis.Redis, settings: Settings, shop: SyntheticDataset
) -> None:
    events = purchases(shop)
    quiet = events[0]["user_id"]
    w = workers[owner(quiet)]
    w.send(
        settings.topic_preferences,
        "Preference",
        [
            {
                "event_id": "no",
                "user_id": quiet,
                "kind": "consent_withdrawn",
                "item_id": None,
                "value": None,
                "ts": 1,
            }
        ],
    )
    changes = stream(workers, events)
    assert quiet not in {c["user_id"] for c in changes}
    assert stored_segments(redis_client, settings, [quiet]) == [-1]


@pytest.mark.slow
def test_two_worker_processes_share_segments_across_a_restart(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    shop: SyntheticDataset,
    tmp_path: Path,
) -> None:
    s = make_settings(
        kafka_bootstrap, redis_url, partitions=2, segments_k=4, segments_init_points=300
    )
    events = purchases(shop)
    half = len(events) // 2
    publish_records(s, [("product", p["item_id"], p) for p in shop.products])

    def run_pair(tag: str, upto: int) -> None:
        pair = [WorkerProcess(s, tmp_path / f"{tag}-{i}.log") for i in (0, 1)]
        try:
            wait_for(lambda: stat(redis_client, "applied") == upto, 240, tag, pair[0])
            for w in pair:
                w.assert_alive()
        finally:
            for w in pair:
                w.stop()

    publish_records(s, [("purchase", r["user_id"], r) for r in events[:half]])
    run_pair("first", half)
    before = json.loads(redis_client.get(keys.SEGMENT_MODEL))  # type: ignore[arg-type]
    publish_records(s, [("purchase", r["user_id"], r) for r in events[half:]])
    run_pair("second", len(events))
    after = json.loads(redis_client.get(keys.SEGMENT_MODEL))  # type: ignore[arg-type]

    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert logs.count(" seeded from ") == 1  # one worker seeded; every other one took it
    assert after["version"] == before["version"]  # the restart kept the model
    assert sum(after["counts"]) > sum(before["counts"])

    users = sorted(shop.segment_of)
    found = stored_segments(redis_client, s, users)
    assert found.count(-1) <= 0.02 * len(users)
    truth = [shop.segment_of[u] for u in users]
    assert adjusted_rand_score(truth, found) >= 0.8

    codec = Codec()
    emitted = stat(redis_client, "segment_changes")
    assert emitted >= len(users) - found.count(-1)
    records = consume(s, s.topic_segments, emitted, 60)
    assert len(records) == emitted
    last: dict[str, int] = {}
    for r in records:  # one partition per user, so in order per user
        change = codec.decode("SegmentChange", r.value)
        assert r.key == change["user_id"].encode()
        last[change["user_id"]] = change["new"]
    assert last == {u: seg for u, seg in zip(users, found, strict=True) if seg >= 0}
