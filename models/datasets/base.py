"""The Dataset container shared by every importer, and the helpers that shape one."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from models.datasets.records import Record, product

EventKind = Literal["purchase", "review"]
SplitKind = Literal["leave-one-out", "temporal"]
Event = tuple[EventKind, Record]
D = TypeVar("D", bound="Dataset")


@dataclass(frozen=True)
class Dataset:
    """Products and a time-ordered event log, ready to replay or to train on.

    ``events`` is sorted by ``(ts, original file order)``, so replaying it is a stable,
    global time order; ``products`` holds one catalog record per item that occurs in
    ``events``, ordered by first appearance.
    """

    name: str
    products: list[Record] = field(repr=False)
    events: list[Event] = field(repr=False)
    source: str
    # False where the files carry no time and events are stamped one day per position
    # (the sequence formats): event times then say nothing about when anything sold.
    timed: bool = field(default=True, kw_only=True)
    # How offline evaluation splits it unless told otherwise: the protocol results on
    # this kind of data are reported under (leave-one-out for the public benchmark
    # sets, MovieLens included; a time cut for a shop's own transaction log).
    split: SplitKind = field(default="leave-one-out", kw_only=True)

    def users(self) -> int:
        """Number of distinct users in the events."""
        return len({record["user_id"] for _, record in self.events})

    def items(self) -> int:
        """Number of distinct items in the events."""
        return len({record["item_id"] for _, record in self.events})


def sort_events(events: list[Event]) -> list[Event]:
    """Sort in place by timestamp; Python's sort is stable, so file order breaks ties."""
    events.sort(key=lambda event: event[1]["ts"])
    return events


def catalog(events: Iterable[Event], details: Mapping[str, Mapping[str, Any]]) -> list[Record]:
    """One product per item seen in ``events``, stamped with the item's first event time.

    ``details`` holds the other Product fields per item; items without details get a
    bare record, so every event has a catalog entry to join against.
    """
    seen: set[str] = set()
    products: list[Record] = []
    for _, record in events:
        item_id = record["item_id"]
        if item_id in seen:
            continue
        seen.add(item_id)
        products.append(product(item_id, record["ts"], **details.get(item_id, {})))
    return products


def truncate(dataset: D, limit: int | None) -> D:
    """Keep the first ``limit`` events in time order and the products of their items."""
    if limit is None or limit >= len(dataset.events):
        return dataset
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    events = dataset.events[:limit]
    kept = {record["item_id"] for _, record in events}
    products = [p for p in dataset.products if p["item_id"] in kept]
    return dataclasses.replace(dataset, events=events, products=products)


def to_messages(dataset: Dataset) -> Iterator[tuple[str, str, Record]]:
    """Yield ``(kind, key, record)`` in replay order: the catalog first, then the events.

    Products are keyed by item id and events by user id, matching the topic keys.
    """
    for record in dataset.products:
        yield "product", record["item_id"], record
    for kind, record in dataset.events:
        yield kind, record["user_id"], record
