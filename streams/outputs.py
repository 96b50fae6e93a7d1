"""The records a worker produces, encoded for their topics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.codec import Codec
from streams.segments import Change
from streams.serving.serve import Answer, reason_text
from streams.settings import Settings

# Where an event was read: topic, partition, offset.
Position = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    # The one event this record answers, where there is one: a refused record is then
    # dead-lettered as that event alone, not as every event of the batch with its key.
    cause: Position | None = None


class Emitter:
    def __init__(self, settings: Settings, codec: Codec, clock: Callable[[], float] = time.time):
        self.settings, self.codec, self.clock = settings, codec, clock

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def recommendations(
        self,
        records: Sequence[dict[str, Any]],
        uids: Sequence[str],
        answers: Sequence[Answer],
        segment_of: dict[str, int],
        causes: Sequence[Position],
    ) -> list[Output]:
        """One Recommendation per answer, keyed by the user id upstream sent.

        ``causes`` gives where each record's event was read, for ``Output.cause``.
        """
        now_ms = self._now_ms()
        out = []
        for uid, rec, answer, cause in zip(uids, records, answers, causes, strict=True):
            value = {
                "user_id": rec["user_id"],
                "items": [
                    {"item_id": r.item_id, "score": r.score, "reason": reason_text(r)}
                    for r in answer.items
                ],
                "model_version": answer.version,
                "segment": segment_of.get(uid),
                "cause_event_id": rec["event_id"],
                "ts": now_ms,
            }
            out.append(
                Output(
                    self.settings.topic_recommendations,
                    rec["user_id"].encode(),
                    self.codec.encode("Recommendation", value, validate=False),
                    cause,
                )
            )
        return out

    def segment_changes(self, moves: Sequence[Change], user_id: dict[str, str]) -> list[Output]:
        now_ms = self._now_ms()
        out = []
        for c in moves:
            value = {
                "user_id": user_id[c.uid],
                "old": c.old,
                "new": c.new,
                "distance": c.distance,
                "model_version": c.version,
                "ts": now_ms,
            }
            out.append(
                Output(
                    self.settings.topic_segments,
                    user_id[c.uid].encode(),
                    self.codec.encode("SegmentChange", value, validate=False),
                )
            )
        return out

    def drift_alerts(self, records: Sequence[dict[str, Any]]) -> list[Output]:
        """DriftAlert records, keyed by monitor name."""
        return [
            Output(
                self.settings.topic_drift_alerts,
                r["monitor"].encode(),
                self.codec.encode("DriftAlert", r, validate=False),
            )
            for r in records
        ]
