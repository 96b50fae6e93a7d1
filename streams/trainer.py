"""Periodic retraining: snapshot the event log, train SASRec, publish it if it is not worse.

One run reads the purchase, review and catalog topics into an event log and splits it
in time: SASRec trains on the past, early-stops on the validation window, and the most
recent window is held back. The candidate and the serving version (remapped onto the
new catalogue) are both scored on that window; the candidate is published and announced
on model-updates only when there is no serving version or it is not worse than it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from models.checkpoint import build_model
from models.data import from_dataset
from models.datasets import load
from models.evaluate import EvalReport, evaluate
from models.registry import ModelVersion, Registry
from models.remap import Remapped, SequenceScorer
from models.sasrec import SASRec, SASRecConfig, split_settings
from models.split import Split, temporal
from schemas.errors import ConfigError, RecommenderError, ServiceError
from streams import keys
from streams.announce import Announcement, announce
from streams.settings import Settings
from streams.snapshot import snapshot
from streams.topics import ensure_topics

__all__ = [
    "SNAPSHOT_FILE",
    "TrainOutcome",
    "TrainerConfig",
    "TrainerError",
    "ensure_updates_topic",
    "parse_model_overrides",
    "retrain",
    "run_schedule",
]

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "events.jsonl.gz"
_METRIC_RE = re.compile(r"^(?:(?:HR|Recall|Precision|NDCG)@([1-9]\d*)|MRR|AUC)$")
# A service writes log lines, not progress bars.
_MODEL_DEFAULTS: dict[str, Any] = {"progress": False}
_NOT_STORED = frozenset({"score_seconds", "metric_seconds"})


class TrainerError(RecommenderError):
    """The event log cannot give a fair training run (too few events, nothing held back)."""


def parse_model_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``field=value`` pairs for SASRecConfig; values are JSON when they parse, else text.

    >>> parse_model_overrides(["hidden=32", "loss=bce", 'features=["price"]'])
    {'hidden': 32, 'loss': 'bce', 'features': ('price',)}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected field=value, got {pair!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key.strip()] = tuple(value) if isinstance(value, list) else value
    return out


def _same_kind(default: object, value: object) -> bool:
    if default is None or value is None:
        return True  # optional fields (max_minutes, threads)
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


@dataclass(frozen=True)
class TrainerConfig:
    """What one retraining run trains and how it decides to publish."""

    model: dict[str, Any] = field(default_factory=dict)  # SASRecConfig fields to override
    window_share: float = 0.1  # share of events in each of the validation and test windows
    tolerance: float = 0.0  # publish when new >= serving * (1 - tolerance)
    min_events: int = 1000  # interactions below which a run refuses to train
    metric: str = "NDCG@10"
    # Once a candidate wins, train it again on every event (the held-back windows too,
    # the most recent and most telling ones) for as many epochs as early stopping chose.
    refit: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.window_share < 0.5:
            raise ConfigError(f"window_share must lie in (0, 0.5), got {self.window_share}")
        if not math.isfinite(self.tolerance) or self.tolerance > 1.0:
            raise ConfigError(f"tolerance must be a finite number <= 1, got {self.tolerance}")
        if self.min_events < 1:
            raise ConfigError(f"min_events must be >= 1, got {self.min_events}")
        if not _METRIC_RE.match(self.metric):
            raise ConfigError(
                f"metric {self.metric!r}: expected HR@k, Recall@k, Precision@k, NDCG@k, MRR or AUC"
            )
        self.sasrec_config()  # a bad field fails here, not after a snapshot

    def sasrec_config(self) -> SASRecConfig:
        # The log's times are real and the run splits it in time: SASRec gets what the
        # benchmark gives it on such a split (a horizon of targets and the shop's trend).
        split = split_settings("temporal", timed=True, loss=self.model.get("loss", "ce"))
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in {**_MODEL_DEFAULTS, **split, **self.model}.items()
        }
        defaults = {f.name: f.default for f in fields(SASRecConfig)}
        unknown = sorted(set(values) - set(defaults))
        if unknown:
            raise ConfigError(f"unknown SASRec settings {unknown}; known: {sorted(defaults)}")
        for key, value in values.items():
            # a string where a number belongs would otherwise fail deep inside training
            if not _same_kind(defaults[key], value):
                wanted = type(defaults[key]).__name__
                raise ConfigError(f"SASRec setting {key}={value!r}: expected a {wanted}")
        try:
            return SASRecConfig(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"SASRec settings {self.model}: {exc}") from exc

    def ks(self) -> tuple[int, ...]:
        match = _METRIC_RE.match(self.metric)
        extra = int(match.group(1)) if match and match.group(1) else 10
        return tuple(sorted({10, extra}))


@dataclass(frozen=True)
class TrainOutcome:
    """What a run decided and why."""

    published: bool
    reason: str
    metric: str
    candidate: float  # the candidate's ``metric`` on the held-back window
    serving: float | None  # the serving version's, None when there is none to score
    version: ModelVersion | None  # the version published by this run
    serving_version: str | None  # LATEST before this run
    metrics: dict[str, float]  # the candidate's evaluation, as stored in its checkpoint
    events: int  # interactions in the snapshot (first of each user and item)
    seconds: float
    announced: Announcement | None = None

    def summary(self) -> str:
        if self.version is not None:
            verdict = f"published {self.version.name} {self.version.version}"
        else:
            verdict = f"kept {self.serving_version}"
        return f"{verdict}: {self.reason} ({self.events} interactions, {self.seconds:.1f}s)"


@dataclass
class _Run:
    model: SASRec | None  # None when nothing was trained (see nothing_new)
    report: EvalReport | None
    serving_version: str | None
    serving: EvalReport | None
    serving_error: str | None
    events: int
    split: Split | None = None
    nothing_new: str | None = None  # why no fair comparison is possible yet


TRAINED_UNTIL = "trained_until_ms"  # checkpoint metric: the newest event time trained on


def _prepare(path: Path, config: TrainerConfig, after_ms: int | None = None) -> Split:
    """The temporal split; with ``after_ms``, the test window starts after it, so the
    serving version is never tested on events it was trained on."""
    data = from_dataset(load(path))
    if data.n_events < config.min_events:
        raise TrainerError(
            f"the event log holds {data.n_events} interactions, fewer than min_events="
            f"{config.min_events}: not training"
        )
    split = temporal(data, window_share=config.window_share)
    if after_ms is not None and split.test_from_ms is not None and after_ms >= split.test_from_ms:
        valid_from = min(split.valid_from_ms or after_ms, after_ms)
        split = temporal(data, valid_from_ms=valid_from, test_from_ms=after_ms + 1)
    if not len(split.valid) or (not len(split.test) and after_ms is None):
        raise TrainerError(
            f"no user has events both before and inside the last {config.window_share:.0%} "
            "windows of the log: nothing to validate or test on"
        )
    return split


def _serving_model(registry: Registry, name: str) -> tuple[str | None, Any, str | None, int | None]:
    """LATEST's version, its model, why it cannot be scored, and when its data ended."""
    if not registry.versions(name):
        return None, None, None, None
    try:
        version = registry.latest_version(name)
        ckpt = registry.load(name, version)
        model = ckpt.build()
    except RecommenderError as exc:
        return None, None, str(exc), None
    until = ckpt.metrics.get(TRAINED_UNTIL)
    if not isinstance(model, SequenceScorer):
        return version, None, f"a {type(model).__name__} does not name its items", None
    return version, model, None, None if until is None else int(until)


