"""Settings: one frozen object read from the environment, passed down explicitly."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "RECO_"


def _env(name: str, *plain: str) -> AliasChoices:
    # Kafka and Redis locations are also read without the prefix because every tool
    # around Kafka and Redis (testcontainers, compose files, CI) already uses those names.
    return AliasChoices(PREFIX + name, *plain)


class Settings(BaseSettings):
    """Everything a worker, the replay tool or the demo reads from the environment.

    Library code receives this object; it never reads ``os.environ`` itself.
    """

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, frozen=True, extra="ignore", populate_by_name=True
    )

    kafka_bootstrap_servers: str | None = Field(
        None, validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS")
    )
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL", "REDIS_URL"))
    pseudonym_secret: SecretStr | None = None

    app_id: str = "reco-worker"
    wire_format: Literal["avro", "confluent"] = "avro"
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)

    topic_purchases: str = "purchases"
    topic_reviews: str = "reviews"
    topic_catalog: str = "catalog"
    topic_preferences: str = "preferences"
    topic_recommendations: str = "recommendations"
    topic_segments: str = "segments"
    topic_drift_alerts: str = "drift-alerts"
    topic_model_updates: str = "model-updates"
    topic_dead_letter: str = "dead-letter"

    history_length: int = Field(200, ge=1, le=10_000)
    top_k: int = Field(10, ge=1, le=1000)
    cooc_window: int = Field(3, ge=1, le=50)
    cooc_neighbours: int = Field(20, ge=1, le=1000)
    cooc_anchors: int = Field(3, ge=1, le=50)
    cooc_cache_s: float = Field(2.0, ge=0)
    max_future_ms: int = Field(86_400_000, ge=0)
    # Reviews update sequences either way; a shop whose only signal is ratings (or a
    # data set like MovieLens) also wants a recommendation after each review.
    recommend_on_reviews: bool = False

    # Serving: which registry model the workers follow on the model-updates topic.
    model_name: str = "sasrec"
    model_registry: str = "registry"  # directory of the model registry (trainer, rollback)
    follow_models: bool = True  # load the versions announced on model-updates
    wait_for_model_s: float = Field(0.0, ge=0)  # on start, wait this long for a model to load
    # a version whose checkpoint metrics fall below these floors is rejected, e.g.
    # RECO_MODEL_FLOORS='{"NDCG@10": 0.02}'
    model_floors: dict[str, float] = Field(default_factory=dict)
    canary_fraction: float = Field(0.0, ge=0.0, le=1.0)  # users a new version serves first
    canary_seconds: float = Field(300.0, ge=0.0)  # then it serves everyone
    # Scoring runs small ops per micro-batch: with more than one thread, each op waits at
    # an OpenMP barrier for a thread the broker or Redis has descheduled, which made
    # a forward pass up to 500x slower on 2 shared cores. Scale out with workers instead.
    torch_threads: int = Field(1, ge=1)
    candidates: int = Field(20, ge=1, le=5000)  # items scored before the business rules
    exclude_seen: bool = True  # False for consumables bought again and again
    cold_blend_events: int = Field(2, ge=0)  # histories this short blend in item-item neighbours
    new_item_slot: bool = True  # last slot: newest item of the user's category, if unseen
    trending_tau_s: float = Field(7 * 86_400.0, gt=0)  # time constant of trending decay
    # A model with a trend term (SASRec trend_days) rereads the trending items this often
    # instead of serving the trend its checkpoint was trained with; 0: every micro-batch
    trend_refresh_s: float = Field(10.0, ge=0)
    product_cache_s: float = Field(0.5, ge=0)  # catalog changes reach scoring within this
    # Period of gc.freeze(): a full collection walks every cached item, neighbour list
    # and product (a 350 ms pause at 12,000 items); frozen objects are never walked.
    gc_freeze_s: float = Field(10.0, ge=0)

    # Online segmentation (see streams.segments): River K-means shared through Redis.
    segments_enabled: bool = True
    segments_k: int = Field(6, ge=1, le=100)
    segments_init_points: int = Field(500, ge=1)  # profiles sampled before seeding centroids
    segments_init_min_events: int = Field(10, ge=1)  # only such users' profiles seed them
    segments_min_rate: float = Field(0.03, gt=0, le=1)  # floor of a centroid's learning step

    # A/B test (see models.abtest): a salted hash puts this share of users in the
    # treatment arm, served by the registry model named here; the rest is control.
    ab_treatment_model: str | None = None
    ab_treatment_share: float = Field(0.0, ge=0.0, le=1.0)
    ab_salt: str = "ab-1"  # a new salt for each experiment: a split independent of the last

    # Online evaluation (see streams.evaluation): purchases judged against the last list
    # shown to the user within the window (event time).
    evaluation_enabled: bool = True
    attribution_window_s: float = Field(7 * 86_400.0, gt=0)

    # Drift monitors (see streams.drift): alerts on the drift-alerts topic.
    drift_enabled: bool = True
    drift_warmup_events: int = Field(5_000, ge=0)  # per worker, before the monitors start
    drift_cooldown_events: int = Field(10_000, ge=0)  # per worker, between two alerts of a monitor
    drift_cooldown_s: float = Field(600.0, ge=1)  # across workers, between two alerts of a monitor
    retrain_on_drift: bool = False  # a hit-rate alert asks the trainer for a run

    # Business rules (see models.rerank)
    drop_out_of_stock: bool = True
    min_price: float | None = Field(None, ge=0)
    max_price: float | None = Field(None, ge=0)
    margin_weight: float = Field(0.0, ge=0)
    promo_boost: bool = True
    max_per_category: int | None = Field(None, ge=1)
    category_depth: int = Field(1, ge=1)

    batch_size: int = Field(2000, ge=1)
    batch_within_s: float = Field(0.005, gt=0)
    # Tansu answers a fetch after part of this wait even when records are there, so it
    # bounds latency; yet 5 ms gave a higher p99 than 25 ms in every paired run, the
    # broker alone and the worker alike (BENCHMARKS.md, serving).
    fetch_max_wait_ms: int = Field(25, ge=0)
    stream_buffer_maxsize: int = Field(8192, ge=1)
    # Largest record a worker sends (Kafka's max.request.size): a larger output is refused,
    # and the events behind it go to the dead-letter topic with the reason.
    producer_max_request_size: int = Field(1_048_576, ge=1)
    commit_every: int = Field(10_000, ge=1)
    commit_interval_s: float = Field(1.0, gt=0)
    session_timeout_s: float = Field(10.0, gt=0)
    web_port: int = Field(6066, ge=0)
    web_enabled: bool = False
    # Recommendation requests answered at once; more get 503 straight away. They share
    # the event loop with the stream: without a bound, a flood of requests slows both
    # without limit instead of turning some requests away.
    web_max_in_flight: int = Field(16, ge=1)

    @classmethod
    def topic_fields(cls) -> list[str]:
        """Names of the settings that name a topic."""
        return [name for name in cls.model_fields if name.startswith("topic_")]

    def topic_partitions(self) -> dict[str, int]:
        """Every topic the system uses, with the partition count to create it with."""
        return {getattr(self, f): self.partitions for f in self.topic_fields()}

    def isolated(self, tag: str) -> Settings:
        """These settings with topics and consumer group named after ``tag``: for a run
        that shares a broker with others but none of their records or offsets.

        >>> s = Settings(pseudonym_secret="k").isolated("t1")
        >>> s.app_id, s.topic_purchases, s.topic_dead_letter
        ('t1', 't1-purchases', 't1-dead-letter')
        """
        update: dict[str, str] = {
            f: f"{tag}-{f.removeprefix('topic_').replace('_', '-')}" for f in self.topic_fields()
        }
        return self.model_copy(update={**update, "app_id": tag})

    def as_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (e.g. os.environ) with every setting as a RECO_* variable, plus the
        plain Kafka/Redis names: the environment of a child worker with these settings."""
        env = {k: v for k, v in base.items() if not k.startswith(PREFIX)}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if isinstance(value, dict | list):
                value = json.dumps(value)  # complex settings are read back as JSON
            if value is not None:
                env[PREFIX + name.upper()] = str(value)
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.kafka_bootstrap_servers or ""
        env["REDIS_URL"] = self.redis_url or ""
        return env

    def secret_bytes(self) -> bytes:
        from schemas.errors import ConfigError

        if self.pseudonym_secret is None or not self.pseudonym_secret.get_secret_value():
            raise ConfigError(
                f"{PREFIX}PSEUDONYM_SECRET is not set: user ids are pseudonymised with a keyed "
                "hash and the key must come from the environment"
            )
        return self.pseudonym_secret.get_secret_value().encode()
