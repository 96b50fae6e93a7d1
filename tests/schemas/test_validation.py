import doctest
import math
from typing import Any

import pytest

import schemas.codec
import schemas.errors
import schemas.validation
from schemas.codec import SCHEMA_NAMES
from schemas.errors import InvalidEventError, RecommenderError, SchemaError
from schemas.validation import validate
from tests.schemas import SAMPLES, TS

NOW = TS + 1_000
DAY = 86_400_000


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_samples_are_valid(name: str) -> None:
    validate(name, SAMPLES[name], now_ms=NOW)


@pytest.mark.parametrize(
    "name, changes",
    [
        ("Purchase", {"price": None, "currency": None, "session_id": None}),
        ("Purchase", {"price": 0.0, "quantity": 1}),
        ("Purchase", {"user_id": "u" * 256}),
        ("Purchase", {"user_id": "  u  "}),
        ("Purchase", {"ts": 0}),
        ("Purchase", {"ts": NOW + DAY}),
        ("Review", {"rating": None}),
        ("Review", {"rating": 0.0}),
        ("Review", {"rating": 5.0}),
        ("Product", {"price": None, "margin": -0.1, "promo": None, "stock": None}),
        ("Product", {"stock": 0, "category": []}),
        ("Preference", {"kind": "erase", "item_id": None}),
        ("Recommendation", {"items": []}),
    ],
)
def test_good_edge_cases_pass(name: str, changes: dict[str, Any]) -> None:
    validate(name, {**SAMPLES[name], **changes}, now_ms=NOW)


@pytest.mark.parametrize(
    "name, changes, reason",
    [
        ("Purchase", {"user_id": ""}, "user_id must not be empty"),
        ("Purchase", {"user_id": " \t\n"}, "user_id must not be empty"),
        ("Purchase", {"item_id": ""}, "item_id must not be empty"),
        ("Purchase", {"event_id": "   "}, "event_id must not be empty"),
        ("Purchase", {"user_id": "u" * 257}, "user_id must be at most 256 chars (got 257)"),
        ("Purchase", {"item_id": "i" * 300}, "item_id must be at most 256 chars (got 300)"),
        ("Purchase", {"event_id": "e" * 1000}, "event_id must be at most 256 chars"),
        ("Purchase", {"user_id": None}, "user_id is missing"),
        ("Purchase", {"user_id": 42}, "user_id must be a string (got int)"),
        ("Purchase", {"quantity": 0}, "quantity must be > 0 (got 0)"),
        ("Purchase", {"quantity": -3}, "quantity must be > 0 (got -3)"),
        ("Purchase", {"price": math.nan}, "price must be finite (got nan)"),
        ("Purchase", {"price": math.inf}, "price must be finite (got inf)"),
        ("Purchase", {"price": -math.inf}, "price must be finite (got -inf)"),
        ("Purchase", {"price": -0.01}, "price must be >= 0 (got -0.01)"),
        ("Purchase", {"ts": -1}, "ts must be >= 0 (got -1)"),
        ("Purchase", {"ts": NOW + DAY + 1}, "ts must be at most 86400000 ms in the future"),
        ("Review", {"rating": -0.5}, "rating must be in [0, 5] (got -0.5)"),
        ("Review", {"rating": 5.5}, "rating must be in [0, 5] (got 5.5)"),
        ("Review", {"rating": math.nan}, "rating must be in [0, 5] (got nan)"),
        ("Review", {"user_id": ""}, "user_id must not be empty"),
        ("Review", {"ts": -5}, "ts must be >= 0"),
        ("Product", {"item_id": " "}, "item_id must not be empty"),
        ("Product", {"price": math.nan}, "price must be finite"),
        ("Product", {"price": math.inf}, "price must be finite"),
        ("Product", {"price": -1.0}, "price must be >= 0"),
        ("Product", {"margin": math.nan}, "margin must be finite (got nan)"),
        ("Product", {"margin": -math.inf}, "margin must be finite"),
        ("Product", {"promo": math.inf}, "promo must be finite (got inf)"),
        ("Product", {"stock": -1}, "stock must be >= 0 (got -1)"),
        ("Preference", {"item_id": ""}, "item_id must not be empty"),
        ("Preference", {"event_id": ""}, "event_id must not be empty"),
        ("Recommendation", {"user_id": ""}, "user_id must not be empty"),
        (
            "Recommendation",
            {"items": [{"item_id": "", "score": 1.0, "reason": "r"}]},
            "items.item_id must not be empty",
        ),
        (
            "Recommendation",
            {"items": [{"item_id": "i", "score": math.nan, "reason": "r"}]},
            "items.score must be finite",
        ),
        ("SegmentChange", {"user_id": ""}, "user_id must not be empty"),
        ("DeadLetter", {"ts": NOW + 2 * DAY}, "ts must be at most"),
    ],
)
def test_bad_events_are_rejected(name: str, changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        validate(name, {**SAMPLES[name], **changes}, now_ms=NOW)
    assert info.value.reason.startswith(reason)
    assert str(info.value) == info.value.reason
    assert isinstance(info.value, RecommenderError)


def test_max_future_is_configurable() -> None:
    record = {**SAMPLES["Purchase"], "ts": NOW + 10}
    validate("Purchase", record, now_ms=NOW, max_future_ms=10)
    with pytest.raises(InvalidEventError, match="ts must be at most 9 ms"):
        validate("Purchase", record, now_ms=NOW, max_future_ms=9)


def test_unknown_schema_name() -> None:
    with pytest.raises(SchemaError):
        validate("Order", {}, now_ms=NOW)


@pytest.mark.parametrize("module", [schemas.codec, schemas.errors, schemas.validation])
def test_doctests(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    ("kind", "item_id", "value", "reason"),
    [
        ("wishlist_add", None, None, "wishlist_add needs an item_id"),
        ("wishlist_remove", None, None, "wishlist_remove needs an item_id"),
        ("subscribe", None, None, "value is missing"),
        ("unsubscribe", None, "  ", "value must not be empty"),
    ],
)
def test_preference_needs_its_subject(
    kind: str, item_id: str | None, value: str | None, reason: str
) -> None:
    record = {
        "event_id": "e",
        "user_id": "u",
        "kind": kind,
        "item_id": item_id,
        "value": value,
        "ts": 0,
    }
    with pytest.raises(InvalidEventError, match=reason):
        validate("Preference", record, now_ms=0)


def test_preference_with_its_subject_is_valid() -> None:
    validate(
        "Preference",
        {
            "event_id": "e",
            "user_id": "u",
            "kind": "subscribe",
            "item_id": None,
            "value": "news",
            "ts": 0,
        },
        now_ms=0,
    )
    validate(
        "Preference",
        {"event_id": "e", "user_id": "u", "kind": "erase", "item_id": None, "value": None, "ts": 0},
        now_ms=0,
    )
