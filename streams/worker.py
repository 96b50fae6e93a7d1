"""The Faust app: agents that turn raw input topics into state and recommendations."""

from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import faust
import torch
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka as faust_kafka
from redis.exceptions import RedisError

from schemas.errors import ConfigError, ServiceError
from streams import metrics
from streams.processor import Message, Output, Processor
from streams.serving.follow import follow
from streams.serving.holder import ModelHolder
from streams.settings import Settings
from streams.state import Store
from streams.status import HEARTBEAT_S, beat, worker_id
from streams.web import register_routes

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[Message]], Awaitable[list[Output]]]

# Transient failures are retried with the batch unacknowledged, so nothing is lost
# and, the updates being idempotent, nothing is doubled by the retry.
_TRANSIENT = (RedisError, OSError, ServiceError, asyncio.TimeoutError)
_MAX_BACKOFF_S = 5.0
# The broker (or the client, before sending) refuses this one record: sending it again
# cannot succeed, and holding its batch back would stall the partition for good.
_RECORD_REFUSED = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)
_SLOW_BATCH_S = 0.1  # a batch slower than this is logged with its size and split
_DRAIN_S = 10.0  # how long a stopping worker gives its current batch to finish


class _ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_kafka.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust hard-codes 1.5 s. A broker that holds a fetch for part of that wait even
        # when records arrive (Tansu does) would add it to every event's latency.
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # type: ignore[attr-defined]
        return consumer


class _Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> faust_kafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_kafka.Transport):
    Consumer = _Consumer


