"""A micro-batch replayed over the sequences as they were before it."""

from __future__ import annotations

from collections.abc import Sequence

from streams.state.store import APPLIED, REDELIVERED, ApplyResult, Interaction


def replay_batch(
    batch: Sequence[Interaction], result: ApplyResult, wanted: Sequence[bool], n: int
) -> tuple[list[list[int]], dict[str, tuple[list[int], list[int]]]]:
    """Each wanted event's user history right after that event, and the (items, times)
    after the batch of each user with an applied or redelivered event.

    Replays the batch over the sequences as they were before it, exactly as the Lua
    step did, so a recommendation neither knows later events of the same batch nor
    forgets items that those later events pushed out of the retained window.
    """
    times: dict[str, list[int]] = {}
    items: dict[str, list[int]] = {}
    out = []
    for ev, status, idx, want in zip(
        batch, result.statuses, result.item_index, wanted, strict=True
    ):
        ts, its = times.get(ev.uid), items.get(ev.uid)
        if ts is None or its is None:
            before = result.before[ev.uid]
            ts = times[ev.uid] = before["ts"].tolist()
            its = items[ev.uid] = before["item"].tolist()
        if status == APPLIED:
            pos = len(ts)
            while pos and ts[pos - 1] > ev.ts_s:
                pos -= 1
            ts.insert(pos, ev.ts_s)
            its.insert(pos, idx)
            if len(ts) > n:
                del ts[: len(ts) - n], its[: len(its) - n]
        if want:
            out.append(its[:])
    finals = {
        ev.uid: (items[ev.uid], times[ev.uid])
        for ev, status in zip(batch, result.statuses, strict=True)
        if status in (APPLIED, REDELIVERED)
    }
    return out, finals
