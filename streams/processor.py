"""What a worker does with a micro-batch of raw Kafka messages, independent of Faust."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from models.cooccurrence import REASON_COOC, Ranked, cosine, rank, recent_anchors
from schemas.codec import Codec
from schemas.errors import InvalidEventError, SchemaError
from schemas.validation import validate
from streams.pseudonym import Pseudonymiser
from streams.settings import Settings
from streams.state import Interaction, Store, event_hash
from streams.state.store import APPLIED, REDELIVERED, Preference

log = logging.getLogger(__name__)

BASELINE_VERSION = "cooccurrence-v1"


@dataclass(frozen=True, slots=True)
class Message:
    """A consumed Kafka record, kept raw so that a bad one can be dead-lettered whole."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes


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
    ) -> None:
        self.settings = settings
        self.store = store
        self.codec = codec or Codec(settings.wire_format)
        self.pseudonym = pseudonymiser or Pseudonymiser(settings.secret_bytes())
        self.clock = clock
        self.counts: Counter[str] = Counter()
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
        self.counts["dead_letters"] += 1
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
        good = self._accept(msgs, out)
        if not good:
            await self._flush_counts()
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
        self.counts["applied"] += result.statuses.count(APPLIED)
        self.counts["duplicates"] += len(batch) - result.statuses.count(APPLIED)

        wanted = []
        for (msg, rec), ev, status in zip(good, batch, result.statuses, strict=True):
            if msg.topic == self.settings.topic_purchases and status in (APPLIED, REDELIVERED):
                wanted.append((rec, ev))
        if wanted:
            out.extend(await self._recommend(wanted, result.sequences))
        await self._flush_counts()
        return out

    async def _recommend(
        self, wanted: list[tuple[dict[str, Any], Interaction]], sequences: dict[str, Any]
    ) -> list[Output]:
        s = self.settings
        positions: dict[str, dict[bytes, int]] = {}
        histories = []
        for _, ev in wanted:
            seq = sequences[ev.uid]
            pos = positions.get(ev.uid)
            if pos is None:
                pos = {h: i for i, h in enumerate(seq["hash"].tolist())}
                positions[ev.uid] = pos
            # Score from the history as it was right after this event, not after later
            # events of the same batch: a recommendation never knows the future.
            end = pos.get(ev.event_hash, len(seq) - 1) + 1
            histories.append(seq["item"][:end].tolist())
        anchors = {a for h in histories for a in recent_anchors(h, s.cooc_anchors)}
        # Enough popular items to fill a list for all but users who bought most of them.
        neighbours, top, pop = await self.store.scoring_inputs(
            anchors, s.cooc_neighbours, s.top_k + min(s.history_length, 50)
        )
        similar = cosine(neighbours, pop)
        ranked = [rank(h, similar, top, s.top_k, s.cooc_anchors) for h in histories]
        names = await self.store.item_ids(
            {r.item for rs in ranked for r in rs}
            | {r.anchor for rs in ranked for r in rs if r.anchor}
        )
        now_ms = int(self.clock() * 1000)
        outputs = []
        for (rec, _), items in zip(wanted, ranked, strict=True):
            value = {
                "user_id": rec["user_id"],
                "items": [
                    {"item_id": names[r.item], "score": r.score, "reason": self._reason(r, names)}
                    for r in items
                ],
                "model_version": BASELINE_VERSION,
                "segment": None,
                "cause_event_id": rec["event_id"],
                "ts": now_ms,
            }
            outputs.append(
                Output(
                    s.topic_recommendations,
                    rec["user_id"].encode(),
                    self.codec.encode("Recommendation", value),
                )
            )
        self.counts["recommendations"] += len(outputs)
        return outputs

    @staticmethod
    def _reason(r: Ranked[int], names: dict[int, str]) -> str:
        if r.reason == REASON_COOC and r.anchor is not None:
            return f"{REASON_COOC}:{names[r.anchor]}"
        return r.reason

    async def catalog(self, msgs: Sequence[Message]) -> list[Output]:
        out: list[Output] = []
        good = self._accept(msgs, out)
        if good:
            changed = await self.store.put_products([rec for _, rec in good])
            self.counts["products"] += sum(changed)
        await self._flush_counts()
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
            self.counts["preferences"] += len(prefs)
            self.counts["erasures"] += sum(1 for p in prefs if p.kind == "erase")
        await self._flush_counts()
        return out

    async def _flush_counts(self) -> None:
        # Shared counters let the demo and ops tools see every worker's totals.
        pending = {k: v for k, v in self.counts.items() if k in _SHARED and v}
        if pending:
            await self.store.incr_stats(pending)
            for k in pending:
                self.counts[k] = 0


_SHARED = frozenset({"dead_letters", "recommendations", "products", "preferences", "erasures"})
