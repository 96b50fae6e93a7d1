"""Event-log files: what is written is what `load` reads, and bad files say what is wrong."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from models.datasets import (
    Dataset,
    Event,
    EventLogError,
    generate,
    is_eventlog,
    load,
    product,
    purchase,
    read_eventlog,
    review,
    write_eventlog,
)


def _small() -> Dataset:
    events: list[Event] = [
        ("purchase", purchase("e1", "u1", "i1", 1_000, quantity=2, price=9.99, currency="EUR")),
        ("review", review("e2", "u1", "i1", 2_000, rating=3.700000047683716, text='ok\n"é"')),
        ("purchase", purchase("e3", "u2", "i2", 3_000, session_id="s1")),
    ]
    products = [
        product("i1", 500, title="Knife", category=["Home", "Kitchen"], price=9.99, stock=0),
        product("i2", 500, promo=0.1),
    ]
    return Dataset("shop", products, events, "hand-made")


@pytest.mark.parametrize("filename", ["log.jsonl", "log.jsonl.gz", "log.any"])
def test_round_trip_through_load(tmp_path: Path, filename: str) -> None:
    original = _small()
    path = write_eventlog(tmp_path / filename, original, {"topics": ["p", "r"]})
    assert is_eventlog(path)
    loaded = load(path)
    assert loaded == original  # same name, source, products and events, field for field
    assert load(path, limit=1).events == original.events[:1]
    if not filename.endswith(".gz"):
        first = json.loads(path.read_text().splitlines()[0])
        assert (first["kind"], first["topics"]) == ("header", ["p", "r"])


def test_synthetic_round_trip_keeps_time_order(tmp_path: Path) -> None:
    original = generate(n_users=40, n_items=40, review_rate=0.3, seed=3)
    loaded = load(write_eventlog(tmp_path / "syn.jsonl.gz", original))
    assert loaded.events == original.events
    assert loaded.products == original.products
    assert [r["ts"] for _, r in loaded.events] == sorted(r["ts"] for _, r in loaded.events)


def test_how_to_evaluate_it_travels_in_the_header(tmp_path: Path) -> None:
    stamped = dataclasses.replace(_small(), timed=False, split="leave-one-out")
    loaded = load(write_eventlog(tmp_path / "stamped.jsonl", stamped))
    assert (loaded.timed, loaded.split) == (False, "leave-one-out")
    # a log that does not say (written elsewhere, or before the header said) is a shop's
    bare = tmp_path / "bare.jsonl"
    bare.write_text(_lines(HEAD, GOOD))
    assert (load(bare).timed, load(bare).split) == (True, "temporal")


def test_reader_sorts_events_written_out_of_order(tmp_path: Path) -> None:
    shuffled = dataclasses.replace(_small(), events=_small().events[::-1])
    loaded = read_eventlog(write_eventlog(tmp_path / "x.jsonl", shuffled))
    assert [r["event_id"] for _, r in loaded.events] == ["e1", "e2", "e3"]


def test_other_files_are_not_event_logs(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a x\nb y\n")
    assert not is_eventlog(pairs)
    assert load(pairs).name == "pairs"
    assert not is_eventlog(tmp_path / "absent.jsonl")


def _lines(*objs: object) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


HEAD = {"kind": "header", "format": "reco-eventlog", "version": 1, "name": "n"}
GOOD = {"kind": "purchase", "record": _small().events[0][1]}

BAD = {
    "no header": (_lines(GOOD), ":1: not a reco-eventlog file"),
    "newer version": (_lines({**HEAD, "version": 2}), "version 2 is not one this code reads"),
    "not json": (_lines(HEAD) + "{oops\n", ":2: not JSON"),
    "unknown kind": (_lines(HEAD, {"kind": "click", "record": {}}), ":2: unknown kind 'click'"),
    "missing field": (
        _lines(HEAD, {"kind": "review", "record": {"event_id": "e"}}),
        ":2: a review record has fields",
    ),
    "empty": ("", "empty file"),
    "unknown split": (_lines({**HEAD, "split": "random"}), "split='random': expected"),
    "timed not a boolean": (_lines({**HEAD, "timed": "yes"}), "timed='yes'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files(tmp_path: Path, case: str) -> None:
    text, message = BAD[case]
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(EventLogError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)  # what the other loaders raise on bad files
