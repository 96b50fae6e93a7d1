"""The backbone on a real broker and a real Redis, with `reco worker` subprocesses."""

from __future__ import annotations

import math
import re
import struct
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from aiokafka.partitioner import DefaultPartitioner
from fastavro import parse_schema, schemaless_writer

from models.datasets import Dataset, generate, load
from schemas.codec import Codec, load_schema
from schemas.errors import InvalidEventError, SchemaError
from schemas.validation import validate
from streams.pseudonym import Pseudonymiser
from streams.settings import Settings
from streams.status import consumer_lag
from tests.streams.harness import (
    Worker,
    consume,
    get_bytes,
    hget_bytes,
    logical_snapshot,
    make_settings,
    publish_raw,
    publish_records,
    raw_snapshot,
    run,
    stat,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def retail() -> Dataset:
    try:
        return load("online_retail", limit=10_000)
    except FileNotFoundError as exc:
        pytest.skip(reason=f"online retail data set not present: {exc}")


def purchases(ds: Dataset) -> list[dict[str, Any]]:
    return [rec for kind, rec in ds.events if kind == "purchase"]


def partition_ranks(events: list[dict[str, Any]], partitions: int) -> dict[str, int]:
    """Each event's position among the events published to its partition (keyed by user,
    with the producer's own partitioner)."""
    choose, every = DefaultPartitioner(), list(range(partitions))
    seen: Counter[int] = Counter()
    out = {}
    for rec in events:
        p = choose(rec["user_id"].encode(), every, every)
        out[rec["event_id"]] = seen[p]
        seen[p] += 1
    return out


def expected_sequences(events: list[dict[str, Any]], n: int) -> dict[str, list[str]]:
    per_user: dict[str, list[str]] = defaultdict(list)
    for rec in events:  # already in time order, ties in publish order
        per_user[rec["user_id"]].append(rec["item_id"])
    return {u: items[-n:] for u, items in per_user.items()}


def redis_sequence(client: redis.Redis, s: Settings, user_id: str) -> list[str]:
    from streams.state.sequence import decode_sequence

    uid = Pseudonymiser(s.secret_bytes())(user_id)
    arr = decode_sequence(get_bytes(client, f"u:{{{uid}}}:seq"))
    if len(arr) == 0:
        return []
    names = client.hmget("items:id", [str(int(i)) for i in arr["item"]])
    return [n.decode() for n in names if isinstance(n, bytes)]


def test_retail_purchases_give_one_recommendation_each_and_exact_sequences(
    retail: Dataset,
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    s = make_settings(kafka_bootstrap, redis_url)
    events = purchases(retail)
    assert len(events) == 10_000
    publish_records(s, [("purchase", r["user_id"], r) for r in events])
    worker = Worker(s, tmp_path / "worker.log")
    try:
        recs = consume(s, s.topic_recommendations, 10_000, timeout=180)
        codec = Codec()
        decoded = [codec.decode("Recommendation", r.value) for r in recs]
        causes = Counter(d["cause_event_id"] for d in decoded)
        assert len(decoded) == 10_000
        assert set(causes) == {r["event_id"] for r in events}
        assert max(causes.values()) == 1
        by_event = {r["event_id"]: r for r in events}
        for rec, d in zip(recs, decoded, strict=True):
            source = by_event[d["cause_event_id"]]
            assert d["user_id"] == source["user_id"]  # the id upstream sent, not the pseudonym
            assert rec.key == source["user_id"].encode()
            assert len(d["items"]) <= s.top_k
        # A cold store knows only the first batch's items: when that batch is small (a
        # slow first fetch, perhaps of one partition alone), its earliest buyers can have
        # nothing left to recommend. Early means early in the event's own partition.
        order = {r["event_id"]: i for i, r in enumerate(events)}
        rank_in_partition = partition_ranks(events, s.partitions)
        empty = [rank_in_partition[d["cause_event_id"]] for d in decoded if not d["items"]]
        assert len(empty) <= 20 and all(i < 100 for i in empty), empty
        # Nothing recommended that the user had bought at the time of the recommendation
        # (within the retained history: memory per user is bounded by design).
        bought: dict[str, list[str]] = defaultdict(list)
        for d in sorted(decoded, key=lambda d: order[d["cause_event_id"]]):
            src = by_event[d["cause_event_id"]]
            bought[src["user_id"]].append(src["item_id"])
            recent = set(bought[src["user_id"]][-s.history_length :])
            assert not {i["item_id"] for i in d["items"]} & recent, src["user_id"]

        expected = expected_sequences(events, s.history_length)
        for user_id, items in expected.items():
            assert redis_sequence(redis_client, s, user_id) == items, user_id
        # Only pseudonyms in Redis keys.
        for key in redis_client.scan_iter(match="u:*"):
            assert re.fullmatch(rb"u:\{[0-9a-f]{16}\}:\w+", key), key

        before = raw_snapshot(redis_client)
        applied = stat(redis_client, "applied")
        assert applied == 10_000
        publish_records(s, [("purchase", r["user_id"], r) for r in events])
        wait_for(
            lambda: stat(redis_client, "duplicates") + stat(redis_client, "stale") >= 10_000,
            120,
            "the replay",
            worker,
        )
        assert stat(redis_client, "applied") == applied
        assert raw_snapshot(redis_client) == before
        worker.assert_alive()
    finally:
        worker.stop()


def _malformed(s: Settings, valid: list[dict[str, Any]]) -> list[tuple[str, bytes, bytes]]:
    """200 bad messages of many kinds, each checked to be rejected by decode+validate."""
    codec = Codec()
    base = valid[0]
    purchase_schema = load_schema("Purchase")
    no_qty = {
        **purchase_schema,
        "fields": [f for f in purchase_schema["fields"] if f["name"] != "quantity"],
    }
    no_qty_parsed = parse_schema({**no_qty, "name": "reco.PurchaseNoQty"})

    def write(schema: Any, record: dict[str, Any]) -> bytes:
        import io

        buf = io.BytesIO()
        schemaless_writer(buf, schema, record)
        return buf.getvalue()

    def purchase(**changes: Any) -> bytes:
        # Avro cannot encode some bad values (NaN is fine, empty strings are fine), so
        # write with the real schema and only domain rules reject them.
        return write(purchase_schema, {**base, **changes})

    makers = [
        lambda i: b"this is not avro %d" % i,
        lambda i: bytes([0xFF, 0xFE, i % 256]),
        lambda i: b"",
        lambda i: codec.encode("Purchase", base)[: 5 + i % 5],
        lambda i: codec.encode(
            "Product", {"item_id": f"x{i}", "category": ["a", "b"], "ts": 1, "title": "t" * 40}
        ),
        lambda i: write(no_qty_parsed, {k: v for k, v in base.items() if k != "quantity"}),
        lambda i: purchase(quantity=-1 - i),
        lambda i: purchase(quantity=0),
        lambda i: purchase(price=math.nan),
        lambda i: purchase(price=-2.5),
        lambda i: purchase(user_id=""),
        lambda i: purchase(user_id="   "),
        lambda i: purchase(user_id="u" * 10_240),
        lambda i: purchase(item_id=""),
        lambda i: purchase(ts=4_102_444_800_000 + i),  # 2100-01-01
        lambda i: purchase(ts=-5),
        lambda i: b"\x00\x00\x00\x00\x01" + codec.encode("Purchase", base),
    ]
    out = []
    now_ms = 1_900_000_000_000
    for i in range(200):
        raw = makers[i % len(makers)](i)
        try:
            validate("Purchase", codec.decode("Purchase", raw), now_ms)
        except (SchemaError, InvalidEventError):
            pass
        else:  # pragma: no cover - the test would prove nothing
            raise AssertionError(f"maker {i % len(makers)} produced a valid message")
        out.append((s.topic_purchases, f"bad{i}".encode(), raw))
    return out


def test_malformed_messages_go_to_dead_letter_and_valid_ones_are_processed(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    s = make_settings(kafka_bootstrap, redis_url, partitions=1)
    ds = generate(n_users=100, n_items=80, events_per_user=(5, 15), seed=3)
    valid = purchases(ds)[:1000]
    bad = _malformed(s, valid)
    codec = Codec()
    interleaved: list[tuple[bytes, bytes]] = []
    step = len(valid) // len(bad)
    for i, rec in enumerate(valid):
        interleaved.append((rec["user_id"].encode(), codec.encode("Purchase", rec)))
        if i % step == 0 and bad:
            _, k, v = bad.pop(0)
            interleaved.append((k, v))
    assert not bad
    publish_raw(s, s.topic_purchases, interleaved)
    worker = Worker(s, tmp_path / "worker.log")
    try:
        dead = consume(s, s.topic_dead_letter, 200, timeout=120)
        recs = consume(s, s.topic_recommendations, len(valid), timeout=120)
        letters = [codec.decode("DeadLetter", d.value) for d in dead]
        assert len(letters) == 200
        sent = {k: v for k, v in interleaved if k.startswith(b"bad")}
        for d, letter in zip(dead, letters, strict=True):
            assert letter["topic"] == s.topic_purchases
            assert letter["key"] == d.key
            assert letter["raw"] == sent[letter["key"]]
            assert letter["error"].startswith(("undecodable: ", "invalid: "))
        offsets = {(letter["partition"], letter["offset"]) for letter in letters}
        assert len(offsets) == 200
        reasons = Counter(letter["error"].split(":")[0] for letter in letters)
        assert reasons["undecodable"] > 0 and reasons["invalid"] > 0
        assert len(recs) == len(valid)
        assert stat(redis_client, "applied") == len(valid)
        assert stat(redis_client, "dead_letters") == 200
        worker.assert_alive()
    finally:
        worker.stop()


def test_an_output_too_large_for_the_broker_dead_letters_its_events_and_the_partition_goes_on(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # As records, recommendations of ten items take about 460 bytes here, of seven or
    # fewer under 400; a dead letter of a purchase about 310.
    s = make_settings(kafka_bootstrap, redis_url, partitions=1, producer_max_request_size=400)
    ds = generate(n_users=100, n_items=80, events_per_user=(5, 15), seed=3)
    events = purchases(ds)[:600]
    publish_records(s, [("purchase", r["user_id"], r) for r in events])
    worker = Worker(s, tmp_path / "worker.log")
    codec = Codec()

    def committed() -> int:
        return int(run(consumer_lag(s))[s.topic_purchases][0]["committed"])

    try:
        # Committed means delivered: the refused outputs did not hold the partition back.
        wait_for(lambda: committed() == len(events), 120, "every offset committed", worker)
        assert stat(redis_client, "applied") == len(events)
        recs = [
            codec.decode("Recommendation", r.value)
            for r in consume(s, s.topic_recommendations, len(events), timeout=10)
        ]
        dead = consume(s, s.topic_dead_letter, len(events), timeout=10)
        letters = [codec.decode("DeadLetter", d.value) for d in dead]
        assert recs and letters
        lettered = {codec.decode("Purchase", x["raw"])["event_id"]: x for x in letters}
        for letter in letters:
            assert letter["topic"] == s.topic_purchases
            assert letter["error"].startswith(f"its output to {s.topic_recommendations} (")
            assert "was refused: MessageSizeTooLargeError" in letter["error"]
        # Every purchase has its recommendation or a dead letter, so none is lost, and
        # never both: a letter goes to the one event whose output was refused.
        answered = {r["cause_event_id"] for r in recs}
        assert answered | set(lettered) == {e["event_id"] for e in events}
        assert not answered & set(lettered)
        assert stat(redis_client, "dead_letters") == len(letters) == len(lettered)
        assert "refused by the broker (MessageSizeTooLargeError)" in worker.log_path.read_text()
        worker.assert_alive()
    finally:
        worker.stop()


def test_sigkill_mid_replay_loses_and_doubles_nothing(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    ds = generate(n_users=600, n_items=300, events_per_user=(20, 60), seed=11)
    events = purchases(ds)
    msgs = [("purchase", r["user_id"], r) for r in events]
    # A large co-occurrence cap means no trimming, so the counts do not depend on how
    # partitions interleave and two correct runs must agree exactly.
    big = {"cooc_neighbours": 1000}

    reference = make_settings(kafka_bootstrap, redis_url, **big)
    publish_records(reference, msgs)
    worker = Worker(reference, tmp_path / "reference.log")
    try:
        wait_for(lambda: stat(redis_client, "applied") == len(events), 180, "reference", worker)
    finally:
        worker.stop()
    expected = logical_snapshot(redis_client)
    redis_client.flushdb()

    s = make_settings(kafka_bootstrap, redis_url, **big)
    publish_records(s, msgs)
    first = Worker(s, tmp_path / "first.log")
    try:
        wait_for(lambda: stat(redis_client, "applied") >= len(events) // 3, 120, "progress", first)
    finally:
        first.kill()
    killed_at = stat(redis_client, "applied")
    assert killed_at < len(events), "the worker finished before it could be killed"
    second = Worker(s, tmp_path / "second.log")
    try:
        wait_for(lambda: stat(redis_client, "applied") == len(events), 180, "restart", second)
        codec = Codec()
        wanted = {r["event_id"] for r in events}

        def causes(records: list[Any]) -> set[str]:
            return {codec.decode("Recommendation", r.value)["cause_event_id"] for r in records}

        # Re-deliveries repeat some recommendations, so read until every event is covered.
        recs = consume(s, s.topic_recommendations, 0, 90, until=lambda rs: causes(rs) >= wanted)
    finally:
        second.stop()
    assert logical_snapshot(redis_client) == expected
    assert causes(recs) == wanted  # none lost; repeats are allowed


def test_catalog_preferences_and_erasure(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    s = make_settings(kafka_bootstrap, redis_url, partitions=1)
    ds = generate(n_users=20, n_items=30, events_per_user=(3, 5), seed=5)
    user = purchases(ds)[0]["user_id"]
    prefs = [
        {
            "event_id": "p1",
            "user_id": user,
            "kind": "wishlist_add",
            "item_id": "i1",
            "value": None,
            "ts": 1_000,
        },
        {
            "event_id": "p2",
            "user_id": user,
            "kind": "wishlist_add",
            "item_id": "i2",
            "value": None,
            "ts": 2_000,
        },
        {
            "event_id": "p3",
            "user_id": user,
            "kind": "wishlist_remove",
            "item_id": "i1",
            "value": None,
            "ts": 3_000,
        },
        # Older than the removal: must not bring i1 back.
        {
            "event_id": "p4",
            "user_id": user,
            "kind": "wishlist_add",
            "item_id": "i1",
            "value": None,
            "ts": 2_500,
        },
        {
            "event_id": "p5",
            "user_id": user,
            "kind": "subscribe",
            "item_id": None,
            "value": "newsletter",
            "ts": 1_000,
        },
        {
            "event_id": "p6",
            "user_id": user,
            "kind": "consent_withdrawn",
            "item_id": None,
            "value": None,
            "ts": 1_000,
        },
    ]
    publish_records(s, [("product", p["item_id"], p) for p in ds.products])
    publish_records(s, [("purchase", r["user_id"], r) for r in purchases(ds)])
    publish_records(s, [("preference", p["user_id"], p) for p in prefs])
    worker = Worker(s, tmp_path / "worker.log")
    uid = Pseudonymiser(s.secret_bytes())(user)
    try:
        wait_for(lambda: stat(redis_client, "preferences") == len(prefs), 90, "prefs", worker)
        wait_for(
            lambda: stat(redis_client, "products") == len(ds.products),
            30,
            "catalog",
            worker,
        )
        meta = redis_client.hgetall("item:i0")
        assert meta[b"title"] == ds.products[0]["title"].encode()
        assert meta[b"category"] == "/".join(ds.products[0]["category"]).encode()
        wish = cast(dict[bytes, bytes], redis_client.hgetall(f"u:{{{uid}}}:wish"))
        assert {k for k, v in wish.items() if v.endswith(b":1")} == {b"i2"}
        assert hget_bytes(redis_client, f"u:{{{uid}}}:subs", "newsletter").endswith(b":1")
        assert hget_bytes(redis_client, f"u:{{{uid}}}:prefs", "consent").endswith(b":0")
        assert redis_client.exists(f"u:{{{uid}}}:seq")

        erase = {
            "event_id": "p7",
            "user_id": user,
            "kind": "erase",
            "item_id": None,
            "value": None,
            "ts": 9_000,
        }
        publish_records(s, [("preference", user, erase)])
        wait_for(lambda: stat(redis_client, "erasures") == 1, 60, "erasure", worker)
        assert not list(redis_client.scan_iter(match=f"u:{{{uid}}}:*"))
    finally:
        worker.stop()
    assert user not in (tmp_path / "worker.log").read_text()
    assert struct  # keeps the import used for readers extending the binary checks


def test_confluent_wire_format_end_to_end(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    s = make_settings(kafka_bootstrap, redis_url, wire_format="confluent", partitions=2)
    ds = generate(n_users=30, n_items=40, events_per_user=(3, 8), seed=9)
    events = purchases(ds)
    publish_records(s, [("purchase", r["user_id"], r) for r in events])
    # A plain-Avro message on a Confluent-framed topic is bad input, not a crash.
    publish_raw(s, s.topic_purchases, [(b"plain", Codec().encode("Purchase", events[0]))])
    worker = Worker(s, tmp_path / "worker.log")
    try:
        recs = consume(s, s.topic_recommendations, len(events), timeout=90)
        dead = consume(s, s.topic_dead_letter, 1, timeout=30)
    finally:
        worker.stop()
    confluent = Codec("confluent")
    assert {confluent.decode("Recommendation", r.value)["cause_event_id"] for r in recs} == {
        r["event_id"] for r in events
    }
    assert all(
        r.value[:5] == b"\x00" + confluent.schema_id("Recommendation").to_bytes(4, "big")
        for r in recs
    )
    assert len(dead) == 1
    assert confluent.decode("DeadLetter", dead[0].value)["key"] == b"plain"
