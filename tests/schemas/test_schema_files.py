import json
from pathlib import Path
from typing import Any

import pytest

from schemas.codec import SCHEMA_DIR, SCHEMA_NAMES

FIELDS = {
    "Purchase": [
        "event_id", "user_id", "item_id", "quantity", "price", "currency", "ts", "session_id",
    ],
    "Review": ["event_id", "user_id", "item_id", "rating", "text", "ts"],
    "Product": [
        "item_id", "title", "category", "brand", "price", "stock", "margin", "promo", "ts",
    ],
    "Preference": ["event_id", "user_id", "kind", "item_id", "value", "ts"],
    "Recommendation": ["user_id", "items", "model_version", "segment", "cause_event_id", "ts"],
    "SegmentChange": ["user_id", "old", "new", "distance", "model_version", "ts"],
    "DriftAlert": [
        "monitor", "statistic", "value", "threshold", "window", "model_version", "ts",
    ],
    "ModelUpdate": ["name", "version", "uri", "metrics", "ts"],
    "DeadLetter": ["topic", "partition", "offset", "key", "error", "raw", "ts"],
}  # fmt: skip


def _raw(name: str) -> dict[str, Any]:
    files = {json.loads(p.read_text())["name"]: p for p in SCHEMA_DIR.glob("*.avsc")}
    return json.loads(Path(files[name]).read_text())


def _named_types(node: Any) -> list[dict[str, Any]]:
    """Every record and enum definition inside ``node``, ``node`` included."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") in ("record", "enum"):
            found.append(node)
        for value in node.values():
            found.extend(_named_types(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_named_types(item))
    return found


def test_one_file_per_schema_name() -> None:
    names = sorted(json.loads(p.read_text())["name"] for p in SCHEMA_DIR.glob("*.avsc"))
    assert names == sorted(SCHEMA_NAMES)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_record_fields_and_namespace(name: str) -> None:
    raw = _raw(name)
    assert raw["namespace"] == "reco"
    assert [f["name"] for f in raw["fields"]] == FIELDS[name]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_type_and_field_has_a_doc(name: str) -> None:
    for named in _named_types(_raw(name)):
        assert named.get("doc", "").strip(), f"{named['name']} has no doc"
        for field in named.get("fields", []):
            assert field.get("doc", "").strip(), f"{named['name']}.{field['name']} has no doc"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_ts_is_timestamp_millis(name: str) -> None:
    (ts,) = [f for f in _raw(name)["fields"] if f["name"] == "ts"]
    assert ts["type"] == {"type": "long", "logicalType": "timestamp-millis"}


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_optional_fields_default_to_null(name: str) -> None:
    for field in _raw(name)["fields"]:
        if isinstance(field["type"], list) and "null" in field["type"]:
            assert field["type"][0] == "null"
            assert "default" in field and field["default"] is None, field["name"]


def test_preference_kinds() -> None:
    (kind,) = [f for f in _raw("Preference")["fields"] if f["name"] == "kind"]
    assert kind["type"]["name"] == "PreferenceKind"
    assert kind["type"]["symbols"] == [
        "wishlist_add", "wishlist_remove", "subscribe", "unsubscribe",
        "consent_given", "consent_withdrawn", "erase",
    ]  # fmt: skip


def test_product_category_defaults_to_empty_list() -> None:
    (category,) = [f for f in _raw("Product")["fields"] if f["name"] == "category"]
    assert category["type"] == {"type": "array", "items": "string"}
    assert category["default"] == []
