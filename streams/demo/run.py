"""The demo's run: start the stack and a worker, stream a data set, watch the outputs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr
from redis.exceptions import RedisError

from models.datasets import Dataset, load, to_messages, truncate
from schemas.codec import Codec
from streams import keys
from streams.demo.child import Worker
from streams.demo.view import TOP_N, Screen, View, _n, render, summary
from streams.embedded import EmbeddedStack
from streams.evaluation import summarise
from streams.replay import encoded, publish
from streams.settings import Settings
from streams.state import Store
from streams.state.segment_store import SegmentStore
from streams.topics import ensure_topics

DEFAULT_LIMIT = 30_000
POLL_S = 0.25
MEMORY_EVERY_S = 5.0
# Give up when nothing moved for this long after the last event was published.
STALL_S = 60.0
CLEANUP_S = 5.0
MEMORY_SAMPLE = 100
MALFORMED_USER = "demo-malformed"


def malformed_purchases(codec: Codec) -> list[tuple[str, bytes]]:
    """(what is wrong, value) of purchases a worker must dead-letter, not choke on."""
    good = {
        "event_id": f"{MALFORMED_USER}:0",
        "user_id": MALFORMED_USER,
        "item_id": "none",
        "quantity": 1,
        "price": None,
        "currency": None,
        "ts": int(time.time() * 1000),
        "session_id": None,
    }
    body = codec.encode("Purchase", good)
    return [
        ("not Avro: plain text", b"this is not an Avro record"),
        ("not Avro: JSON", b'{"user_id": "u1", "item_id": "i1", "quantity": 1}'),
        ("truncated Avro", body[: len(body) // 2]),
        ("negative quantity", codec.encode("Purchase", {**good, "quantity": -3})),
        ("blank item id", codec.encode("Purchase", {**good, "item_id": "  "})),
    ]


async def memory_per_user(store: Store) -> tuple[float, int] | None:
    """Mean ``MEMORY USAGE`` of a SCAN sample of user sequence keys."""
    sample: list[Any] = []
    cursor = 0
    while len(sample) < MEMORY_SAMPLE:
        cursor, found = await store.redis.scan(cursor, match="u:*:seq", count=100)
        sample += found
        if cursor == 0:
            break
    if not sample:
        return None
    pipe = store.redis.pipeline(transaction=False)
    for key in sample[:MEMORY_SAMPLE]:
        pipe.memory_usage(key)
    sizes = [s for s in await pipe.execute() if s is not None]
    return (sum(sizes) / len(sizes), len(sizes)) if sizes else None


async def consume_outputs(settings: Settings, view: View, since_ms: int) -> None:
    """Read recommendations, segment changes, drift alerts and dead letters from the start,
    without a consumer group."""
    codec = Codec(settings.wire_format)
    topics = (
        settings.topic_recommendations,
        settings.topic_dead_letter,
        settings.topic_segments,
        settings.topic_drift_alerts,
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batches.items():
                for r in records:
                    # Earlier runs against the same broker left records of their own.
                    if r.timestamp >= since_ms and r.value is not None:
                        view.on_record(tp.topic, r.value, settings, codec)
    finally:
        await consumer.stop()


async def _refresh(store: Store, view: View) -> None:
    view.stats = await store.stats()
    view.segment_sizes = await SegmentStore(store.redis).sizes()
    raw = cast(dict[bytes, bytes], await store.redis.hgetall(keys.EVALUATION))
    view.online = summarise(raw).get("version", {})
    now = time.monotonic()
    processed = view.processed
    if view.samples and processed != view.samples[-1][1]:
        view.first_applied = view.first_applied or view.samples[-1][0]
        view.last_applied = now
    view.samples.append((now, processed))
    wanted = {i["item_id"] for _, r in view.latest.values() for i in r["items"][:TOP_N]}
    wanted |= {view.purchases.get(r["cause_event_id"], "") for _, r in view.latest.values()}
    missing = sorted(wanted - set(view.titles) - {""})
    if missing:
        meta = await store.item_meta(missing)
        # The catalog agent may not have stored an item yet: ask again next time.
        view.titles.update((i, m["title"]) for i, m in meta.items() if m.get("title"))


def _stream(
    view: View, ds: Dataset, settings: Settings, codec: Codec
) -> Iterator[tuple[str, str, bytes, bytes]]:
    # Lazy, so that "published" on screen follows the producer rather than running ahead.
    for _, value in malformed_purchases(codec):
        view.published["malformed"] += 1
        yield "malformed", settings.topic_purchases, MALFORMED_USER.encode(), value
    yield from encoded(view.tap(to_messages(ds)), settings, codec)


async def _run(
    settings: Settings, args: argparse.Namespace, ds: Dataset, worker: Worker, static: list[str]
) -> int:
    codec = Codec(settings.wire_format)
    view = View(
        ds.name,
        max(args.users, 0),
        len(malformed_purchases(codec)),
        args.unbounded,
        frozenset({"purchase", "review"} if settings.recommend_on_reviews else {"purchase"}),
    )
    store = Store.from_url(settings.redis_url or "")
    await store.ping()
    view.base = await store.stats()
    if keys_before := await store.redis.dbsize():
        static.append(
            f"  note: Redis already holds {_n(keys_before)} keys; events it has seen count as"
            " duplicates and get no new recommendation"
        )
    since_ms = int(time.time() * 1000)
    worker.start()
    static.append(f"  worker: pid {worker.proc.pid if worker.proc else '?'}, log {worker.log_path}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def interrupt() -> None:
        if stop.is_set() and main_task is not None:
            main_task.cancel()  # a second Ctrl-C skips the summary
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        # Only the main thread may install handlers; elsewhere asyncio.run's default stays.
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            loop.add_signal_handler(sig, interrupt)

    screen = Screen(static)
    replay = asyncio.create_task(
        publish(
            settings.kafka_bootstrap_servers or "",
            _stream(view, ds, settings, codec),
            rate=args.rate,
            progress=False,
        )
    )
    outputs = asyncio.create_task(consume_outputs(settings, view, since_ms))
    code, outcome = 0, ""
    last_move, last_seen, next_memory = time.monotonic(), (-1, -1, -1), 0.0
    try:
        while True:
            if not worker.alive():
                rc = worker.proc.returncode if worker.proc else 0
                how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited ({rc})"
                print(
                    f"\nreco demo: the worker {how}; last lines of {worker.log_path}:\n"
                    f"{worker.tail()}",
                    file=sys.stderr,
                )
                return 1
            for task, what in ((replay, "replay"), (outputs, "output consumer")):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    print(f"\nreco demo: {what} failed: {task.exception()!r}", file=sys.stderr)
                    return 1
            view.publish_done = replay.done()
            # Redis may vanish under us (a terminal's Ctrl-C also reaches the embedded
            # servers); the last figures read stay on screen and in the summary.
            with contextlib.suppress(RedisError, OSError):
                await _refresh(store, view)
                if time.monotonic() >= next_memory:
                    view.memory = await memory_per_user(store) or view.memory
                    next_memory = time.monotonic() + MEMORY_EVERY_S
            seen = (view.processed, view.received, view.dead_letters)
            if seen != last_seen or not view.publish_done:
                last_move, last_seen = time.monotonic(), seen
            screen.show(render(view))
            if stop.is_set():
                code, outcome = (0 if args.unbounded else 130), "interrupted"
                break
            if view.complete() and not args.unbounded:
                outcome = "the worker applied every event"
                if len(view.recommended) >= len(view.purchases) > 0:
                    outcome = "every published purchase has a recommendation"
                elif view.stat("duplicates"):
                    outcome += " (duplicates of events Redis had seen get no recommendation)"
                break
            if time.monotonic() - last_move > STALL_S and not args.unbounded:
                code, outcome = 1, f"gave up, nothing moved for {STALL_S:.0f}s"
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)
        screen.show(render(view), force=True)
        wall = time.monotonic() - view.started
        if not stop.is_set():
            with contextlib.suppress(RedisError, OSError):
                view.memory = await memory_per_user(store) or view.memory
        print("\n" + "\n".join([f"stopped: {outcome}", *summary(view, wall)]), flush=True)
        if code == 1:
            print(f"last lines of {worker.log_path}:\n{worker.tail()}", file=sys.stderr)
        return code
    finally:
        # After a Ctrl-C the broker may be gone, and clients would retry it for minutes.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        for task in (replay, outputs):
            task.cancel()
        await asyncio.gather(
            asyncio.wait((replay, outputs), timeout=CLEANUP_S), worker.stop(), store.close()
        )
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
                loop.remove_signal_handler(sig)


def _load(args: argparse.Namespace) -> tuple[Dataset, str]:
    from streams.cli import default_dataset

    full = load(args.dataset or default_dataset())
    limit = args.limit if args.limit is not None else (None if args.unbounded else DEFAULT_LIMIT)
    ds = truncate(full, limit)
    if len(ds.events) == len(full.events):
        return ds, f"all {_n(len(ds.events))} events"
    return ds, f"first {_n(len(ds.events))} of {_n(len(full.events))} events"


def _serve_model(settings: Settings, ds: Dataset, epochs: int, where: Path) -> str:
    """Train SASRec on the replayed events, publish it and announce it to the worker.

    A shortcut for the demo: in production `reco train` learns from the event log.
    """
    from models.data import from_dataset
    from models.registry import Registry
    from models.sasrec import SASRec, SASRecConfig
    from streams.announce import announce

    print(f"reco demo: training SASRec on {ds.name} for {epochs} epochs ...", flush=True)
    began = time.monotonic()
    model = SASRec(SASRecConfig(epochs=epochs, progress=False)).fit(from_dataset(ds))
    version = Registry(where / "registry").publish(model.to_checkpoint(), settings.model_name)
    asyncio.run(announce(version, settings))
    return (
        f"  model: {settings.model_name} {version.version}, trained on the replayed events "
        f"in {time.monotonic() - began:.0f}s (a demo shortcut; `reco train` learns from the log)"
    )


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Start what is missing, run one worker, replay a data set and watch it; 0 on success."""
    try:
        ds, scope = _load(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"reco demo: {exc}", file=sys.stderr)
        return 2
    static = [f"reco demo: {ds.name}, {scope} (--limit N or --unbounded to change)"]
    if not any(kind == "purchase" for kind, _ in ds.events):
        settings = settings.model_copy(update={"recommend_on_reviews": True})
        static.append(
            f"  note: {ds.name} has reviews only, so the worker recommends after each review"
            " (RECO_RECOMMEND_ON_REVIEWS)"
        )
    aiokafka_log = logging.getLogger("aiokafka")
    stack = EmbeddedStack(settings.kafka_bootstrap_servers, settings.redis_url)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(aiokafka_log.setLevel, aiokafka_log.level)
        # Connection chatter would scroll the dashboard away; failures surface as exceptions.
        aiokafka_log.setLevel(logging.ERROR)
        cleanup.callback(stack.stop)
        stack.start()
        update: dict[str, Any] = {
            "kafka_bootstrap_servers": stack.bootstrap_servers,
            "redis_url": stack.redis_url,
        }
        origin = "embedded Tansu" if stack.tansu else "configured"
        static.append(f"  kafka  {stack.bootstrap_servers} ({origin})")
        origin = "embedded redis-server" if stack.redis else "configured"
        static.append(f"  redis  {stack.redis_url} ({origin})")
        if settings.pseudonym_secret is None or not settings.pseudonym_secret.get_secret_value():
            update["pseudonym_secret"] = SecretStr(secrets.token_hex(32))
            static.append(
                "  pseudonyms: RECO_PSEUDONYM_SECRET is not set; using a random secret for this"
                " run only"
            )
        run_settings = settings.model_copy(update=update)
        static.append(
            f"  dead letters: {len(malformed_purchases(Codec()))} malformed purchases go first"
            " (not Avro, truncated, negative quantity, blank item id)"
        )
        asyncio.run(
            ensure_topics(
                stack.bootstrap_servers,
                run_settings.topic_partitions(),
                run_settings.replication_factor,
            )
        )
        log_dir = stack.log_dir
        if log_dir is None:
            log_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="reco-")))
        if args.model_epochs > 0:
            run_settings = run_settings.model_copy(update={"wait_for_model_s": 120.0})
            static.append(_serve_model(run_settings, ds, args.model_epochs, log_dir))
        worker = Worker(run_settings, log_dir / "worker.log", args.loglevel)
        cleanup.callback(worker.close)
        try:
            return asyncio.run(_run(run_settings, args, ds, worker, static))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("\nreco demo: interrupted", file=sys.stderr)
            return 130
