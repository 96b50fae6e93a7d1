"""MovieLens 100K ratings as Review events, movies with their genres as Products."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.datasets.base import Dataset, Event, catalog, sort_events
from models.datasets.records import review

NAME = "ml-100k"
GENRE_FLAGS = 19
# GroupLens wrote u.item and u.genre before UTF-8 was usual; titles carry latin-1 accents.
ENCODING = "latin-1"


def load_movielens(directory: Path, name: str = NAME) -> Dataset:
    """Load ``u.data`` (``user\\titem\\trating\\tunix_seconds``) with ``u.item`` and ``u.genre``.

    Event ids are ``{name}:{line_no}`` (1-based line of ``u.data``); ratings become
    floats and seconds become milliseconds.
    """
    ratings, items, genres = (directory / f for f in ("u.data", "u.item", "u.genre"))
    for required in (ratings, items, genres):
        if not required.is_file():
            raise FileNotFoundError(f"{name}: expected {required}")
    events = _read_ratings(ratings, name)
    details = _read_items(items, _read_genres(genres))
    return Dataset(
        name=name,
        products=catalog(events, details),
        events=events,
        source=", ".join(str(f) for f in (ratings, items, genres)),
    )


def _read_ratings(path: Path, name: str) -> list[Event]:
    events: list[Event] = []
    with path.open(encoding=ENCODING) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 4:
                raise ValueError(f"{path}:{line_no}: expected 4 tab-separated fields")
            user_id, item_id, rating, seconds = (f.strip() for f in fields)
            record = review(
                f"{name}:{line_no}", user_id, item_id, int(seconds) * 1000, rating=float(rating)
            )
            events.append(("review", record))
    return sort_events(events)


def _read_genres(path: Path) -> list[str]:
    """Genre names indexed by their flag position in ``u.item``."""
    by_index: dict[int, str] = {}
    with path.open(encoding=ENCODING) as handle:
        for line in handle:
            if line.strip():
                genre, index = line.strip().rsplit("|", 1)
                by_index[int(index)] = genre
    return [by_index[i] for i in sorted(by_index)]


def _read_items(path: Path, genres: list[str]) -> dict[str, dict[str, Any]]:
    details: dict[str, dict[str, Any]] = {}
    with path.open(encoding=ENCODING) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("|")
            flags = fields[-len(genres) :]
            if len(fields) < 2 + len(genres):
                raise ValueError(f"{path}:{line_no}: expected id|title|...|{len(genres)} flags")
            details[fields[0]] = {
                "title": fields[1],
                "category": [g for g, flag in zip(genres, flags, strict=True) if flag == "1"],
            }
    return details