def _train_and_compare(path: Path, config: TrainerConfig, registry: Registry, name: str) -> _Run:
    version, loaded, error, until = _serving_model(registry, name)
    split = _prepare(path, config, until)
    if until is not None and not len(split.test):
        reason = (
            f"no user has new events after the data of serving {version} "
            f"(trained until {until} ms): nothing to compare on yet"
        )
        return _Run(None, None, version, None, None, split.data.n_events, split, reason)
    ks = config.ks()
    model = SASRec(config.sasrec_config()).fit(split.train, split.valid)
    report = evaluate(model, split.test, split.train, k=ks)
    serving = None if loaded is None else Remapped(loaded, split.data.catalogue.item_ids)
    serving_report = None
    if serving is not None:
        try:
            serving_report = evaluate(serving, split.test, split.train, k=ks)
        except ValueError as exc:  # e.g. NaN scores: a broken serving model is no bar
            return _Run(model, report, version, None, str(exc), split.data.n_events, split)
        log.info(
            "serving %s knows %d of %d items",
            version,
            serving.n_known,
            split.data.catalogue.n_items,
        )
    return _Run(model, report, version, serving_report, error, split.data.n_events, split)


def _decide(run: _Run, config: TrainerConfig, name: str) -> tuple[bool, str]:
    assert run.report is not None
    metric, new = config.metric, run.report[config.metric]
    if run.serving_error is not None:
        return True, f"the serving version cannot be scored ({run.serving_error})"
    if run.serving is None:
        return True, f"no serving version of {name!r} yet; candidate {metric} {new:.4f}"
    old = run.serving[metric]
    bar = old * (1 - config.tolerance)
    versus = f"serving {run.serving_version} {old:.4f} x {1 - config.tolerance:g} = {bar:.4f}"
    if new >= bar:
        return True, f"candidate {metric} {new:.4f} >= {versus}"
    return False, f"candidate {metric} {new:.4f} < {versus}"


