"""The importers against the real public data sets in ../shared/data (skipped when absent)."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from pathlib import Path

import pytest

from models.datasets import (
    DEFAULT_DATA_DIR,
    PRODUCT_FIELDS,
    PURCHASE_FIELDS,
    REVIEW_FIELDS,
    Dataset,
    available,
    load,
    to_messages,
)
from models.datasets.loader import FILES


def _load_or_skip(name: str) -> tuple[Dataset, float]:
    missing = [DEFAULT_DATA_DIR / f for f in FILES[name] if not (DEFAULT_DATA_DIR / f).is_file()]
    if missing:
        pytest.skip(reason=f"{name}: data file missing: {', '.join(map(str, missing))}")
    start = time.perf_counter()
    dataset = load(name)
    return dataset, time.perf_counter() - start


@pytest.fixture(scope="module")
def retail() -> tuple[Dataset, float]:
    return _load_or_skip("online_retail")


@pytest.fixture(scope="module")
def toys() -> Dataset:
    return _load_or_skip("toys")[0]


@pytest.fixture(scope="module")
def sports() -> Dataset:
    return _load_or_skip("sports")[0]


@pytest.fixture(scope="module")
def video() -> Dataset:
    return _load_or_skip("video_games")[0]


@pytest.fixture(scope="module")
def movielens() -> Dataset:
    return _load_or_skip("ml-100k")[0]


def _check_shape(dataset: Dataset) -> None:
    fields = {"purchase": PURCHASE_FIELDS, "review": REVIEW_FIELDS}
    for kind, record in dataset.events[:1000]:
        assert tuple(record) == fields[kind]
        assert isinstance(record["ts"], int)
        assert isinstance(record["user_id"], str) and isinstance(record["item_id"], str)
    for record in dataset.products[:1000]:
        assert tuple(record) == PRODUCT_FIELDS
        assert isinstance(record["category"], list)
    timestamps = [record["ts"] for _, record in dataset.events]
    assert timestamps == sorted(timestamps)
    assert len({record["event_id"] for _, record in dataset.events}) == len(dataset.events)
    assert {p["item_id"] for p in dataset.products} == {r["item_id"] for _, r in dataset.events}


def _user_sequences(dataset: Dataset) -> dict[str, list[str]]:
    sequences: dict[str, list[str]] = defaultdict(list)
    for _, record in dataset.events:
        sequences[record["user_id"]].append(record["item_id"])
    return sequences


def _file_sequences(path: Path) -> dict[str, list[str]]:
    sequences: dict[str, list[str]] = defaultdict(list)
    for line in path.read_text().splitlines():
        user, *items = line.split()
        sequences[user].extend(items)
    return sequences


def test_online_retail_counts_and_speed(retail: tuple[Dataset, float]) -> None:
    dataset, seconds = retail
    assert len(dataset.events) == 397_884
    assert dataset.users() == 4_338
    assert dataset.items() == 3_665
    assert len(dataset.products) == 3_665
    assert seconds < 10, f"online_retail took {seconds:.1f} s to load"
    _check_shape(dataset)


def test_online_retail_fields(retail: tuple[Dataset, float]) -> None:
    dataset, _ = retail
    kind, first = dataset.events[0]
    assert kind == "purchase"
    assert first["currency"] == "GBP"
    assert first["session_id"] == "536365"
    assert first["ts"] == 1_291_191_960_000  # 2010-12-01 08:26 UTC
    assert all(r["quantity"] > 0 and r["price"] > 0 for _, r in dataset.events)
    assert len({r["session_id"] for _, r in dataset.events}) == 18_532
    heart = next(p for p in dataset.products if p["item_id"] == "85123A")
    assert heart["title"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert heart["category"] == [] and heart["price"] > 0


def test_online_retail_keeps_file_order_within_a_timestamp(
    retail: tuple[Dataset, float],
) -> None:
    keys = [(r["ts"], int(r["event_id"].split(":")[1])) for _, r in retail[0].events]
    assert all(a < b for a, b in itertools.pairwise(keys))


def test_toys_counts_and_order(toys: Dataset) -> None:
    assert len(toys.events) == 167_597
    assert toys.users() == 19_412
    assert toys.items() == 11_924
    _check_shape(toys)
    assert _user_sequences(toys) == _file_sequences(DEFAULT_DATA_DIR / FILES["toys"][0])
    assert all(p["category"] for p in toys.products)
    assert all(r["quantity"] == 1 and r["price"] is None for _, r in toys.events)


def test_sports_counts(sports: Dataset) -> None:
    assert (len(sports.events), sports.users(), sports.items()) == (296_337, 35_598, 18_357)
    _check_shape(sports)


def test_video_games_counts_and_order(video: Dataset) -> None:
    assert (len(video.events), video.users(), video.items()) == (287_107, 31_013, 23_715)
    _check_shape(video)
    assert _user_sequences(video) == _file_sequences(DEFAULT_DATA_DIR / FILES["video_games"][0])


def test_movielens_counts_and_fields(movielens: Dataset) -> None:
    assert len(movielens.events) == 100_000
    assert movielens.users() == 943
    assert movielens.items() == 1_682
    _check_shape(movielens)
    assert {kind for kind, _ in movielens.events} == {"review"}
    assert {r["rating"] for _, r in movielens.events} == {1.0, 2.0, 3.0, 4.0, 5.0}
    toy_story = next(p for p in movielens.products if p["item_id"] == "1")
    assert toy_story["title"] == "Toy Story (1995)"
    assert toy_story["category"] == ["Animation", "Children's", "Comedy"]


def test_ids_are_deterministic_across_loads(toys: Dataset, movielens: Dataset) -> None:
    # Loading by path must give the same ids as loading by name.
    again = load(DEFAULT_DATA_DIR / FILES["toys"][0])
    assert again.name == "toys"
    assert again.events == toys.events
    assert again.products == toys.products
    assert load("ml-100k").events == movielens.events


def test_limit_keeps_a_time_prefix(movielens: Dataset) -> None:
    small = load("ml-100k", limit=1_000)
    assert small.events == movielens.events[:1_000]
    assert {p["item_id"] for p in small.products} == {r["item_id"] for _, r in small.events}
    assert load("ml-100k", limit=0).products == []


def test_real_records_fit_the_avro_contracts(
    retail: tuple[Dataset, float], toys: Dataset, movielens: Dataset
) -> None:
    codec_module = pytest.importorskip("schemas.codec", reason="schemas.codec not importable")
    codec = codec_module.Codec()
    names = {"product": "Product", "purchase": "Purchase", "review": "Review"}
    for dataset in (retail[0], toys, movielens):
        messages = list(to_messages(dataset))
        for kind, _, record in messages[:500] + messages[-500:]:
            assert codec.decode(names[kind], codec.encode(names[kind], record)) == record


def test_available_names_present_sets() -> None:
    names = available()
    assert names[-1] == "synthetic"
    for name in names[:-1]:
        assert all((DEFAULT_DATA_DIR / f).is_file() for f in FILES[name])
