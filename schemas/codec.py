"""Avro encoding and decoding of the event records, plain or in Confluent wire format.

Every schema is parsed once per process; ``Codec.encode``/``Codec.decode`` only look
parsed schemas up, because they run once per event on the workers' hot path.

>>> codec = Codec()
>>> event = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "quantity": 2,
...          "price": 9.5, "currency": "EUR", "ts": 1_700_000_000_000, "session_id": None}
>>> codec.decode("Purchase", codec.encode("Purchase", event)) == event
True
"""

from __future__ import annotations

import functools
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError
from fastavro.validation import validate as avro_validate

from schemas.errors import ConfigError, SchemaError

__all__ = ["DEFAULT_SCHEMA_IDS", "SCHEMA_DIR", "SCHEMA_NAMES", "Codec", "WireFormat", "load_schema"]

WireFormat = Literal["avro", "confluent"]

SCHEMA_DIR = Path(__file__).resolve().parent

SCHEMA_NAMES: tuple[str, ...] = (
    "Purchase",
    "Review",
    "Product",
    "Preference",
    "Recommendation",
    "SegmentChange",
    "DriftAlert",
    "ModelUpdate",
    "DeadLetter",
)

_FILE_STEMS: dict[str, str] = {
    "Purchase": "purchase",
    "Review": "review",
    "Product": "product",
    "Preference": "preference",
    "Recommendation": "recommendation",
    "SegmentChange": "segment_change",
    "DriftAlert": "drift_alert",
    "ModelUpdate": "model_update",
    "DeadLetter": "dead_letter",
}

# Fixed so that producers and consumers started without a schema registry agree.
DEFAULT_SCHEMA_IDS: Mapping[str, int] = {name: i for i, name in enumerate(SCHEMA_NAMES, 1)}

_MAGIC = b"\x00"
_HEADER_LEN = 5
# fastavro turns these into datetime objects on read; the project passes int ms.
_TIMESTAMP_TYPES = frozenset(
    {"timestamp-millis", "timestamp-micros", "local-timestamp-millis", "local-timestamp-micros"}
)
_READER_CACHE_MAX = 64


def _unknown(name: str) -> SchemaError:
    return SchemaError(f"unknown schema {name!r}; expected one of {', '.join(SCHEMA_NAMES)}")


def _check_name(name: str) -> str:
    if name not in _FILE_STEMS:
        raise _unknown(name)
    return _FILE_STEMS[name]


def _schema_file(name: str, path: str | os.PathLike[str] | None) -> Path:
    stem = _check_name(name)
    if path is None:
        return SCHEMA_DIR / f"{stem}.avsc"
    p = Path(path).resolve()
    return p / f"{stem}.avsc" if p.is_dir() else p


@functools.cache
def _raw_schema(name: str, file: Path) -> dict[str, Any]:
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read schema {name} from {file}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("name") not in (name, f"reco.{name}"):
        raise SchemaError(f"{file} does not define record {name}")
    return raw


@functools.cache
def _parsed(name: str, file: Path, strip_timestamps: bool) -> dict[str, Any]:
    raw = _raw_schema(name, file)
    try:
        schema = parse_schema(_strip_timestamps(raw) if strip_timestamps else raw)
    except Exception as exc:
        raise SchemaError(f"invalid schema {name} in {file}: {exc}") from exc
    return cast(dict[str, Any], schema)


