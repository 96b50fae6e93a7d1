"""Event records shaped exactly like the Avro Purchase, Review and Product contracts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

Record = dict[str, Any]

PURCHASE_FIELDS = (
    "event_id",
    "user_id",
    "item_id",
    "quantity",
    "price",
    "currency",
    "ts",
    "session_id",
)
REVIEW_FIELDS = ("event_id", "user_id", "item_id", "rating", "text", "ts")
PRODUCT_FIELDS = (
    "item_id",
    "title",
    "category",
    "brand",
    "price",
    "stock",
    "margin",
    "promo",
    "ts",
)


def epoch_ms(year: int, month: int, day: int) -> int:
    """Midnight UTC of a calendar day, in epoch milliseconds.

    >>> epoch_ms(2020, 1, 1)
    1577836800000
    """
    return int(datetime(year, month, day, tzinfo=UTC).timestamp()) * 1000


def purchase(
    event_id: str,
    user_id: str,
    item_id: str,
    ts: int,
    quantity: int = 1,
    price: float | None = None,
    currency: str | None = None,
    session_id: str | None = None,
) -> Record:
    return {
        "event_id": event_id,
        "user_id": user_id,
        "item_id": item_id,
        "quantity": quantity,
        "price": price,
        "currency": currency,
        "ts": ts,
        "session_id": session_id,
    }


def review(
    event_id: str,
    user_id: str,
    item_id: str,
    ts: int,
    rating: float | None = None,
    text: str | None = None,
) -> Record:
    return {
        "event_id": event_id,
        "user_id": user_id,
        "item_id": item_id,
        "rating": rating,
        "text": text,
        "ts": ts,
    }


def product(
    item_id: str,
    ts: int,
    title: str | None = None,
    category: Sequence[str] = (),
    brand: str | None = None,
    price: float | None = None,
    stock: int | None = None,
    margin: float | None = None,
    promo: float | None = None,
) -> Record:
    return {
        "item_id": item_id,
        "title": title,
        "category": list(category),
        "brand": brand,
        "price": price,
        "stock": stock,
        "margin": margin,
        "promo": promo,
        "ts": ts,
    }
