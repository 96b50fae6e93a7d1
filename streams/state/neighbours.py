"""A short-lived cache of item neighbourhoods in front of Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from models.cooccurrence import cosine
from streams.state.store import Store

Similar = list[tuple[int, float]]


class NeighbourCache:
    """Cosine neighbour lists and the most popular items, refreshed every ``ttl_s``.

    Neighbourhoods drift slowly while the same items anchor thousands of events a
    second; reading each at most once per ``ttl_s`` takes the Redis reads and their
    parsing off most events. ``ttl_s=0`` reads through every time.
    """

    def __init__(
        self,
        store: Store,
        neighbours: int,
        popular: int,
        ttl_s: float,
        max_items: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.neighbours = neighbours
        self.popular = popular
        self.ttl_s = ttl_s
        self.max_items = max_items
        self.clock = clock
        self._similar: dict[int, tuple[float, Similar]] = {}
        self._top: Similar = []
        self._top_at = float("-inf")

    async def get(self, anchors: Iterable[int]) -> tuple[dict[int, Similar], Similar]:
        now = self.clock()
        wanted = set(anchors)
        stale = [
            a for a in wanted if a not in self._similar or now - self._similar[a][0] >= self.ttl_s
        ]
        if stale or now - self._top_at >= self.ttl_s:
            lists, top, pop = await self.store.scoring_inputs(stale, self.neighbours, self.popular)
            if len(self._similar) + len(stale) > self.max_items:
                self._similar = {a: v for a, v in self._similar.items() if now - v[0] < self.ttl_s}
            for anchor, similar in cosine(lists, pop).items():
                self._similar[anchor] = (now, similar)
            self._top, self._top_at = top, now
        return {a: self._similar[a][1] for a in wanted}, self._top
