"""Redis access for the shared online segmentation: model, warm-up sample, assignments."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from redis import asyncio as aioredis

from streams import keys
from streams.state.store import _pairs


@dataclass(frozen=True, slots=True)
class Merged:
    """The shared model after a merge, and each user's segment before it."""

    model: dict[str, Any] | None  # None: no model yet
    stale: bool  # the model changed version: nothing was written
    previous: list[int | None]  # None for a first assignment
    skipped: list[bool]  # the user was erased meanwhile: no segment written


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SegmentStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        trending_tau_s: float = 7 * 86_400,
        move_memory_s: int = 86_400,
    ) -> None:
        self.redis = redis
        self.trending_tau_s = trending_tau_s
        self.move_memory_s = move_memory_s
        script = resources.files("streams.state").joinpath("segment_update.lua").read_text()
        self._update = redis.register_script(script)

    async def model(self) -> dict[str, Any] | None:
        raw = await self.redis.get(keys.SEGMENT_MODEL)
        return None if raw is None else json.loads(raw)

    async def warm_push(self, profiles: np.ndarray) -> int:
        """Add raw profiles (no user ids) to the warm-up sample; its length after the push."""
        rows = [json.dumps([None if np.isnan(v) else v for v in row.tolist()]) for row in profiles]
        return int(await self.redis.rpush(keys.SEGMENT_WARM, *rows)) if rows else 0

    async def warm_sample(self, n: int) -> np.ndarray:
        rows = await self.redis.lrange(keys.SEGMENT_WARM, 0, n - 1)
        return np.array(
            [[np.nan if v is None else v for v in json.loads(row)] for row in rows], np.float64
        )

    async def seed(self, model: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Store ``model`` unless another worker seeded first; (won, the model in force)."""
        won = await self.redis.set(keys.SEGMENT_MODEL, json.dumps(model), nx=True)
        if won:
            await self.redis.delete(keys.SEGMENT_WARM)
            return True, model
        current = await self.model()
        assert current is not None
        return False, current

    async def merge(
        self,
        version: str,
        shifts: np.ndarray,
        counts: np.ndarray,
        assignments: Sequence[tuple[str, int]],
        trending: Sequence[tuple[int, int, int]],
        sources: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    ) -> Merged:
        """Add a batch's centroid shifts, write segments, feed segment trending (one call).

        ``trending`` holds (segment, item index, ts seconds) per applied event.
        ``sources`` names, per user, the batch event that places them and the batch's
        redelivered events of that user (event hashes in hex): a move made by one of
        those comes back in ``previous`` as if it were made now (see the script).
        """
        sources = sources or {}
        argv: list[Any] = [
            version,
            json.dumps(shifts.tolist()),
            json.dumps(counts.tolist()),
            len(assignments),
            len(trending),
            self.trending_tau_s,
            self.move_memory_s,
        ]
        for uid, seg in assignments:
            event, replayed = sources.get(uid, ("", ()))
            argv += [uid, seg, event, ",".join(replayed)]
        for seg, item, ts in trending:
            argv += [seg, item, ts]
        first, second = await self._update(
            keys=[keys.SEGMENT_MODEL, keys.SEGMENT_SIZES, keys.SEGMENT_TREND_EPOCH], args=argv
        )
        if _text(first) == "stale":
            raw = _text(second)
            return Merged(json.loads(raw) if raw else None, True, [], [])
        previous = [_text(o) for o in second]
        return Merged(
            json.loads(first),
            False,
            [int(o) if o not in ("", "-") else None for o in previous],
            [o == "-" for o in previous],
        )

    async def segments_of(self, uids: Iterable[str]) -> dict[str, int]:
        order = list(uids)
        if not order:
            return {}
        values = await self.redis.mget([keys.segment(u) for u in order])
        return {u: int(v) for u, v in zip(order, values, strict=True) if v is not None}

    async def sizes(self) -> dict[int, int]:
        raw = await self.redis.hgetall(keys.SEGMENT_SIZES)
        return {int(k): int(v) for k, v in raw.items()}

    async def trending(self, seg: int, n: int) -> list[tuple[int, float]]:
        """The ``n`` items most bought lately by users of segment ``seg``, best first."""
        reply = await self.redis.execute_command(
            "ZREVRANGE", keys.segment_trending(seg), 0, n - 1, "WITHSCORES"
        )
        return _pairs(reply)
