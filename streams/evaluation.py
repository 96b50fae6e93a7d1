"""Online evaluation: did the user buy what we recommended to them just before?

Each purchase is judged against the last recommendation emitted to that user, if it
came within the attribution window (event time) before the purchase: a hit when the
item is in the list, with its reciprocal rank for MRR. That is the stream's version of
the offline next-purchase protocol (HR@K and MRR with K the list length), so online and
offline figures read the same way. Counts are kept per model version, per segment, per
A/B arm and per hour, and the items shown are counted for exposure (popularity bias).

State is bounded: one remembered list per user, expiring with the window; counters
per version, segment, arm and hour (hours expire after three days).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

from redis import asyncio as aioredis

from streams import keys
from streams.serving.serve import Answer
from streams.state.store import Interaction

HOUR_S = 3600
HOURS_KEPT_S = 3 * 86_400
_SET_EXPIRING = resources.files("streams.state").joinpath("set_expiring.lua").read_text()


@dataclass(frozen=True, slots=True)
class Shown:
    """A recommendation as the evaluation remembers it."""

    ts_s: int  # event time of the event it followed
    version: str
    arm: str
    segment: int | None
    items: tuple[str, ...]

    def encode(self) -> str:
        return json.dumps([self.ts_s, self.version, self.arm, self.segment, list(self.items)])

    @classmethod
    def decode(cls, raw: bytes | str) -> Shown:
        ts, version, arm, segment, items = json.loads(raw)
        return cls(int(ts), version, arm, segment, tuple(items))


class Step:
    """One event of a batch, in batch order, as the evaluation sees it.

    ``judge`` marks a purchase applied for the first time (judge it against the last
    list); ``shown`` is the recommendation this event produced, if any, built when first
    asked for: a batch remembers one list per user and judges fewer purchases than it
    has events, so most lists are never needed as `Shown`.
    """

    __slots__ = ("_answer", "_arm_of", "_segment", "_shown", "item_id", "judge", "ts_s", "uid")

    def __init__(
        self,
        uid: str,
        item_id: str,
        ts_s: int,
        judge: bool,
        answer: Answer | None,
        arm_of: Callable[[str], str],
        segment: int | None,
    ) -> None:
        self.uid, self.item_id, self.ts_s, self.judge = uid, item_id, ts_s, judge
        self._answer = answer if answer is not None and answer.items else None
        self._arm_of = arm_of
        self._segment = segment
        self._shown: Shown | None = None

    @property
    def shows(self) -> bool:
        return self._answer is not None

    @property
    def shown(self) -> Shown | None:
        answer = self._answer
        if self._shown is None and answer is not None:
            items = tuple([i.item_id for i in answer.items])
            arm = self._arm_of(self.uid)
            self._shown = Shown(self.ts_s, answer.version, arm, self._segment, items)
        return self._shown


@dataclass(frozen=True, slots=True)
class Verdict:
    hit: bool
    rank: int | None  # 1-based position of the item in the list, None for a miss
    shown: Shown


def judge(last: Shown | None, item_id: str, ts_s: int, window_s: float) -> Verdict | None:
    """The verdict on one purchase, or None when no list was shown within the window.

    >>> s = Shown(100, "v1", "control", 2, ("a", "b", "c"))
    >>> v = judge(s, "b", 150, 3600)
    >>> v.hit, v.rank, v.shown.version
    (True, 2, 'v1')
    >>> judge(s, "z", 150, 3600).hit, judge(s, "b", 100 + 3601, 3600)
    (False, None)
    """
    if last is None or not last.ts_s <= ts_s <= last.ts_s + window_s:
        return None
    try:
        rank = last.items.index(item_id) + 1
    except ValueError:
        return Verdict(False, None, last)
    return Verdict(True, rank, last)


def batch_steps(
    batch: Sequence[Interaction],
    items: Sequence[str],
    judged: Sequence[bool],
    wanted: Sequence[bool],
    answers: Sequence[Answer],
    withdrawn: set[str],
    segment_of: dict[str, int],
    arm_of: Callable[[str], str],
) -> list[Step]:
    """A batch's events as the evaluation sees them; ``answers`` holds one per wanted event.

    ``judged`` marks purchases applied for the first time. Users who withdrew consent
    are left out: remembering what they were shown and bought would be a personal
    record.
    """
    shown = iter(answers)
    steps = []
    for ev, item, judge_it, w in zip(batch, items, judged, wanted, strict=True):
        answer = next(shown) if w else None
        if ev.uid in withdrawn:
            continue
        uid = ev.uid
        steps.append(Step(uid, item, ev.ts_s, judge_it, answer, arm_of, segment_of.get(uid)))
    return steps


class Evaluator:
    """Judges a batch's purchases and remembers its recommendations: two round trips."""

    def __init__(
        self,
        redis: aioredis.Redis,
        window_s: float,
        exposure_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.window_s = window_s
        # Exposure counts are read by people, not by the next batch: summed here and
        # written every few seconds, they cost one ZINCRBY per item per flush instead of
        # one per item per batch (hundreds per batch).
        self.exposure: Counter[str] = Counter()
        self.exposure_every_s = exposure_every_s
        self.clock = clock
        self._flushed = clock()

    async def observe(self, steps: Sequence[Step]) -> list[Verdict]:
        if not steps:
            return []
        users = list(dict.fromkeys(s.uid for s in steps))
        raw = await self.redis.mget([keys.last_recommendation(u) for u in users])
        stored = {u: Shown.decode(r) for u, r in zip(users, raw, strict=True) if r is not None}
        latest: dict[str, Step] = {}  # the batch's own last list per user, so far
        verdicts: list[Verdict] = []
        for step in steps:
            if step.judge:
                mine = latest.get(step.uid)
                last = mine.shown if mine is not None else stored.get(step.uid)
                verdict = judge(last, step.item_id, step.ts_s, self.window_s)
                if verdict is not None:
                    verdicts.append(verdict)
            if step.shows:
                latest[step.uid] = step
        changed = {u: s for u, step in latest.items() if (s := step.shown) is not None}
        await self._write(verdicts, changed)
        return verdicts

    async def _write(self, verdicts: Sequence[Verdict], changed: dict[str, Shown]) -> None:
        counts: Counter[str] = Counter()
        rr: dict[str, float] = {}
        hours: dict[int, Counter[str]] = {}
        for v in verdicts:
            shown = v.shown
            for dim in (
                f"version:{shown.version}",
                f"segment:{'-' if shown.segment is None else shown.segment}",
                f"arm:{shown.arm}",
            ):
                counts[f"{dim}:n"] += 1
                counts[f"{dim}:hits"] += v.hit
                if v.rank:
                    rr[f"{dim}:rr"] = rr.get(f"{dim}:rr", 0.0) + 1.0 / v.rank
            hour = hours.setdefault(shown.ts_s // HOUR_S * HOUR_S, Counter())
            hour["n"] += 1
            hour["hits"] += v.hit
        self.exposure.update(i for s in changed.values() for i in s.items)
        pipe = self.redis.pipeline(transaction=False)
        if changed:
            # EVAL with the body, not a registered script: redis-py checks a pipeline's
            # scripts with a round trip of its own, and Redis caches the compiled body.
            pipe.eval(
                _SET_EXPIRING,
                len(changed),
                *(keys.last_recommendation(u) for u in changed),
                max(1, int(self.window_s)),
                *(s.encode() for s in changed.values()),
            )
        for field, n in counts.items():
            if n:
                pipe.hincrby(keys.EVALUATION, field, n)
        for field, x in rr.items():
            pipe.hincrbyfloat(keys.EVALUATION, field, x)
        for start, c in hours.items():
            key = keys.evaluation_hour(start)
            for field, n in c.items():
                if n:
                    pipe.hincrby(key, field, n)
            pipe.expire(key, HOURS_KEPT_S)
        exposure: Counter[str] = Counter()
        if self.clock() - self._flushed >= self.exposure_every_s:
            exposure, self.exposure = self.exposure, Counter()
            self._flushed = self.clock()
        for item, n in exposure.items():
            pipe.zincrby(keys.EXPOSURE, n, item)
        try:
            await pipe.execute()
        except BaseException:
            self.exposure.update(exposure)  # counted again at the next flush
            raise


def summarise(raw: dict[bytes, bytes]) -> dict[str, dict[str, dict[str, float]]]:
    """The evaluation hash as {dimension: {value: {n, hits, hr, mrr}}}.

    >>> summarise({b"arm:control:n": b"4", b"arm:control:hits": b"1", b"arm:control:rr": b"0.5"})
    {'arm': {'control': {'n': 4.0, 'hits': 1.0, 'rr': 0.5, 'hr': 0.25, 'mrr': 0.125}}}
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for field, value in raw.items():
        dim, _, rest = field.decode().partition(":")
        name, _, stat = rest.rpartition(":")
        out.setdefault(dim, {}).setdefault(name, {})[stat] = float(value)
    for values in out.values():
        for stats in values.values():
            n = stats.get("n", 0.0)
            stats.setdefault("hits", 0.0)
            stats.setdefault("rr", 0.0)
            stats["hr"] = stats["hits"] / n if n else 0.0
            stats["mrr"] = stats["rr"] / n if n else 0.0
    return out