class _App(faust.App):
    """faust.App whose Kafka consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    fetch_max_wait_ms = 1500

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


def create_app(settings: Settings, bootstrap: str, redis_url: str) -> faust.App:
    """Build the worker app; topics must already exist (see streams.topics)."""
    datadir = Path(tempfile.gettempdir()) / "reco-faust" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = _App(
        settings.app_id,
        broker=f"kafka://{bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",
        producer_max_request_size=settings.producer_max_request_size,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        stream_wait_empty=False,
        broker_commit_every=settings.commit_every,
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        store="memory://",
        datadir=str(datadir),
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    state: dict[str, Processor] = {}
    lock = asyncio.Lock()
    holder = (
        ModelHolder(
            settings.model_name,
            settings.model_floors,
            settings.canary_fraction,
            settings.canary_seconds,
        )
        if settings.follow_models
        else None
    )
    treatment = (
        ModelHolder(
            settings.ab_treatment_model,
            settings.model_floors,
            settings.canary_fraction,
            settings.canary_seconds,
        )
        if settings.follow_models and settings.ab_treatment_model and settings.ab_treatment_share
        else None
    )
    app.holder = holder  # type: ignore[attr-defined]
    torch.set_num_threads(settings.torch_threads)

    async def processor() -> Processor:
        # Created lazily inside the worker's event loop, shared by every agent.
        async with lock:
            if "p" not in state:
                store = Store.from_url(
                    redis_url,
                    history_length=settings.history_length,
                    cooc_window=settings.cooc_window,
                    cooc_cap=2 * settings.cooc_neighbours,
                    trending_tau_s=settings.trending_tau_s,
                )
                await store.ping()
                state["p"] = Processor(settings, store, holder=holder, treatment=treatment)
            return state["p"]

    app.processor = processor  # type: ignore[attr-defined]
    if settings.web_enabled:
        register_routes(app, settings, processor, holder)

    if holder is not None:

        @app.task
        async def follow_models() -> None:
            await follow(settings, *(h for h in (holder, treatment) if h is not None))

    wid = worker_id()
    counted = {"events": 0, "at": time.monotonic(), "reported": 0}

    @app.timer(interval=HEARTBEAT_S)
    async def heartbeat() -> None:
        # What `reco status` and /status show of this worker; best effort, so a Redis
        # hiccup costs one beat, never the worker.
        now = time.monotonic()
        rate = (counted["events"] - counted["reported"]) / max(now - counted["at"], 1e-9)
        counted["reported"], counted["at"] = counted["events"], now
        try:
            assigned = app.consumer.assignment()
        except Exception:
            assigned = set()
        payload = {
            "events_per_s": round(rate, 1),
            "events": counted["events"],
            "partitions": sorted(
                tp.partition for tp in assigned if tp.topic == settings.topic_purchases
            ),
            "models": holder.versions() if holder is not None else None,
            "treatment": treatment.versions() if treatment is not None else None,
        }
        try:
            await beat((await processor()).store.redis, wid, payload)
        except _TRANSIENT as exc:
            log.warning("heartbeat not written: %s", exc)

    if settings.gc_freeze_s > 0:

        @app.timer(interval=settings.gc_freeze_s)
        async def freeze_heap() -> None:
            # Long-lived caches go to the permanent generation, so a full collection
            # no longer stops the event loop for hundreds of ms. The cost: a reference
            # cycle made only of frozen objects is never freed; the caches hold none.
            gc.freeze()

    async def send(outputs: Sequence[Output]) -> list[BaseException | None]:
        # Straight to the Kafka producer, bypassing Faust's one-message-at-a-time send
        # buffer: one broker round trip per batch, not per event. Enqueued one by one,
        # in order, so a user's outputs keep their order on the partition.
        pending: list[Awaitable[Any]] = []
        for o in outputs:
            try:
                pending.append(await app.producer.send(o.topic, o.key, o.value, None, None, None))
            except Exception as exc:
                # Faust wraps the client's error, and only that one says whether to retry.
                cause = exc.__cause__ if isinstance(exc, ProducerSendError) else None
                pending.append(_failed(cause or exc))
        results = await asyncio.gather(*pending, return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    async def deliver(outputs: Sequence[Output], msgs: Sequence[Message], proc: Processor) -> bool:
        """Wait for a batch's outputs to reach the broker, sending again what failed for a
        passing reason; False when the broker refused one for good.

        An output refused for its own sake (too large) is replaced by dead letters of the
        events it came from, so the batch can be committed. Anything else refused for
        good (an unknown topic, no authorisation) leaves the batch uncommitted.

        Waiting here, before the next batch, rather than overlapping the two lets the
        stream fill larger batches: overlapping measured 7 % fewer events/s at
        saturation and no lower latency with the model (BENCHMARKS.md, serving).
        """
        backoff = 0.1
        while outputs:
            errors = await send(outputs)
            failed = [(o, e) for o, e in zip(outputs, errors, strict=True) if e is not None]
            if not failed:
                break
            kinds = ", ".join(sorted({type(e).__name__ for _, e in failed}))
            # A dead letter refused in turn has nowhere left to go.
            refused = [
                (o, e)
                for o, e in failed
                if isinstance(e, _RECORD_REFUSED) and o.topic != settings.topic_dead_letter
            ]
            if len(refused) < sum(not _passing(e) for _, e in failed):
                log.error(
                    "%d of %d outputs cannot be delivered (%s); their batch of %d events "
                    "stays uncommitted, for redelivery",
                    len(failed),
                    len(outputs),
                    kinds,
                    len(msgs),
                )
                return False
            letters = dead_letters_for(refused, msgs, proc)
            if letters:
                log.error(
                    "%d of %d outputs refused by the broker (%s); %d of the batch's events "
                    "go to %s instead. The first refusal: %s",
                    len(refused),
                    len(outputs),
                    kinds,
                    len(letters),
                    settings.topic_dead_letter,
                    refused[0][1],
                )
            passing = [o for o, e in failed if _passing(e)]
            if passing:
                log.warning(
                    "%d of %d outputs not delivered (%s); sending them again in %.1fs",
                    len(passing),
                    len(outputs),
                    kinds,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
            outputs = passing + letters
        return True

    async def run(stream: faust.StreamT, pick: Callable[[Processor], Handler], agent: str) -> None:
        proc = await processor()
        handler = pick(proc)
        if holder is not None and settings.wait_for_model_s > 0:
            # On boot, scoring the first events with the baseline while the announced
            # model loads would mix versions for no reason: give the load a moment.
            try:
                await asyncio.wait_for(holder.ready.wait(), settings.wait_for_model_s)
            except TimeoutError:
                log.warning("no model after %.0fs; serving the baseline", settings.wait_for_model_s)
        if settings.gc_freeze_s > 0:
            # What start-up built (modules, the app, the model) lives as long as the
            # worker: frozen now, the first full collections under load do not walk it.
            # On Toys this removed the second of two 160-190 ms pauses in the first
            # seconds; the first comes during start-up itself.
            gc.freeze()
        # take_events is on faust's Stream but missing from its StreamT interface.
        batches = stream.take_events(  # type: ignore[attr-defined]
            settings.batch_size, within=settings.batch_within_s
        )
        async for events in batches:
            await finish_or_withhold(events, handle(events, proc, handler, agent))

    async def handle(events: Sequence[Any], proc: Processor, handler: Handler, agent: str) -> None:
        msgs = [
            Message(
                e.message.topic,
                e.message.partition,
                e.message.offset,
                e.message.key,
                e.message.value,
            )
            for e in events
        ]
        started = time.perf_counter()
        outputs = await process_batch(proc, handler, msgs)
        processed = time.perf_counter()
        if not await deliver(outputs, msgs, proc):
            withhold(events)
            return
        try:
            # Dead letters that stood in for refused outputs were counted after the batch
            # itself; without this the last batch's would wait for the next one.
            await proc.flush_counts()
        except _TRANSIENT as exc:
            log.warning("counters not written yet (kept for the next batch): %s", exc)
        sent = time.perf_counter()
        metrics.BATCH_SECONDS.labels(agent).observe(sent - started)
        metrics.BATCH_EVENTS.labels(agent).observe(len(msgs))
        metrics.BUSY_SECONDS.labels(agent, "processing").inc(processed - started)
        metrics.BUSY_SECONDS.labels(agent, "delivery").inc(sent - processed)
        metrics.EVENTS.labels(agent).inc(len(msgs))
        counted["events"] += len(msgs)
        # Broker timestamp (produce or log-append time) to delivered output.
        now = time.time()
        latency = metrics.EVENT_LATENCY.labels(agent)
        for e in events:
            if e.message.timestamp:
                latency.observe(max(0.0, now - e.message.timestamp))
        if sent - started > _SLOW_BATCH_S:
            log.warning(
                "slow %s batch: %d events, %.0f ms processing, %.0f ms producing",
                agent,
                len(msgs),
                1000 * (processed - started),
                1000 * (sent - processed),
            )

    def raw_topic(*names: str) -> faust.types.TopicT:
        return app.topic(
            *names,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )

    @app.agent(raw_topic(settings.topic_purchases, settings.topic_reviews), name="interactions")
    async def interactions(stream: faust.StreamT) -> None:
        await run(stream, lambda p: p.interactions, "interactions")

    @app.agent(raw_topic(settings.topic_catalog), name="catalog")
    async def catalog(stream: faust.StreamT) -> None:
        await run(stream, lambda p: p.catalog, "catalog")

    @app.agent(raw_topic(settings.topic_preferences), name="preferences")
    async def preferences(stream: faust.StreamT) -> None:
        await run(stream, lambda p: p.preferences, "preferences")

    return app


def _failed(exc: BaseException) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


def _passing(exc: BaseException) -> bool:
    """Whether sending again may succeed: a broker away or busy, not a refused record.

    >>> from aiokafka.errors import MessageSizeTooLargeError, NotLeaderForPartitionError
    >>> [_passing(e()) for e in (KafkaTimeoutError, NotLeaderForPartitionError)]
    [True, True]
    >>> _passing(MessageSizeTooLargeError())
    False
    """
    return bool(getattr(exc, "retriable", False)) or isinstance(
        exc, (KafkaTimeoutError, KafkaConnectionError, OSError)
    )


def dead_letters_for(
    refused: Sequence[tuple[Output, BaseException]], msgs: Sequence[Message], proc: Processor
) -> list[Output]:
    """Dead letters of the events behind outputs the broker refused, once per event.

    An output that names its cause (a recommendation) came from that event; one keyed
    like some of the batch's events (a segment change, keyed by its user) from those;
    one with neither (an alert about the whole batch) from every event of it. The
    events' state is already applied, so the reason says so: replaying a dead letter
    repeats nothing but its outputs.
    """
    now_ms = int(proc.clock() * 1000)
    letters: dict[tuple[str, int, int], Output] = {}
    for output, exc in refused:
        if output.cause is not None:
            mine = [m for m in msgs if (m.topic, m.partition, m.offset) == output.cause]
        else:
            mine = [m for m in msgs if output.key is not None and m.key == output.key]
        # The exception's own text (several hundred bytes) would make the letter as
        # large as what was refused; the worker logs the first one.
        reason = (
            f"its output to {output.topic} ({len(output.value)} bytes) was refused: "
            f"{type(exc).__name__}; the event itself was applied"
        )
        for m in mine or msgs:
            where = (m.topic, m.partition, m.offset)
            if where not in letters:
                letters[where] = proc.dead_letter(m, reason, now_ms)
    return list(letters.values())


def withhold(events: Sequence[Any]) -> None:
    """Keep a batch's offsets uncommitted: marked as acked already, its messages make
    take_events' acks no-ops, so the consumer never records them and the partition's next
    owner (this worker after a restart, or another) gets the batch again."""
    for e in events:
        e.message.acked = True


async def finish_or_withhold(events: Sequence[Any], work: Awaitable[None]) -> None:
    """Run one batch to its end even when the agent is stopped midway.

    faust-streaming's ``take_events`` acks the batch it yielded however the loop body
    ends, cancellation included, and Faust stops an agent by cancelling it. A batch cut
    short after its Redis update but before its outputs were delivered would then be
    committed and lost. So a stopping worker lets the batch finish (for at most
    ``_DRAIN_S``), and a batch that still did not finish keeps its offsets uncommitted:
    see ``withhold``.
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except BaseException:
        try:
            if not task.done():
                log.info("stopping mid-batch: finishing its %d events first", len(events))
                await asyncio.wait({task}, timeout=_DRAIN_S)
        finally:
            if not task.done() or task.cancelled() or task.exception() is not None:
                task.cancel()
                withhold(events)
                log.error(
                    "batch of %d events not finished; left uncommitted for redelivery",
                    len(events),
                )
        raise