def _stored_metrics(run: _Run, config: TrainerConfig) -> dict[str, float]:
    assert run.report is not None and run.model is not None
    metrics = {
        k: v for k, v in run.report.as_dict().items() if k not in _NOT_STORED and math.isfinite(v)
    }
    metrics["interactions"] = float(run.events)
    metrics["train_seconds"] = run.model.train_seconds
    if run.model.trend_weight is not None:
        metrics["trend_weight"] = run.model.trend_weight
    if run.serving is not None and math.isfinite(run.serving[config.metric]):
        metrics[f"serving:{config.metric}"] = run.serving[config.metric]
    return metrics


def _refit(model: SASRec, split: Split, config: TrainerConfig) -> SASRec:
    """The winning settings trained again on every event, for the epochs early stopping
    kept (the held-back windows are the newest behaviour: the served model should know it)."""
    scored = [h for h in model.history if "NDCG@10" in h]
    best = max(scored, key=lambda h: h["NDCG@10"])["epoch"] if scored else model.config.epochs
    settings = replace(config.sasrec_config(), epochs=max(1, int(best)))
    refit = SASRec(settings).fit(split.data)
    if model.trend_weight is not None:
        # no validation targets here: the weight is the one the first fit chose, and
        # the trend itself now runs to the newest event
        refit.use_trend_weight(model.trend_weight)
    return refit


def _publish(
    model: SASRec, metrics: dict[str, float], registry: Registry, name: str
) -> ModelVersion:
    ckpt = model.to_checkpoint(metrics)
    build_model(ckpt)  # a version no worker can build would only be rejected by all of them
    return registry.publish(ckpt, name)


async def ensure_updates_topic(settings: Settings) -> str:
    """Create the model-updates topic if needed; returns the bootstrap address."""
    bootstrap = settings.kafka_bootstrap_servers
    if not bootstrap:
        raise ConfigError("announcing model versions needs KAFKA_BOOTSTRAP_SERVERS")
    topic = {settings.topic_model_updates: settings.partitions}
    await ensure_topics(bootstrap, topic, settings.replication_factor)
    return bootstrap


