"""Format recognition, errors and replay order, on small files written per test."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from models.datasets import DEFAULT_DATA_DIR, available, load, to_messages


def test_default_data_dir_is_beside_the_repo() -> None:
    repo = Path(__file__).resolve().parents[3]
    assert repo.parent / "shared" / "data" == DEFAULT_DATA_DIR


def test_pairs_file(tmp_path: Path) -> None:
    path = tmp_path / "clicks.txt"
    path.write_text("a x\nb y\na z\n\n")
    dataset = load(path)
    assert dataset.name == "clicks"
    ids = {r["event_id"] for _, r in dataset.events}
    assert ids == {"clicks:1", "clicks:2", "clicks:3"}
    assert [r["item_id"] for _, r in dataset.events if r["user_id"] == "a"] == ["x", "z"]
    a = [r["ts"] for _, r in dataset.events if r["user_id"] == "a"]
    assert a[1] - a[0] == 86_400_000
    assert (dataset.users(), dataset.items()) == (2, 3)
    assert not dataset.timed  # the stamped days say nothing about when things sold


def test_sequence_file_with_attributes(tmp_path: Path) -> None:
    path = tmp_path / "Shop.txt"
    path.write_text("1 10 11 12\n2 11\n")
    (tmp_path / "Shop_item2attributes.json").write_text(json.dumps({"10": [3, 4], "11": [5]}))
    dataset = load(path)
    assert [r["item_id"] for _, r in dataset.events if r["user_id"] == "1"] == ["10", "11", "12"]
    assert "Shop:1:2" in {r["event_id"] for _, r in dataset.events}
    categories = {p["item_id"]: p["category"] for p in dataset.products}
    assert categories == {"10": ["3", "4"], "11": ["5"], "12": []}
    assert not dataset.timed


def test_movielens_directory(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t5\t4\t100\n2\t5\t2\t50\n")
    (tmp_path / "u.genre").write_text("Comedy|0\nDrama|1\n\n")
    (tmp_path / "u.item").write_bytes("5|Amélie (2001)|x||url|0|1\n".encode("latin-1"))
    for source in (tmp_path, tmp_path / "u.data"):
        dataset = load(source)
        assert dataset.name == "ml-100k" and dataset.timed
        assert dataset.split == "leave-one-out"  # the protocol MovieLens figures are given in
        assert [r["ts"] for _, r in dataset.events] == [50_000, 100_000]
        assert [r["event_id"] for _, r in dataset.events] == ["ml-100k:2", "ml-100k:1"]
        (movie,) = dataset.products
        assert (movie["title"], movie["category"], movie["ts"]) == (
            "Amélie (2001)",
            ["Drama"],
            50_000,
        )


def test_online_retail_filters(tmp_path: Path) -> None:
    rows = [
        ("1", "A", "Mug", 2, "2011-01-01 10:00", 1.0, 7.0),
        ("1", "B", "Cup", 1, "2011-01-01 10:00", 2.0, 7.0),
        ("C2", "A", "Mug", -1, "2011-01-02 00:00", 1.0, 7.0),  # cancellation
        ("3", "A", "Mug", 1, "2011-01-03 00:00", 1.0, None),  # no customer
        ("4", "A", "Mug", 0, "2011-01-03 00:00", 1.0, 8.0),  # no quantity
        ("5", "A", "mug", 1, "2011-01-04 00:00", 0.0, 8.0),  # free
        ("6", "A", "big mug", 3, "2010-12-31 00:00", 5.0, 8.0),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "InvoiceNo",
            "StockCode",
            "Description",
            "Quantity",
            "InvoiceDate",
            "UnitPrice",
            "CustomerID",
        ],
    )
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"])
    frame["Country"] = "UK"
    path = tmp_path / "customer_raw.parquet"
    frame.to_parquet(path)
    dataset = load(path)
    assert [r["event_id"] for _, r in dataset.events] == [
        "online_retail:6",
        "online_retail:0",
        "online_retail:1",
    ]
    assert [r["user_id"] for _, r in dataset.events] == ["8", "7", "7"]
    assert dataset.split == "temporal" and dataset.timed  # a shop's invoices, split in time
    mug = next(p for p in dataset.products if p["item_id"] == "A")
    assert (mug["title"], mug["price"], mug["ts"]) == ("Mug", 3.0, dataset.events[0][1]["ts"])


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Toys_and_Games\.txt"):
        load("toys", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"customer_raw\.parquet"):
        load("online_retail", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"u\.data"):
        load("ml-100k", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="known: online_retail"):
        load("no-such-set")
    assert available(tmp_path) == ["synthetic"]


def test_unrecognised_and_bad_limit(tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_text("lonely\n")
    with pytest.raises(ValueError):
        load(path)
    with pytest.raises(ValueError):
        load("synthetic", limit=-1)


def test_to_messages_puts_the_catalog_first(tmp_path: Path) -> None:
    path = tmp_path / "clicks.txt"
    path.write_text("a x\nb y\na z\n")
    dataset = load(path)
    messages = list(to_messages(dataset))
    kinds = [kind for kind, _, _ in messages]
    assert kinds == ["product"] * 3 + ["purchase"] * 3
    for kind, key, record in messages:
        assert key == (record["item_id"] if kind == "product" else record["user_id"])
