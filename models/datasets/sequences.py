"""Timestamp-free interaction logs (Amazon 5-core sequences, user-item pairs) as Purchases.

These files keep each user's order but carry no time, so events get synthetic
timestamps: ``2020-01-01 UTC + position_in_user_sequence * 1 day + offset(user)``,
where ``offset(user) = crc32(user_id) mod 365 days``, in whole seconds. Each user's
order is kept exactly, users start at different moments of one year, and the
interleaving is the same on every run (crc32, unlike ``hash``, is not salted).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.datasets.base import Dataset, Event, catalog, sort_events
from models.datasets.records import epoch_ms, purchase

BASE_MS = epoch_ms(2020, 1, 1)
STEP_MS = 86_400_000
OFFSET_SPAN_S = 365 * 86_400


def synthetic_ts(user_id: str, position: int) -> int:
    """Epoch ms of a user's ``position``-th event (0-based) in a timestamp-free log.

    >>> synthetic_ts("1", 1) - synthetic_ts("1", 0)
    86400000
    >>> synthetic_ts("1", 0) == synthetic_ts("1", 0)
    True
    """
    offset_s = zlib.crc32(user_id.encode()) % OFFSET_SPAN_S
    return BASE_MS + position * STEP_MS + offset_s * 1000


def load_sequences(path: Path, name: str, attributes: Path | None = None) -> Dataset:
    """Load ``user item item ...`` lines (one user per line, items in time order).

    Event ids are ``{name}:{line_no}:{k}`` with 1-based line and 0-based position
    on the line. ``attributes`` is an ``{item_id: [attr, ...]}`` JSON file whose ids
    become each product's ``category``.
    """
    details = _read_attributes(attributes) if attributes is not None else {}
    events: list[Event] = []
    positions: dict[str, int] = {}
    for line_no, user_id, items in _lines(path, name):
        start = positions.get(user_id, 0)
        for k, item_id in enumerate(items):
            ts = synthetic_ts(user_id, start + k)
            events.append(("purchase", purchase(f"{name}:{line_no}:{k}", user_id, item_id, ts)))
        positions[user_id] = start + len(items)
    sort_events(events)
    files = [path] if attributes is None else [path, attributes]
    return Dataset(
        name=name,
        products=catalog(events, details),
        events=events,
        source=", ".join(str(f) for f in files),
        timed=False,
    )


def load_pairs(path: Path, name: str) -> Dataset:
    """Load ``user item`` lines, one event per line, each user's lines in time order.

    Event ids are ``{name}:{line_no}`` (1-based).
    """
    events: list[Event] = []
    positions: dict[str, int] = {}
    for line_no, user_id, items in _lines(path, name):
        if len(items) != 1:
            raise ValueError(f"{path}:{line_no}: expected 'user item', got {len(items)} items")
        position = positions.get(user_id, 0)
        ts = synthetic_ts(user_id, position)
        events.append(("purchase", purchase(f"{name}:{line_no}", user_id, items[0], ts)))
        positions[user_id] = position + 1
    sort_events(events)
    return Dataset(
        name=name, products=catalog(events, {}), events=events, source=str(path), timed=False
    )


def load_amazon(data_dir: Path, stem: str, name: str) -> Dataset:
    """Load ``amazon/<stem>.txt`` with its ``<stem>_item2attributes.json``."""
    path = data_dir / "amazon" / f"{stem}.txt"
    attributes = data_dir / "amazon" / f"{stem}_item2attributes.json"
    for required in (path, attributes):
        if not required.is_file():
            raise FileNotFoundError(f"{name}: expected {required}")
    return load_sequences(path, name, attributes)


def attributes_beside(path: Path) -> Path | None:
    """The ``<stem>_item2attributes.json`` next to a sequence file, when there is one."""
    candidate = path.with_name(f"{path.stem}_item2attributes.json")
    return candidate if candidate.is_file() else None


def _lines(path: Path, name: str) -> Iterator[tuple[int, str, list[str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{name}: expected {path}")
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2:
                raise ValueError(f"{path}:{line_no}: expected 'user item ...', got {line!r}")
            yield line_no, tokens[0], tokens[1:]


def _read_attributes(path: Path) -> dict[str, dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        raw = json.load(handle)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object {{item_id: [attr, ...]}}")
    return {str(item): {"category": [str(a) for a in attrs]} for item, attrs in raw.items()}
