"""Tests of the schemas package; ``SAMPLES`` holds one valid record per schema."""

from typing import Any

TS = 1_700_000_000_000

SAMPLES: dict[str, dict[str, Any]] = {
    "Purchase": {
        "event_id": "e-1",
        "user_id": "u-1",
        "item_id": "i-1",
        "quantity": 2,
        "price": 19.99,
        "currency": "EUR",
        "ts": TS,
        "session_id": "s-1",
    },
    "Review": {
        "event_id": "e-2",
        "user_id": "u-1",
        "item_id": "i-1",
        "rating": 4.5,
        "text": "sharp and well balanced",
        "ts": TS,
    },
    "Product": {
        "item_id": "i-1",
        "title": "Chef's knife",
        "category": ["Home", "Kitchen", "Knives"],
        "brand": "Acme",
        "price": 49.0,
        "stock": 12,
        "margin": 0.3,
        "promo": 1.5,
        "ts": TS,
    },
    "Preference": {
        "event_id": "e-3",
        "user_id": "u-1",
        "kind": "wishlist_add",
        "item_id": "i-1",
        "value": None,
        "ts": TS,
    },
    "Recommendation": {
        "user_id": "u-1",
        "items": [
            {"item_id": "i-2", "score": 0.9, "reason": "sequence_model"},
            {"item_id": "i-3", "score": 0.5, "reason": "popular"},
        ],
        "model_version": "sasrec-7",
        "segment": 3,
        "cause_event_id": "e-1",
        "ts": TS,
    },
    "SegmentChange": {
        "user_id": "u-1",
        "old": None,
        "new": 3,
        "distance": 0.25,
        "model_version": "kmeans-2",
        "ts": TS,
    },
    "DriftAlert": {
        "monitor": "input_mix",
        "statistic": "psi",
        "value": 0.31,
        "threshold": 0.2,
        "window": 10_000,
        "model_version": "sasrec-7",
        "ts": TS,
    },
    "ModelUpdate": {
        "name": "sasrec",
        "version": "8",
        "uri": "file:///models/sasrec/8",
        "metrics": {"hit@10": 0.41, "ndcg@10": 0.22},
        "ts": TS,
    },
    "DeadLetter": {
        "topic": "purchases",
        "partition": 1,
        "offset": 42,
        "key": b"u-1",
        "error": "quantity must be > 0 (got -3)",
        "raw": b"\x00\x01garbage",
        "ts": TS,
    },
}
