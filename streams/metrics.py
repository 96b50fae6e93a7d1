"""Prometheus metrics of a worker: one registry per process, exposed on ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter("reco_events", "Events consumed, by agent", ["agent"], registry=REGISTRY)
RECOMMENDATIONS = Counter(
    "reco_recommendations", "Recommendations emitted, by path", ["path"], registry=REGISTRY
)
DEAD_LETTERS = Counter(
    "reco_dead_letters", "Records sent to the dead-letter topic", registry=REGISTRY
)
BATCH_SECONDS = Histogram(
    "reco_batch_seconds",
    "Time to process one micro-batch, by agent",
    ["agent"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
BATCH_EVENTS = Histogram(
    "reco_batch_events",
    "Events in one micro-batch, by agent",
    ["agent"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
    registry=REGISTRY,
)
# rate() of this is the share of wall time the agent's loop spends in each stage: near 1
# for processing + delivery, the worker is saturated and events queue in front of it.
BUSY_SECONDS = Counter(
    "reco_busy_seconds",
    "Time spent on micro-batches, by agent and stage (processing, delivery)",
    ["agent", "stage"],
    registry=REGISTRY,
)
EVENT_LATENCY = Histogram(
    "reco_event_latency_seconds",
    "From the record's broker timestamp to its batch's output being delivered, by agent",
    ["agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "reco_http_seconds",
    "HTTP request time, by route; recommendation requests refused (400) or shed (503 busy) "
    "are not timed",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
HTTP_SHED = Counter(
    "reco_http_shed",
    "Recommendation requests answered 503 because too many were in flight",
    registry=REGISTRY,
)
MODEL = Info("reco_model", "Model version serving (and its canary)", registry=REGISTRY)
MODEL_SWAPS = Counter("reco_model_swaps", "Model versions swapped in", registry=REGISTRY)
TREND_REFRESHES = Counter(
    "reco_trend_refreshes", "Trend terms reread from the trending items", registry=REGISTRY
)
MODEL_REJECTED = Counter(
    "reco_model_rejected", "Model versions rejected, by reason kind", ["reason"], registry=REGISTRY
)
MODEL_LOADED_AT = Gauge(
    "reco_model_loaded_timestamp_seconds",
    "When the serving version was swapped in",
    registry=REGISTRY,
)
SEGMENT_UPDATES = Counter(
    "reco_segment_updates", "Online K-means updates (one per user and batch)", registry=REGISTRY
)
SEGMENT_CHANGES = Counter(
    "reco_segment_changes",
    "Users who moved to another segment (SegmentChange events)",
    registry=REGISTRY,
)
SEGMENT_SECONDS = Histogram(
    "reco_segment_seconds",
    "Time the segmentation step takes per micro-batch (Redis merge included)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
    registry=REGISTRY,
)
ONLINE_JUDGED = Counter(
    "reco_online_judged",
    "Purchases judged against the list shown to the user before them, by model version",
    ["version"],
    registry=REGISTRY,
)
ONLINE_HITS = Counter(
    "reco_online_hits",
    "Judged purchases of an item that was in that list, by model version",
    ["version"],
    registry=REGISTRY,
)
DRIFT_ALERTS = Counter(
    "reco_drift_alerts", "Drift alerts sent, by monitor", ["monitor"], registry=REGISTRY
)
DRIFT_STATISTIC = Gauge(
    "reco_drift_statistic",
    "Latest value of each drift monitor's statistic (PSI, KS distance, ADWIN mean, ...)",
    ["monitor"],
    registry=REGISTRY,
)
