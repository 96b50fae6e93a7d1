"""UCI Online Retail invoices as Purchase events with a derived product catalog."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.datasets.base import Dataset, Event
from models.datasets.records import Record, product, purchase

NAME = "online_retail"
COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
CURRENCY = "GBP"


def load_online_retail(path: Path, name: str = NAME) -> Dataset:
    """Load invoice lines from ``customer_raw.parquet``.

    Keeps lines with a customer, a positive quantity and price, and not on a
    cancellation invoice (``InvoiceNo`` starting with "C"). The event id is built from
    the raw row position, so ids stay stable if the filter rules change. InvoiceDate
    carries no zone; it is read as UTC.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{name}: expected the invoice parquet file at {path}")
    raw = pd.read_parquet(path).reset_index(drop=True)
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path} is not Online Retail data: columns {missing} missing")

    invoice = raw["InvoiceNo"].astype(str)
    keep = (
        raw["CustomerID"].notna()
        & ~invoice.str.startswith("C")
        & (raw["Quantity"] > 0)
        & (raw["UnitPrice"] > 0)
    )
    rows = raw.loc[keep].copy()
    rows["row"] = rows.index
    rows["ts"] = (rows["InvoiceDate"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1)
    rows["user_id"] = rows["CustomerID"].astype("int64").astype(str)
    rows["InvoiceNo"] = rows["InvoiceNo"].astype(str)
    rows["StockCode"] = rows["StockCode"].astype(str)
    rows = rows.sort_values(["ts", "row"], kind="stable")

    events: list[Event] = [
        (
            "purchase",
            purchase(
                f"{name}:{row}",
                user_id,
                item_id,
                ts,
                quantity=quantity,
                price=price,
                currency=CURRENCY,
                session_id=invoice_no,
            ),
        )
        for row, user_id, item_id, ts, quantity, price, invoice_no in zip(
            rows["row"].tolist(),
            rows["user_id"].tolist(),
            rows["StockCode"].tolist(),
            rows["ts"].tolist(),
            rows["Quantity"].tolist(),
            rows["UnitPrice"].tolist(),
            rows["InvoiceNo"].tolist(),
            strict=True,
        )
    ]
    return Dataset(
        name=name, products=_products(rows), events=events, source=str(path), split="temporal"
    )


def _products(rows: pd.DataFrame) -> list[Record]:
    """One product per StockCode: its most frequent description and median unit price.

    The data has no category, brand or stock, so those stay empty. Description ties go
    to the alphabetically first text, which keeps titles stable across runs.
    """
    per_item = rows.groupby("StockCode", sort=False).agg(
        ts=("ts", "min"), price=("UnitPrice", "median")
    )
    counts = (
        rows.dropna(subset=["Description"])
        .groupby(["StockCode", "Description"], sort=False)
        .size()
        .reset_index(name="n")
        .sort_values(["StockCode", "n", "Description"], ascending=[True, False, True])
        .drop_duplicates("StockCode")
        .set_index("StockCode")["Description"]
    )
    per_item["title"] = counts.reindex(per_item.index)
    per_item = per_item.sort_values("ts", kind="stable")
    return [
        product(
            item_id,
            ts,
            title=None if pd.isna(title) else str(title).strip(),
            price=float(price),
        )
        for item_id, ts, price, title in zip(
            per_item.index.tolist(),
            per_item["ts"].tolist(),
            per_item["price"].tolist(),
            per_item["title"].tolist(),
            strict=True,
        )
    ]