async def retrain(
    settings: Settings,
    config: TrainerConfig,
    registry_root: str | Path,
    work_dir: str | Path | None = None,
) -> TrainOutcome:
    """One run: snapshot, train, compare with the serving version, publish if not worse.

    The snapshot goes to ``work_dir`` (a temporary directory when None). Raises
    ``ConfigError`` without a broker, ``TrainerError`` when the log is too thin to train
    on, ``ServiceError`` when Kafka fails (also after a publish it could not announce).
    """
    began = time.perf_counter()
    if not settings.kafka_bootstrap_servers:
        raise ConfigError(
            "retraining needs KAFKA_BOOTSTRAP_SERVERS: it reads the event log from Kafka "
            "and announces new versions on model-updates"
        )
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="reco-train-") as tmp:
            return await retrain(settings, config, registry_root, tmp)
    registry, name = Registry(registry_root), settings.model_name
    registry.versions(name)  # a malformed name fails before the snapshot
    path = Path(work_dir) / SNAPSHOT_FILE
    stats = await snapshot(settings, path, name=name, progress=False)
    log.info("snapshot: %s", stats.summary())

    run = await asyncio.to_thread(_train_and_compare, path, config, registry, name)
    if run.nothing_new is not None:
        return TrainOutcome(
            published=False,
            reason=run.nothing_new,
            metric=config.metric,
            candidate=math.nan,
            serving=None,
            version=None,
            serving_version=run.serving_version,
            metrics={},
            events=run.events,
            seconds=time.perf_counter() - began,
        )
    assert run.model is not None and run.report is not None and run.split is not None
    candidate = run.report[config.metric]
    if math.isnan(candidate):
        raise TrainerError("no held-back user has a new item to predict: nothing to compare")
    publish, reason = _decide(run, config, name)
    metrics = _stored_metrics(run, config)
    version = announced = None
    if publish:
        await ensure_updates_topic(settings)  # before publishing: no silent, unannounced version
        model = run.model
        if config.refit:
            model = await asyncio.to_thread(_refit, run.model, run.split, config)
            metrics["refit_epochs"] = float(model.config.epochs)
            metrics[TRAINED_UNTIL] = float(run.split.data.histories.times.max())
        else:
            metrics[TRAINED_UNTIL] = float((run.split.valid_from_ms or 0) - 1)
        version = await asyncio.to_thread(_publish, model, metrics, registry, name)
        try:
            announced = await announce(version, settings)
        except RecommenderError as exc:
            raise ServiceError(
                f"published {name} {version.version} to {registry.root} but could not announce "
                f"it; workers keep their version until the next announcement: {exc}"
            ) from exc
    return TrainOutcome(
        published=publish,
        reason=reason,
        metric=config.metric,
        candidate=candidate,
        serving=None if run.serving is None else run.serving[config.metric],
        version=version,
        serving_version=run.serving_version,
        metrics=metrics,
        events=run.events,
        seconds=time.perf_counter() - began,
        announced=announced,
    )


async def run_schedule(
    settings: Settings,
    config: TrainerConfig,
    registry_root: str | Path,
    every_s: float,
    stop: asyncio.Event | None = None,
    work_dir: str | Path | None = None,
    poll_s: float = 30.0,
) -> int:
    """Retrain now and then every ``every_s`` seconds until ``stop`` is set, and at once
    when a drift alert on the hit rate asks for it (``RECO_RETRAIN_ON_DRIFT``; checked
    every ``poll_s``).

    A failed run is logged and the loop waits for the next slot; slots are fixed from
    the first run, so a run longer than ``every_s`` skips slots instead of piling up.
    Returns the number of runs started.
    """
    if not every_s > 0:
        raise ConfigError(f"the retraining interval must be > 0 seconds, got {every_s}")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    first = loop.time()
    runs = 0
    while not stop.is_set():
        runs += 1
        try:
            outcome = await retrain(settings, config, registry_root, work_dir)
            log.info("retraining run %d: %s", runs, outcome.summary())
        except RecommenderError as exc:
            log.error("retraining run %d failed: %s", runs, exc)
        except Exception:  # a bug in one run must not end the schedule
            log.exception("retraining run %d failed unexpectedly", runs)
        now = loop.time()
        slot = first + (math.floor((now - first) / every_s) + 1) * every_s
        while not stop.is_set() and loop.time() < slot:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(poll_s, slot - loop.time()))
            if await _requested(settings):
                log.info("a drift alert asked for a run: retraining now")
                break
    return runs


async def _requested(settings: Settings) -> bool:
    """Whether a worker's hit-rate alert asked for a run (the request is taken)."""
    if not settings.redis_url:
        return False
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        return await client.getdel(keys.TRAIN_REQUESTED) is not None
    except (RedisError, OSError) as exc:
        log.warning("cannot read retraining requests: %s", exc)
        return False
    finally:
        await client.aclose()
