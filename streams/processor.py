"""What a worker does with a micro-batch of raw Kafka messages, independent of Faust."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.codec import Codec
from schemas.errors import InvalidEventError, SchemaError
from schemas.validation import validate
from streams import metrics
from streams.drift import DriftWatch, Observed
from streams.evaluation import Evaluator, Verdict, batch_steps
from streams.outputs import Emitter, Output, Position
from streams.pseudonym import Pseudonymiser
from streams.segments import Change, Segmenter
from streams.serving.holder import ModelHolder
from streams.serving.serve import BASELINE_VERSION, Answer, Serving
from streams.settings import Settings
from streams.state import Interaction, Store, event_hash
from streams.state.batch import replay_batch
from streams.state.neighbours import NeighbourCache
from streams.state.store import APPLIED, REDELIVERED, ApplyResult, Preference


@dataclass(frozen=True, slots=True)
class Message:
    """A consumed Kafka record, kept raw so that a bad one can be dead-lettered whole."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Processor:
    """Decodes, validates, updates Redis and builds the records to produce.

    Each method takes one micro-batch and makes a fixed number of Redis round trips,
    whatever the batch size: the per-event cost stays in Python, not on the network.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        codec: Codec | None = None,
        pseudonymiser: Pseudonymiser | None = None,
        clock: Callable[[], float] = time.time,
        holder: ModelHolder | None = None,
        treatment: ModelHolder | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.codec = codec or Codec(settings.wire_format)
        self.pseudonym = pseudonymiser or Pseudonymiser(settings.secret_bytes())
        self.clock = clock
        self.emit = Emitter(settings, self.codec, clock)
        # Enough popular items to fill a list for all but users who bought most of them.
        self.neighbours = NeighbourCache(
            store,
            settings.cooc_neighbours,
            settings.top_k + min(settings.history_length, 50),
            settings.cooc_cache_s,
        )
        self.holder = holder
        self.treatment = treatment
        self.serving = Serving(settings, store, holder, self.neighbours, treatment)
        self.drift = DriftWatch(settings, store.redis, clock) if settings.drift_enabled else None
        self.evaluator = (
            Evaluator(store.redis, settings.attribution_window_s)
            if settings.evaluation_enabled
            else None
        )
        self.segmenter = (
            Segmenter(settings, store, self.serving.products, clock)
            if settings.segments_enabled
            else None
        )
        # Counts not yet added to the shared Redis counters; the Lua step keeps its own.
        self._unflushed: Counter[str] = Counter()
        self._schema_of = {
            settings.topic_purchases: "Purchase",
            settings.topic_reviews: "Review",
            settings.topic_catalog: "Product",
            settings.topic_preferences: "Preference",
        }

    def _decode(self, msg: Message, now_ms: int) -> dict[str, Any]:
        name = self._schema_of.get(msg.topic)
        if name is None:
            raise SchemaError(f"no schema is bound to topic {msg.topic!r}")
        if msg.value is None:
            raise SchemaError("empty message (tombstone) where an event was expected")
        record = self.codec.decode(name, msg.value)
        validate(name, record, now_ms, self.settings.max_future_ms)
        return record

    def dead_letter(self, msg: Message, error: str, now_ms: int) -> Output:
        self._count("dead_letters", 1)
        metrics.DEAD_LETTERS.inc()
        record = {
            "topic": msg.topic,
            "partition": msg.partition,
            "offset": msg.offset,
            "key": msg.key,
            "error": error,
            "raw": msg.value or b"",
            "ts": now_ms,
        }
        return Output(
            self.settings.topic_dead_letter, msg.key, self.codec.encode("DeadLetter", record)
        )

    def _accept(
        self, msgs: Sequence[Message], out: list[Output]
    ) -> list[tuple[Message, dict[str, Any]]]:
        now_ms = int(self.clock() * 1000)
        good = []
        for msg in msgs:
            try:
                good.append((msg, self._decode(msg, now_ms)))
            except InvalidEventError as exc:
                out.append(self.dead_letter(msg, f"invalid: {exc.reason}", now_ms))
            except SchemaError as exc:
                out.append(self.dead_letter(msg, f"undecodable: {exc}", now_ms))
        return good

    async def interactions(self, msgs: Sequence[Message]) -> list[Output]:
        """Purchases and reviews: update sequences, then recommend after each purchase."""
        out: list[Output] = []
        for h in (self.holder, self.treatment):
            if h is not None:
                h.tick()
        good = self._accept(msgs, out)
        if not good:
            await self.flush_counts()
            return out
        batch = [
            Interaction(
                uid=self.pseudonym(rec["user_id"]),
                event_hash=event_hash(rec["event_id"]),
                item_id=rec["item_id"],
                ts_s=rec["ts"] // 1000,
                source=f"{msg.topic}:{msg.partition}",
                offset=msg.offset,
            )
            for msg, rec in good
        ]
        result = await self.store.apply(batch)
        self.serving.observe_time(max(ev.ts_s for ev in batch))

        triggers = {self.settings.topic_purchases}
        if self.settings.recommend_on_reviews:
            triggers.add(self.settings.topic_reviews)
        wanted = [
            msg.topic in triggers and status in (APPLIED, REDELIVERED)
            for (msg, _), status in zip(good, result.statuses, strict=True)
        ]
        # A redelivered event is re-segmented too: a crash between the sequence update
        # and the segment merge must not leave its user's segment behind. Its profile is
        # the same (it comes from the stored history); only trending counts it once.
        changed = self.segmenter is not None and bool({APPLIED, REDELIVERED} & set(result.statuses))
        if any(wanted) or changed:
            histories, finals = replay_batch(batch, result, wanted, self.settings.history_length)
            records = [rec for (_, rec), w in zip(good, wanted, strict=True) if w]
            causes = [
                (msg.topic, msg.partition, msg.offset)
                for (msg, _), w in zip(good, wanted, strict=True)
                if w
            ]
            uids = [ev.uid for ev, w in zip(batch, wanted, strict=True) if w]
            # Consent is read once for both steps: a withdrawn user is neither profiled
            # nor given anything personal.
            withdrawn = await self.store.consent_withdrawn(set(uids) | set(finals))
            segment_of: dict[str, int] = {}
            if changed:
                user_id = {ev.uid: rec["user_id"] for ev, (_, rec) in zip(batch, good, strict=True)}
                moves = await self._segment(batch, result, finals, withdrawn)
                segment_of = {c.uid: c.new for c in moves}
                out.extend(self._segment_changes(moves, user_id))
            answers: list[Answer] = []
            if records:
                outputs, answers = await self._recommend(
                    records, uids, histories, withdrawn, segment_of, causes
                )
                out.extend(outputs)
            verdicts: list[Verdict] = []
            if self.evaluator is not None:
                verdicts = await self._evaluate(
                    good, batch, result, wanted, answers, withdrawn, segment_of
                )
            if self.drift is not None:
                seen = Observed.of_batch(
                    [rec for _, rec in good],
                    [msg.topic == self.settings.topic_purchases for msg, _ in good],
                    batch,
                    result,
                    answers,
                    verdicts,
                    segment_of,
                    self._serving_version(),
                )
                await seen.categorise(self.serving.products)
                out.extend(await self._drift(seen))
        await self.flush_counts()
        return out

    def _serving_version(self) -> str:
        current = self.holder.current if self.holder is not None else None
        return current.version if current is not None else BASELINE_VERSION

    async def _drift(self, seen: Observed) -> list[Output]:
        assert self.drift is not None
        records = await self.drift.observe(seen, self._serving_version())
        self._count("drift_alerts", len(records))
        return self.emit.drift_alerts(records)

    async def _evaluate(
        self,
        good: Sequence[tuple[Message, dict[str, Any]]],
        batch: Sequence[Interaction],
        result: ApplyResult,
        wanted: Sequence[bool],
        answers: Sequence[Answer],
        withdrawn: set[str],
        segment_of: dict[str, int],
    ) -> list[Verdict]:
        assert self.evaluator is not None
        purchases = self.settings.topic_purchases
        judged = [
            msg.topic == purchases and status == APPLIED
            for (msg, _), status in zip(good, result.statuses, strict=True)
        ]
        items = [rec["item_id"] for _, rec in good]
        steps = batch_steps(
            batch, items, judged, wanted, answers, withdrawn, segment_of, self.serving.arm_of
        )
        verdicts = await self.evaluator.observe(steps)
        judged_by: Counter[str] = Counter(v.shown.version for v in verdicts)
        hits_by: Counter[str] = Counter(v.shown.version for v in verdicts if v.hit)
        for version, n in judged_by.items():
            metrics.ONLINE_JUDGED.labels(version).inc(n)
        for version, n in hits_by.items():
            metrics.ONLINE_HITS.labels(version).inc(n)
        self._count("judged", len(verdicts))
        return verdicts

    async def _segment(
        self,
        batch: Sequence[Interaction],
        result: ApplyResult,
        finals: dict[str, tuple[list[int], list[int]]],
        withdrawn: set[str],
    ) -> list[Change]:
        assert self.segmenter is not None
        events = [
            (ev.uid, idx, ev.ts_s)
            for ev, status, idx in zip(batch, result.statuses, result.item_index, strict=True)
            if status == APPLIED and ev.uid not in withdrawn
        ]
        users = {u: h for u, h in finals.items() if u not in withdrawn}
        placing: dict[str, str] = {}
        replayed: dict[str, list[str]] = {}
        for ev, status in zip(batch, result.statuses, strict=True):
            if status in (APPLIED, REDELIVERED):
                placing[ev.uid] = ev.event_hash.hex()
            if status == REDELIVERED:
                replayed.setdefault(ev.uid, []).append(ev.event_hash.hex())
        sources = {u: (placing[u], replayed.get(u, ())) for u in users if u in placing}
        with metrics.SEGMENT_SECONDS.time():
            moves = await self.segmenter.update(users, events, sources)
        metrics.SEGMENT_UPDATES.inc(len(moves))
        self._count("segment_updates", len(moves))
        return moves

    def _segment_changes(self, moves: Sequence[Change], user_id: dict[str, str]) -> list[Output]:
        out = self.emit.segment_changes([m for m in moves if m.moved], user_id)
        metrics.SEGMENT_CHANGES.inc(len(out))
        self._count("segment_changes", len(out))
        return out

    async def _recommend(
        self,
        records: list[dict[str, Any]],
        uids: list[str],
        histories: list[list[int]],
        withdrawn: set[str],
        segment_of: dict[str, int],
        causes: Sequence[Position],
    ) -> tuple[list[Output], list[Answer]]:
        answers = await self.serving.recommend(uids, histories, withdrawn=withdrawn)
        outputs = self.emit.recommendations(records, uids, answers, segment_of, causes)
        self._count("recommendations", len(outputs))
        return outputs, answers

    async def catalog(self, msgs: Sequence[Message]) -> list[Output]:
        out: list[Output] = []
        good = self._accept(msgs, out)
        if good:
            changed = await self.store.put_products([rec for _, rec in good])
            self._count("products", sum(changed))
        await self.flush_counts()
        return out

    async def preferences(self, msgs: Sequence[Message]) -> list[Output]:
        out: list[Output] = []
        good = self._accept(msgs, out)
        if good:
            prefs = [
                Preference(
                    uid=self.pseudonym(rec["user_id"]),
                    kind=rec["kind"],
                    item_id=rec.get("item_id"),
                    value=rec.get("value"),
                    ts=rec["ts"],
                )
                for _, rec in good
            ]
            await self.store.apply_preferences(prefs)
            self._count("preferences", len(prefs))
            if self.segmenter is not None:
                declared = {
                    p.uid: rec["user_id"]
                    for p, (_, rec) in zip(prefs, good, strict=True)
                    if p.kind in ("wishlist_add", "subscribe")
                }
                if declared:
                    withdrawn = await self.store.consent_withdrawn(declared)
                    moves = await self.segmenter.declare(
                        [u for u in declared if u not in withdrawn]
                    )
                    out.extend(self._segment_changes(moves, declared))
            self._count("erasures", sum(1 for p in prefs if p.kind == "erase"))
        await self.flush_counts()
        return out

    async def flush_counts(self) -> None:
        # Shared counters let the demo and ops tools see every worker's totals.
        # Agents share this processor and interleave at every await: take the pending
        # counts and zero them before awaiting, so no increment is lost or sent twice.
        for h in (self.holder, self.treatment):
            if h is not None:
                self._unflushed.update(h.take_counts())
        pending = {k: n for k, n in self._unflushed.items() if n}
        if not pending:
            return
        self._unflushed.subtract(pending)
        try:
            await self.store.incr_stats(pending)
        except BaseException:
            self._unflushed.update(pending)
            raise

    def _count(self, name: str, n: int = 1) -> None:
        self._unflushed[name] += n