async def process_batch(proc: Processor, handler: Handler, msgs: Sequence[Message]) -> list[Output]:
    """Run a batch to completion: retry transient failures, isolate poison messages."""
    backoff = 0.1
    while True:
        try:
            return await handler(msgs)
        except _TRANSIENT as exc:
            log.warning("batch of %d failed (%s); retrying in %.1fs", len(msgs), exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)
        except Exception:
            if len(msgs) == 1:
                log.exception(
                    "message %s:%d@%d failed", msgs[0].topic, msgs[0].partition, msgs[0].offset
                )
                return [
                    proc.dead_letter(
                        msgs[0], "processing failed (see worker log)", int(proc.clock() * 1000)
                    )
                ]
            log.exception("batch of %d failed; processing its messages one by one", len(msgs))
            out: list[Output] = []
            for m in msgs:
                out.extend(await process_batch(proc, handler, [m]))
            return out


def require_services(settings: Settings) -> tuple[str, str]:
    if not settings.kafka_bootstrap_servers or not settings.redis_url:
        raise ConfigError(
            "a worker needs KAFKA_BOOTSTRAP_SERVERS and REDIS_URL; `reco demo` starts a "
            "local broker and Redis when none is configured"
        )
    return settings.kafka_bootstrap_servers, settings.redis_url


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Create the topics, then run one worker until it is stopped."""
    from streams.topics import ensure_topics

    bootstrap, redis_url = require_services(settings)
    settings.secret_bytes()  # fail before connecting anything when the key is missing
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(
        ensure_topics(bootstrap, settings.topic_partitions(), settings.replication_factor)
    )
    app = create_app(settings, bootstrap, redis_url)
    worker = faust.Worker(app, loglevel=loglevel, loop=loop, redirect_stdouts=False)
    worker.execute_from_commandline()
