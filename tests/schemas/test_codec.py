import random
from pathlib import Path
from typing import Any

import pytest

from schemas.codec import DEFAULT_SCHEMA_IDS, SCHEMA_DIR, SCHEMA_NAMES, Codec, load_schema
from schemas.errors import ConfigError, RecommenderError, SchemaError
from tests.schemas import SAMPLES

WIRE_FORMATS = ("avro", "confluent")


def _with_defaults(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as decode returns it: every optional field present."""
    full = dict(record)
    for field in load_schema(name)["fields"]:
        full.setdefault(field["name"], field.get("default"))
    return full


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_round_trip(name: str, wire_format: Any) -> None:
    codec = Codec(wire_format)
    record = SAMPLES[name]
    assert codec.decode(name, codec.encode(name, record)) == record


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_ts_stays_int_milliseconds(wire_format: Any) -> None:
    codec = Codec(wire_format)
    decoded = codec.decode("Purchase", codec.encode("Purchase", SAMPLES["Purchase"]))
    assert type(decoded["ts"]) is int
    assert decoded["ts"] == SAMPLES["Purchase"]["ts"]


def test_optional_fields_may_be_left_out() -> None:
    codec = Codec()
    sparse = {"item_id": "i-9", "ts": 5}
    assert codec.decode("Product", codec.encode("Product", sparse)) == _with_defaults(
        "Product", sparse
    )


def test_confluent_header_then_avro_body() -> None:
    record = SAMPLES["Review"]
    body = Codec("avro").encode("Review", record)
    framed = Codec("confluent").encode("Review", record)
    assert framed[0] == 0
    assert int.from_bytes(framed[1:5], "big") == DEFAULT_SCHEMA_IDS["Review"] == 2
    assert framed[5:] == body


def test_default_ids_follow_schema_names_order() -> None:
    assert [DEFAULT_SCHEMA_IDS[n] for n in SCHEMA_NAMES] == list(range(1, 10))


def test_schema_ids_override() -> None:
    codec = Codec("confluent", schema_ids={"Purchase": 1001})
    data = codec.encode("Purchase", SAMPLES["Purchase"])
    assert int.from_bytes(data[1:5], "big") == 1001 == codec.schema_id("Purchase")
    assert codec.schema_id("Review") == 2
    assert codec.decode("Purchase", data) == SAMPLES["Purchase"]
    with pytest.raises(SchemaError, match="schema id 1 is unknown"):
        codec.decode("Purchase", Codec("confluent").encode("Purchase", SAMPLES["Purchase"]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"wire_format": "json"},
        {"schema_ids": {"Nope": 3}},
        {"schema_ids": {"Purchase": 2}},  # collides with Review's default
        {"schema_ids": {"Purchase": -1}},
        {"schema_ids": {"Purchase": 2**32}},
    ],
)
def test_bad_codec_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Codec(**kwargs)


def test_encode_rejects_missing_field() -> None:
    record = dict(SAMPLES["Purchase"])
    del record["user_id"]
    with pytest.raises(SchemaError, match=r"missing field.*user_id"):
        Codec().encode("Purchase", record)


def test_encode_rejects_wrong_type() -> None:
    record = {**SAMPLES["Purchase"], "quantity": "two"}
    with pytest.raises(SchemaError, match="quantity"):
        Codec().encode("Purchase", record)


@pytest.mark.parametrize(
    "name, bad",
    [
        ("Preference", {"kind": "like"}),
        ("Recommendation", {"items": [{"item_id": "i", "score": "high", "reason": "r"}]}),
        ("ModelUpdate", {"metrics": {"hit@10": "good"}}),
        ("Purchase", {"quantity": 2**31}),
        ("DeadLetter", {"raw": "not bytes"}),
    ],
)
def test_encode_rejects_values_outside_the_schema(name: str, bad: dict[str, Any]) -> None:
    with pytest.raises(SchemaError, match=f"cannot encode {name}"):
        Codec().encode(name, {**SAMPLES[name], **bad})


def test_encode_rejects_non_mapping() -> None:
    with pytest.raises(SchemaError, match="expected a mapping"):
        Codec().encode("Purchase", ["e", "u"])  # type: ignore[arg-type]


def test_unknown_schema_name() -> None:
    codec = Codec()
    with pytest.raises(SchemaError, match="unknown schema"):
        codec.encode("Order", {})
    with pytest.raises(SchemaError, match="unknown schema"):
        codec.decode("Order", b"")
    with pytest.raises(SchemaError, match="unknown schema"):
        load_schema("Order")


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_decode_rejects_random_bytes(wire_format: Any) -> None:
    codec = Codec(wire_format)
    rng = random.Random(7)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        if wire_format == "confluent":
            data = codec.encode("Purchase", SAMPLES["Purchase"])[:5] + data
        try:
            codec.decode("Purchase", data)
        except SchemaError:
            continue
        pytest.fail(f"decoded random bytes {data!r}")


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
@pytest.mark.parametrize("name", ["Purchase", "Recommendation", "DeadLetter"])
def test_decode_rejects_every_truncation(name: str, wire_format: Any) -> None:
    codec = Codec(wire_format)
    data = codec.encode(name, SAMPLES[name])
    for cut in range(len(data)):
        with pytest.raises(SchemaError):
            codec.decode(name, data[:cut])


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_decode_rejects_trailing_bytes(wire_format: Any) -> None:
    codec = Codec(wire_format)
    data = codec.encode("Purchase", SAMPLES["Purchase"]) + b"\x00"
    with pytest.raises(SchemaError, match="trailing"):
        codec.decode("Purchase", data)


def test_review_body_is_not_a_purchase() -> None:
    codec = Codec("avro")
    with pytest.raises(SchemaError):
        codec.decode("Purchase", codec.encode("Review", SAMPLES["Review"]))


def test_confluent_bad_magic_byte() -> None:
    codec = Codec("confluent")
    data = bytearray(codec.encode("Purchase", SAMPLES["Purchase"]))
    data[0] = 1
    with pytest.raises(SchemaError, match="magic byte"):
        codec.decode("Purchase", bytes(data))


def test_confluent_schema_id_of_another_record() -> None:
    codec = Codec("confluent")
    with pytest.raises(SchemaError, match="schema id 2 is Review's"):
        codec.decode("Purchase", codec.encode("Review", SAMPLES["Review"]))


def test_confluent_unknown_schema_id() -> None:
    codec = Codec("confluent")
    data = codec.encode("Purchase", SAMPLES["Purchase"])
    with pytest.raises(SchemaError, match="schema id 99 is unknown"):
        codec.decode("Purchase", data[:1] + (99).to_bytes(4, "big") + data[5:])


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(SchemaError, match="expected bytes"):
        Codec().decode("Purchase", "text")  # type: ignore[arg-type]


def test_decode_accepts_bytearray_and_memoryview() -> None:
    codec = Codec()
    data = codec.encode("Purchase", SAMPLES["Purchase"])
    assert codec.decode("Purchase", bytearray(data)) == SAMPLES["Purchase"]
    assert codec.decode("Purchase", memoryview(data)) == SAMPLES["Purchase"]


def test_schema_errors_share_the_root() -> None:
    assert issubclass(SchemaError, RecommenderError)
    assert issubclass(ConfigError, RecommenderError)


def test_load_schema_parses_each_file_once() -> None:
    assert load_schema("Purchase") is load_schema("Purchase")
    assert load_schema("Purchase", SCHEMA_DIR) is load_schema("Purchase")
    assert load_schema("Purchase", SCHEMA_DIR / "purchase.avsc") is load_schema("Purchase")


def test_load_schema_from_another_directory(tmp_path: Path) -> None:
    (tmp_path / "purchase.avsc").write_text((SCHEMA_DIR / "purchase.avsc").read_text())
    assert load_schema("Purchase", tmp_path)["name"] == "reco.Purchase"


def test_load_schema_missing_or_mismatched_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read"):
        load_schema("Purchase", tmp_path)
    (tmp_path / "purchase.avsc").write_text((SCHEMA_DIR / "review.avsc").read_text())
    with pytest.raises(SchemaError, match="does not define record Purchase"):
        load_schema("Purchase", tmp_path)
