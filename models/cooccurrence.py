"""Item-item co-occurrence recommender with popularity fallback (incremental baseline)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

Item = TypeVar("Item", bound=Hashable)

REASON_COOC = "bought_with"
REASON_POPULAR = "popular"


# A tuple, not a frozen dataclass: one is built per recommended item on the hot path,
# and a frozen dataclass's __init__ costs several times more.
class Ranked(NamedTuple, Generic[Item]):
    item: Item
    score: float
    reason: str  # REASON_COOC or REASON_POPULAR
    anchor: Item | None  # the history item that contributed most, for "because you bought X"


def recent_anchors(history: Sequence[Item], n: int) -> list[Item]:
    """The last ``n`` distinct items of a history (oldest first), most recent first.

    >>> recent_anchors([1, 2, 3, 2, 4], 3)
    [4, 2, 3]
    """
    out: list[Item] = []
    for item in reversed(history):
        if item not in out:
            out.append(item)
            if len(out) == n:
                break
    return out


def cosine(
    neighbours: Mapping[Item, Sequence[tuple[Item, float]]], popularity: Mapping[Item, float]
) -> dict[Item, list[tuple[Item, float]]]:
    """Turn co-occurrence counts into cosine similarities, count / sqrt(pop(a) pop(b)).

    >>> cosine({1: [(2, 2.0)]}, {1: 4.0, 2: 1.0})
    {1: [(2, 1.0)]}
    """
    out = {}
    for anchor, items in neighbours.items():
        pop_a = popularity.get(anchor, 0.0) or 1.0
        out[anchor] = [
            (item, count / math.sqrt(pop_a * (popularity.get(item, 0.0) or 1.0)))
            for item, count in items
        ]
    return out


def rank(
    history: Sequence[Item],
    similar: Mapping[Item, Sequence[tuple[Item, float]]],
    top_popular: Sequence[tuple[Item, float]],
    k: int,
    anchors: int = 3,
) -> list[Ranked[Item]]:
    """Top ``k`` next items for a history; items already in it are never returned.

    ``similar`` maps an item to its neighbours with a similarity (see ``cosine``). A
    candidate scores its similarity to each of the most recent distinct items, the
    more recent weighing more (1, 1/2, 1/3, ...). When the neighbourhood has fewer
    than ``k`` items the most popular fill the rest, ranked below every neighbour.

    >>> sim = {1: [(2, 1.0), (3, 0.5)], 2: [(1, 1.0)]}
    >>> [(r.item, r.reason, r.anchor) for r in rank([1], sim, [(9, 10.0), (1, 4.0)], 3)]
    [(2, 'bought_with', 1), (3, 'bought_with', 1), (9, 'popular', None)]
    """
    seen = set(history)
    scores: dict[Item, float] = {}
    best: dict[Item, tuple[float, Item]] = {}
    for rank_pos, anchor in enumerate(recent_anchors(history, anchors)):
        weight = 1.0 / (rank_pos + 1)
        for item, sim in similar.get(anchor, ()):
            if item in seen:
                continue
            contribution = weight * sim
            scores[item] = scores.get(item, 0.0) + contribution
            if item not in best or contribution > best[item][0]:
                best[item] = (contribution, anchor)
    # sorted is stable, so ties keep the neighbour lists' order: deterministic. (For the
    # few dozen candidates a history has, a full sort beats heapq.nlargest.)
    top = sorted(scores.items(), key=_second, reverse=True)[:k]
    out = [Ranked(item, score, REASON_COOC, best[item][1]) for item, score in top]
    if len(out) < k:
        floor = min((r.score for r in out), default=1.0)
        chosen = {r.item for r in out}
        total = sum(c for _, c in top_popular) or 1.0
        for item, count in top_popular:
            if item in seen or item in chosen:
                continue
            # Scaled into (0, floor] so a fallback never outranks a real neighbour; the
            # share first, as floor * count / total can round above floor.
            out.append(Ranked(item, floor * (count / total), REASON_POPULAR, None))
            if len(out) == k:
                break
    return out


def _second(pair: tuple[Any, float]) -> float:
    return pair[1]


class CoOccurrenceRecommender(Generic[Item]):
    """In-memory twin of the stream's Redis state, for offline use and as a reference.

    Pairs each new item with the previous ``window`` distinct items of the user (both
    directions), which bounds the update cost per event.

    >>> m = CoOccurrenceRecommender[str](window=2)
    >>> for u, i in [("a", "x"), ("a", "y"), ("b", "x")]:
    ...     m.learn_one(u, i)
    >>> [r.item for r in m.recommend("b", 2)]
    ['y']
    """

    def __init__(
        self, window: int = 5, history_length: int = 200, neighbours: int = 50, anchors: int = 3
    ) -> None:
        self.window = window
        self.neighbours = neighbours
        self.anchors = anchors
        self.history: dict[Hashable, deque[Item]] = defaultdict(
            lambda: deque(maxlen=history_length)
        )
        self.pairs: dict[Item, Counter[Item]] = defaultdict(Counter)
        self.popularity: Counter[Item] = Counter()

    def learn_one(self, user: Hashable, item: Item) -> None:
        hist = self.history[user]
        paired: set[Item] = set()
        for other in reversed(hist):
            if len(paired) == self.window:
                break
            if other == item or other in paired:
                continue
            paired.add(other)
            self.pairs[item][other] += 1
            self.pairs[other][item] += 1
        self.popularity[item] += 1
        hist.append(item)

    def learn_many(self, events: Iterable[tuple[Hashable, Item]]) -> None:
        for user, item in events:
            self.learn_one(user, item)

    def recommend(self, user: Hashable, k: int = 10) -> list[Ranked[Item]]:
        hist = list(self.history.get(user, ()))
        nb = {
            a: self.pairs[a].most_common(self.neighbours)
            for a in recent_anchors(hist, self.anchors)
        }
        top = self.popularity.most_common(k + len(hist))
        sim = cosine(nb, self.popularity)
        return rank(hist, sim, [(i, float(c)) for i, c in top], k, self.anchors)