def load_schema(name: str, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the parsed Avro schema of record ``name`` (one of ``SCHEMA_NAMES``).

    ``path`` is a directory holding the ``.avsc`` files or one ``.avsc`` file; by
    default the files shipped with this package. Each file is parsed once per
    process and the same dict is returned every time: do not mutate it.

    >>> load_schema("Purchase")["name"]
    'reco.Purchase'
    """
    return _parsed(name, _schema_file(name, path), False)


def _strip_timestamps(node: Any) -> Any:
    """Copy a schema without timestamp logical types and fastavro's parse markers.

    Reading through the stripped copy keeps ``ts`` an int of milliseconds; the
    markers must go so that fastavro re-parses the copy instead of trusting it.

    >>> _strip_timestamps({"type": "long", "logicalType": "timestamp-millis"})
    {'type': 'long'}
    """
    if isinstance(node, dict):
        return {
            key: _strip_timestamps(value)
            for key, value in node.items()
            if not (key == "logicalType" and value in _TIMESTAMP_TYPES)
            and key not in ("__fastavro_parsed", "__named_schemas")
        }
    if isinstance(node, list):
        return [_strip_timestamps(item) for item in node]
    return node


def _explain(schema: dict[str, Any], record: Any) -> str:
    """A readable reason why ``record`` does not fit ``schema``."""
    if not isinstance(record, Mapping):
        return f"expected a mapping, got {type(record).__name__}"
    missing = [
        f["name"] for f in schema["fields"] if f["name"] not in record and "default" not in f
    ]
    if missing:
        return f"missing field(s): {', '.join(missing)}"
    try:
        avro_validate(record, schema, raise_errors=True)
    except ValidationError as exc:
        return "; ".join(str(err) for err in exc.errors)
    return "record does not match the schema"


class Codec:
    """Encode and decode the project's records as Avro.

    ``wire_format="avro"`` writes the bare Avro body; ``"confluent"`` prefixes it
    with the magic byte 0 and a 4-byte big-endian schema id, as Confluent's
    serializers do. Ids default to ``DEFAULT_SCHEMA_IDS``; ``schema_ids`` overrides
    some or all of them (e.g. the ids a schema registry assigned).
    """

    __slots__ = ("_headers", "_names_by_id", "_readers", "_schema_ids", "_writers", "wire_format")

    def __init__(
        self,
        wire_format: WireFormat = "avro",
        schema_ids: Mapping[str, int] | None = None,
    ) -> None:
        if wire_format not in ("avro", "confluent"):
            raise ConfigError(f"wire_format must be 'avro' or 'confluent' (got {wire_format!r})")
        self.wire_format: WireFormat = wire_format
        ids = dict(DEFAULT_SCHEMA_IDS)
        for name, schema_id in (schema_ids or {}).items():
            if name not in ids:
                raise ConfigError(f"schema_ids names unknown schema {name!r}")
            if not isinstance(schema_id, int) or not 0 <= schema_id < 2**32:
                raise ConfigError(
                    f"schema id of {name} must be an int in [0, 2**32) (got {schema_id!r})"
                )
            ids[name] = schema_id
        by_id: dict[int, str] = {}
        for name, schema_id in ids.items():
            if schema_id in by_id:
                raise ConfigError(
                    f"schema id {schema_id} given to both {by_id[schema_id]} and {name}"
                )
            by_id[schema_id] = name
        self._schema_ids: dict[str, int] = ids
        self._names_by_id = by_id
        self._headers = {name: _MAGIC + i.to_bytes(4, "big") for name, i in ids.items()}
        self._writers = {name: load_schema(name) for name in SCHEMA_NAMES}
        self._readers = {
            name: _parsed(name, _schema_file(name, None), True) for name in SCHEMA_NAMES
        }

    def schema_id(self, name: str) -> int:
        """The id written in the Confluent header of record ``name``."""
        _check_name(name)
        return self._schema_ids[name]

    def encode(self, name: str, record: Mapping[str, Any], *, validate: bool = True) -> bytes:
        """Validate ``record`` against schema ``name`` and return its encoded bytes.

        ``ts`` fields take int epoch milliseconds. Raises ``SchemaError`` saying
        which field is missing or mistyped. ``validate=False`` skips the up-front
        check (half the cost of a nested record) for records a worker builds itself;
        the writer still fails on a value it cannot encode, with a terser message.
        """
        try:
            schema = self._writers[name]
        except KeyError:
            raise _unknown(name) from None
        if validate and not avro_validate(record, schema, raise_errors=False):
            raise SchemaError(f"cannot encode {name}: {_explain(schema, record)}")
        buf = io.BytesIO()
        if self.wire_format == "confluent":
            buf.write(self._headers[name])
        try:
            schemaless_writer(buf, schema, record)
        except Exception as exc:
            raise SchemaError(f"cannot encode {name}: {exc}") from exc
        return buf.getvalue()

    def decode(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        reader_schema: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Decode bytes written as record ``name``; ``ts`` fields come back as int ms.

        ``reader_schema`` (raw or parsed) is a newer or older version of the record
        to resolve into, per Avro schema resolution. Raises ``SchemaError`` on
        truncated data, bytes left over after the record (usually the wrong
        schema), a bad magic byte or a schema id that is not ``name``'s.
        """
        try:
            writer = self._readers[name]
        except KeyError:
            raise _unknown(name) from None
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SchemaError(f"cannot decode {name}: expected bytes, got {type(data).__name__}")
        start = 0
        if self.wire_format == "confluent":
            start = self._check_header(name, data)
        reader = None if reader_schema is None else _reader_for(reader_schema)
        fo = io.BytesIO(data)
        fo.seek(start)
        try:
            record = schemaless_reader(fo, writer, reader)
        except EOFError as exc:
            raise SchemaError(f"cannot decode {name}: truncated data {exc}".rstrip()) from exc
        except Exception as exc:
            raise SchemaError(f"cannot decode {name}: {type(exc).__name__}: {exc}") from exc
        left = len(data) - fo.tell()
        if left:
            raise SchemaError(f"cannot decode {name}: {left} trailing byte(s); wrong schema?")
        if not isinstance(record, dict):
            raise SchemaError(f"cannot decode {name}: not a record")
        return record

    def _check_header(self, name: str, data: bytes | bytearray | memoryview) -> int:
        if len(data) < _HEADER_LEN:
            raise SchemaError(f"cannot decode {name}: {len(data)} bytes is shorter than the header")
        if data[0] != 0:
            raise SchemaError(
                f"cannot decode {name}: bad magic byte {data[0]:#04x} (expected 0x00)"
            )
        schema_id = int.from_bytes(data[1:_HEADER_LEN], "big")
        expected = self._schema_ids[name]
        if schema_id != expected:
            other = self._names_by_id.get(schema_id)
            what = f"is {other}'s" if other else "is unknown"
            raise SchemaError(
                f"cannot decode {name}: schema id {schema_id} {what} (expected {expected})"
            )
        return _HEADER_LEN


# Pinning each schema object next to its parsed copy keeps its id() from being reused.
_reader_cache: dict[int, tuple[Mapping[str, Any], dict[str, Any]]] = {}


def _reader_for(schema: Mapping[str, Any]) -> dict[str, Any]:
    hit = _reader_cache.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    try:
        parsed = cast(dict[str, Any], parse_schema(_strip_timestamps(dict(schema))))
    except Exception as exc:
        raise SchemaError(f"invalid reader schema: {exc}") from exc
    if len(_reader_cache) >= _READER_CACHE_MAX:
        _reader_cache.clear()
    _reader_cache[id(schema)] = (schema, parsed)
    return parsed
