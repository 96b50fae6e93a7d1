import json
from typing import Any, cast

import pytest
from fastavro import parse_schema

from schemas.codec import SCHEMA_DIR, Codec
from schemas.errors import SchemaError
from tests.schemas import SAMPLES

WIRE_FORMATS = ("avro", "confluent")


def _purchase_json() -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / "purchase.avsc").read_text())


def _purchase_v2() -> dict[str, Any]:
    """Purchase plus an optional ``channel``: a backward-compatible change."""
    schema = _purchase_json()
    schema["fields"].append(
        {
            "name": "channel",
            "type": ["null", "string"],
            "default": None,
            "doc": "Sales channel, e.g. web or app.",
        }
    )
    return schema


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_new_reader_reads_old_records(wire_format: Any) -> None:
    codec = Codec(wire_format)
    data = codec.encode("Purchase", SAMPLES["Purchase"])
    decoded = codec.decode("Purchase", data, reader_schema=_purchase_v2())
    assert decoded == {**SAMPLES["Purchase"], "channel": None}
    assert type(decoded["ts"]) is int


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_parsed_reader_schema_is_accepted(wire_format: Any) -> None:
    codec = Codec(wire_format)
    reader = cast(dict[str, Any], parse_schema(_purchase_v2()))
    data = codec.encode("Purchase", SAMPLES["Purchase"])
    for _ in range(3):  # the parsed copy is cached per schema object
        assert codec.decode("Purchase", data, reader_schema=reader)["channel"] is None


def test_reader_dropping_a_field_ignores_it() -> None:
    reader = _purchase_json()
    reader["fields"] = [f for f in reader["fields"] if f["name"] != "session_id"]
    codec = Codec()
    decoded = codec.decode("Purchase", codec.encode("Purchase", SAMPLES["Purchase"]), reader)
    assert "session_id" not in decoded
    assert decoded["quantity"] == SAMPLES["Purchase"]["quantity"]


def test_incompatible_reader_is_a_schema_error() -> None:
    reader = _purchase_json()
    reader["fields"].append({"name": "channel", "type": "string", "doc": "required, no default"})
    codec = Codec()
    with pytest.raises(SchemaError):
        codec.decode("Purchase", codec.encode("Purchase", SAMPLES["Purchase"]), reader)


def test_invalid_reader_schema_is_a_schema_error() -> None:
    codec = Codec()
    with pytest.raises(SchemaError, match="invalid reader schema"):
        codec.decode(
            "Purchase", codec.encode("Purchase", SAMPLES["Purchase"]), {"type": "nonsense"}
        )
