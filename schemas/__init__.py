"""Avro contracts of the event topics, their codec and the domain checks on them.

Imports nothing else of the project; every other layer may import it.
"""

from schemas.codec import DEFAULT_SCHEMA_IDS, SCHEMA_NAMES, Codec, WireFormat, load_schema
from schemas.errors import (
    ConfigError,
    InvalidEventError,
    RecommenderError,
    SchemaError,
    ServiceError,
)
from schemas.validation import validate

__all__ = [
    "DEFAULT_SCHEMA_IDS",
    "SCHEMA_NAMES",
    "Codec",
    "ConfigError",
    "InvalidEventError",
    "RecommenderError",
    "SchemaError",
    "ServiceError",
    "WireFormat",
    "load_schema",
    "validate",
]
