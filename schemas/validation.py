"""Domain rules an Avro schema cannot express: non-blank ids, positive quantities, sane ts.

``validate`` runs on records that already decoded (or would encode), so types are
Avro's; it checks values only and raises ``InvalidEventError`` with a short,
stable reason fit for a dead-letter record or a metric label.

>>> rec = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "quantity": -3,
...        "price": 9.5, "currency": None, "ts": 1_000, "session_id": None}
>>> validate("Purchase", rec, now_ms=2_000)
Traceback (most recent call last):
...
schemas.errors.InvalidEventError: quantity must be > 0 (got -3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from schemas.codec import SCHEMA_NAMES
from schemas.errors import InvalidEventError, SchemaError

__all__ = ["DEFAULT_MAX_FUTURE_MS", "MAX_ID_LENGTH", "check_id", "validate"]

MAX_ID_LENGTH = 256
DEFAULT_MAX_FUTURE_MS = 86_400_000

# Id fields each record must carry (non-blank), and those that may be null.
_REQUIRED_IDS: dict[str, tuple[str, ...]] = {
    "Purchase": ("event_id", "user_id", "item_id"),
    "Review": ("event_id", "user_id", "item_id"),
    "Product": ("item_id",),
    "Preference": ("event_id", "user_id"),
    "Recommendation": ("user_id",),
    "SegmentChange": ("user_id",),
}
_OPTIONAL_IDS: dict[str, tuple[str, ...]] = {"Preference": ("item_id",)}
# What a preference is about: an item for wishlist changes, a name for subscriptions.
_NEEDS_ITEM = frozenset({"wishlist_add", "wishlist_remove"})
_NEEDS_VALUE = frozenset({"subscribe", "unsubscribe"})


def check_id(field: str, value: Any) -> None:
    """Raise unless ``value`` is a non-blank string of at most 256 characters.

    Surrounding whitespace does not count, so an all-blank id is empty.

    >>> check_id("user_id", "u-42")
    >>> check_id("user_id", "   ")
    Traceback (most recent call last):
    ...
    schemas.errors.InvalidEventError: user_id must not be empty
    """
    if value is None:
        raise InvalidEventError(f"{field} is missing")
    if not isinstance(value, str):
        raise InvalidEventError(f"{field} must be a string (got {type(value).__name__})")
    length = len(value.strip())
    if length == 0:
        raise InvalidEventError(f"{field} must not be empty")
    if length > MAX_ID_LENGTH:
        raise InvalidEventError(f"{field} must be at most {MAX_ID_LENGTH} chars (got {length})")


def _check_finite(field: str, value: Any) -> None:
    if value is not None and not math.isfinite(value):
        raise InvalidEventError(f"{field} must be finite (got {value})")


def _check_price(value: Any) -> None:
    _check_finite("price", value)
    if value is not None and value < 0:
        raise InvalidEventError(f"price must be >= 0 (got {value})")


def _check_ts(value: Any, now_ms: int, max_future_ms: int) -> None:
    if value is None:
        raise InvalidEventError("ts is missing")
    if value < 0:
        raise InvalidEventError(f"ts must be >= 0 (got {value})")
    if value > now_ms + max_future_ms:
        raise InvalidEventError(
            f"ts must be at most {max_future_ms} ms in the future (got {value}, now {now_ms})"
        )


def validate(
    name: str,
    record: Mapping[str, Any],
    now_ms: int,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
) -> None:
    """Raise ``InvalidEventError`` if record ``name`` breaks a domain rule.

    ``now_ms`` is the caller's clock in epoch milliseconds; a ``ts`` more than
    ``max_future_ms`` ahead of it is rejected (clock skew is tolerated up to that).

    >>> validate("Review", {"event_id": "e", "user_id": "u", "item_id": "i",
    ...                     "rating": 4.5, "text": None, "ts": 0}, now_ms=0)
    >>> validate("Review", {"event_id": "e", "user_id": "u", "item_id": "i",
    ...                     "rating": 6.0, "text": None, "ts": 0}, now_ms=0)
    Traceback (most recent call last):
    ...
    schemas.errors.InvalidEventError: rating must be in [0, 5] (got 6.0)
    """
    if name not in SCHEMA_NAMES:
        raise SchemaError(f"unknown schema {name!r}; expected one of {', '.join(SCHEMA_NAMES)}")
    for field in _REQUIRED_IDS.get(name, ()):
        check_id(field, record.get(field))
    for field in _OPTIONAL_IDS.get(name, ()):
        if record.get(field) is not None:
            check_id(field, record[field])

    if name == "Purchase":
        quantity = record.get("quantity")
        if quantity is None or quantity <= 0:
            raise InvalidEventError(f"quantity must be > 0 (got {quantity})")
        _check_price(record.get("price"))
    elif name == "Review":
        rating = record.get("rating")
        # Written as a negated range test so that NaN fails it too.
        if rating is not None and not 0 <= rating <= 5:
            raise InvalidEventError(f"rating must be in [0, 5] (got {rating})")
    elif name == "Product":
        _check_price(record.get("price"))
        _check_finite("margin", record.get("margin"))
        _check_finite("promo", record.get("promo"))
        stock = record.get("stock")
        if stock is not None and stock < 0:
            raise InvalidEventError(f"stock must be >= 0 (got {stock})")
    elif name == "Preference":
        kind = record.get("kind")
        if kind in _NEEDS_ITEM and record.get("item_id") is None:
            raise InvalidEventError(f"{kind} needs an item_id")
        if kind in _NEEDS_VALUE:
            check_id("value", record.get("value"))
    elif name == "Recommendation":
        for item in record.get("items") or ():
            check_id("items.item_id", item.get("item_id"))
            _check_finite("items.score", item.get("score"))

    _check_ts(record.get("ts"), now_ms, max_future_ms)
