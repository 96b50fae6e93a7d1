"""Importers that turn the public data sets into Purchase, Review and Product records.

Every loader returns a :class:`Dataset` whose events are in a stable global time
order and whose records match the Avro contracts field for field, so the same data
can feed the replay tool, the trainer and the tests.
"""

from models.datasets.base import Dataset, Event, EventKind, to_messages, truncate
from models.datasets.eventlog import EventLogError, is_eventlog, read_eventlog, write_eventlog
from models.datasets.loader import DEFAULT_DATA_DIR, NAMES, available, load
from models.datasets.movielens import load_movielens
from models.datasets.online_retail import load_online_retail
from models.datasets.records import (
    PRODUCT_FIELDS,
    PURCHASE_FIELDS,
    REVIEW_FIELDS,
    Record,
    product,
    purchase,
    review,
)
from models.datasets.sequences import load_amazon, load_pairs, load_sequences, synthetic_ts
from models.datasets.synthetic import SyntheticDataset, generate

__all__ = [
    "DEFAULT_DATA_DIR",
    "NAMES",
    "PRODUCT_FIELDS",
    "PURCHASE_FIELDS",
    "REVIEW_FIELDS",
    "Dataset",
    "Event",
    "EventKind",
    "EventLogError",
    "Record",
    "SyntheticDataset",
    "available",
    "generate",
    "is_eventlog",
    "load",
    "load_amazon",
    "load_movielens",
    "load_online_retail",
    "load_pairs",
    "load_sequences",
    "product",
    "purchase",
    "read_eventlog",
    "review",
    "synthetic_ts",
    "to_messages",
    "truncate",
    "write_eventlog",
]
