"""Per-user and per-item state in Redis: sequences, catalog, preferences."""

from streams.state.sequence import ENTRY_BYTES, decode_sequence, event_hash
from streams.state.store import ApplyResult, Interaction, Store

__all__ = [
    "ENTRY_BYTES",
    "ApplyResult",
    "Interaction",
    "Store",
    "decode_sequence",
    "event_hash",
]
