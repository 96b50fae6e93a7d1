"""Retraining from the event log: publish when not worse, keep the serving version otherwise,
and roll back, against a real broker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import torch

from models.checkpoint import Checkpoint
from models.data import from_dataset
from models.datasets import generate, load, to_messages
from models.datasets.records import purchase
from models.registry import Registry
from schemas.codec import Codec
from schemas.errors import ConfigError
from streams import keys
from streams.cli import main
from streams.settings import Settings
from streams.snapshot import snapshot
from streams.topics import delete_topics
from streams.trainer import (
    SNAPSHOT_FILE,
    TrainerConfig,
    TrainerError,
    parse_model_overrides,
    retrain,
    run_schedule,
)
from tests.streams.harness import consume, make_settings, publish_records, run

pytestmark = pytest.mark.integration

TINY: dict[str, Any] = {
    "hidden": 16,
    "blocks": 1,
    "maxlen": 20,
    "epochs": 3,
    "eval_steps": 1,
    "batch_size": 64,
    "threads": 1,
}
TINY_ARGS = [f"--set={k}={v}" for k, v in TINY.items() if k != "epochs"] + ["--epochs", "2"]


@pytest.fixture(scope="module")
def logged(kafka_bootstrap: str, redis_url: str) -> Iterator[tuple[Settings, int]]:
    """Settings whose input topics hold a synthetic event log, and its interaction count."""
    s = make_settings(kafka_bootstrap, redis_url)
    ds = generate(n_users=300, n_items=60, n_categories=6, events_per_user=(4, 10), seed=7)
    publish_records(s, to_messages(ds))
    yield s, from_dataset(ds).n_events
    run(delete_topics(kafka_bootstrap, s.topic_partitions()))


def _with_updates_topic(s: Settings, make_topic: Callable[..., str]) -> Settings:
    topic = make_topic("model-updates", partitions=s.partitions)
    return s.model_copy(update={"topic_model_updates": topic})


def _updates(s: Settings, count: int, timeout: float) -> list[dict[str, Any]]:
    codec = Codec(s.wire_format)
    records = consume(s, s.topic_model_updates, count, timeout=timeout)
    assert all(r.key == s.model_name.encode() for r in records)
    return [codec.decode("ModelUpdate", r.value) for r in records]


def test_first_run_publishes_and_a_run_that_does_not_beat_it_keeps_it(
    logged: tuple[Settings, int], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    s, n_events = logged
    s = _with_updates_topic(s, topic_factory)
    root, work = tmp_path / "registry", tmp_path / "work"
    registry = Registry(root)

    # refit=False: both runs score the same windows, which is what this test compares
    first = run(retrain(s, TrainerConfig(model=TINY, min_events=100, refit=False), root, work))
    assert first.published and first.version is not None
    assert (first.serving, first.serving_version) == (None, None)
    assert "no serving version" in first.reason
    assert first.events == n_events
    assert (work / SNAPSHOT_FILE).is_file()
    assert 0 < first.candidate <= 1  # the bar below must be above zero to mean anything
    assert registry.latest_version("sasrec") == first.version.version
    published = registry.load("sasrec")
    stored = published.metrics
    assert stored["NDCG@10"] == first.candidate == first.metrics["NDCG@10"]
    # trained as the benchmark trains SASRec on a time split: a horizon and the trend
    assert published.config["horizon_days"] == 7.0 and published.config["trend_days"] == 7.0
    assert stored["trend_weight"] >= 0
    assert stored["interactions"] == n_events and stored["users"] > 0
    assert first.announced is not None
    (update,) = _updates(s, 1, timeout=30)
    assert update == first.version.to_record()

    # Same data, same seed: the candidate cannot be 50% better than the model it repeats.
    strict = TrainerConfig(model=TINY, min_events=100, tolerance=-0.5, refit=False)
    second = run(retrain(s, strict, root))
    assert not second.published and second.version is None and second.announced is None
    assert second.serving_version == first.version.version
    # the serving checkpoint, remapped onto the same catalogue, scores as it did when new
    assert second.serving == pytest.approx(first.candidate)
    assert f"< serving {first.version.version}" in second.reason
    assert second.metrics["serving:NDCG@10"] == pytest.approx(first.candidate)
    assert registry.versions("sasrec") == [first.version.version]
    assert registry.latest_version("sasrec") == first.version.version
    assert len(_updates(s, 2, timeout=3)) == 1


def test_cli_trains_twice_then_rolls_back_and_announces_the_older_version(
    logged: tuple[Settings, int],
    topic_factory: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = _with_updates_topic(logged[0], topic_factory)
    root = tmp_path / "registry"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers or "",
        "RECO_TOPIC_PURCHASES": s.topic_purchases,
        "RECO_TOPIC_REVIEWS": s.topic_reviews,
        "RECO_TOPIC_CATALOG": s.topic_catalog,
        "RECO_TOPIC_MODEL_UPDATES": s.topic_model_updates,
        "RECO_MODEL_REGISTRY": str(root),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    # tolerance 1: any candidate clears a bar of serving x 0
    train = ["train", *TINY_ARGS, "--min-events", "100", "--tolerance", "1", "--no-refit"]
    assert main(train) == 0
    assert main(train) == 0
    out = capsys.readouterr().out
    assert out.count("published sasrec") == 2 and out.count("announced on") == 2
    registry = Registry(root)
    older, newer = registry.versions("sasrec")
    assert registry.latest_version("sasrec") == newer

    assert main(["rollback"]) == 0
    out = capsys.readouterr().out
    assert f"rolled back sasrec from {newer} to {older}" in out
    assert "announced on" in out
    assert registry.latest_version("sasrec") == older
    assert [u["version"] for u in _updates(s, 3, timeout=30)] == [older, newer, older]

    assert main(["rollback"]) == 2  # nothing older than the first version
    assert "nothing to roll back to" in capsys.readouterr().err
    assert registry.latest_version("sasrec") == older


def test_too_few_events_is_refused_and_the_schedule_keeps_going(
    logged: tuple[Settings, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s, n_events = logged
    root = tmp_path / "registry"
    picky = TrainerConfig(model=TINY, min_events=n_events + 1)
    with pytest.raises(TrainerError, match=f"{n_events} interactions, fewer than min_events"):
        run(retrain(s, picky, root))

    caplog.set_level(logging.ERROR, logger="streams.trainer")

    def failures() -> int:
        return sum("fewer than min_events" in r.getMessage() for r in caplog.records)

    async def scenario() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(run_schedule(s, picky, root, 0.2, stop))
        deadline = time.monotonic() + 60
        while failures() < 2 and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.05)
        stop.set()
        return await asyncio.wait_for(task, 30)

    runs = run(scenario())
    assert failures() >= 2 and runs == failures()
    assert Registry(root).versions("sasrec") == []


def test_without_a_broker_commands_fail_clearly_and_the_schedule_survives(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for key in ("KAFKA_BOOTSTRAP_SERVERS", "RECO_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(key, raising=False)
    root = tmp_path / "registry"
    monkeypatch.setenv("RECO_MODEL_REGISTRY", str(root))

    assert main(["train"]) == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err
    assert main(["train", "--set", "hidden=big"]) == 2
    assert "hidden='big': expected a int" in capsys.readouterr().err
    assert main(["train", "--set", "nope=1"]) == 2
    assert "unknown SASRec settings ['nope']" in capsys.readouterr().err

    registry = Registry(root)
    ckpt = Checkpoint(kind="sasrec", config={}, state_dict={"w": torch.zeros(1)}, item_ids=["a"])
    first, second = registry.publish(ckpt, "sasrec"), registry.publish(ckpt, "sasrec")
    assert main(["rollback"]) == 2  # announcing needs a broker: LATEST must not move silently
    assert "KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err
    assert registry.latest_version("sasrec") == second.version
    assert main(["rollback", "--no-announce"]) == 0
    assert f"to {first.version}" in capsys.readouterr().out
    assert registry.latest_version("sasrec") == first.version

    caplog.set_level(logging.ERROR, logger="streams.trainer")

    async def scenario() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(run_schedule(Settings(), TrainerConfig(), root, 0.05, stop))
        while len(caplog.records) < 3 and not task.done():
            await asyncio.sleep(0.01)
        stop.set()
        return await asyncio.wait_for(task, 10)

    assert run(scenario()) >= 3
    assert all("KAFKA_BOOTSTRAP_SERVERS" in r.getMessage() for r in caplog.records)


def test_trainer_config_rejects_what_would_fail_mid_run() -> None:
    assert parse_model_overrides(["epochs=3", "loss=bce"]) == {"epochs": 3, "loss": "bce"}
    with pytest.raises(ConfigError, match="expected field=value"):
        parse_model_overrides(["epochs"])
    assert TrainerConfig(metric="HR@20").ks() == (10, 20)
    for bad in (
        {"window_share": 0.5},
        {"tolerance": float("nan")},
        {"min_events": 0},
        {"metric": "Coverage@10"},
        {"model": {"loss": "hinge"}},
    ):
        with pytest.raises(ConfigError):
            TrainerConfig(**bad)
    with pytest.raises(ConfigError, match="interval"):
        run(run_schedule(Settings(), TrainerConfig(), "registry", 0))


def test_the_trainer_gives_sasrec_what_a_time_split_calls_for_unless_told_otherwise() -> None:
    from models.sasrec import HORIZON_DAYS, TREND_DAYS

    default = TrainerConfig().sasrec_config()
    assert (default.horizon_days, default.trend_days) == (HORIZON_DAYS, TREND_DAYS)
    assert not default.progress  # a service logs lines, not bars
    bce = TrainerConfig(model={"loss": "bce"}).sasrec_config()
    assert (bce.horizon_days, bce.trend_days) == (None, TREND_DAYS)  # a horizon needs "ce"
    off = parse_model_overrides(["horizon_days=null", "trend_days=null", "hidden=32"])
    plain = TrainerConfig(model=off).sasrec_config()
    assert (plain.horizon_days, plain.trend_days, plain.hidden) == (None, None, 32)


def test_refit_trains_on_every_event_and_waits_for_new_ones(
    logged: tuple[Settings, int], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    s = _with_updates_topic(logged[0], topic_factory)
    root = tmp_path / "registry"
    config = TrainerConfig(model=TINY, min_events=100)
    first = run(retrain(s, config, root))
    assert first.published and first.version is not None
    stored = Registry(root).load("sasrec").metrics
    newest = from_dataset(load(_snapshot_of(s, tmp_path))).histories.times.max()
    assert stored["trained_until_ms"] == float(newest)  # the held-back windows included
    assert 1 <= stored["refit_epochs"] <= TINY["epochs"]

    # Nothing happened since: the serving version has seen every event, so no window
    # is left to compare on fairly, and nothing is published.
    again = run(retrain(s, config, root))
    assert not again.published and again.version is None
    assert "no user has new events after" in again.reason
    assert Registry(root).versions("sasrec") == [first.version.version]


def _snapshot_of(s: Settings, where: Path) -> Path:
    out = where / "check.jsonl.gz"
    run(snapshot(s, out, progress=False))
    return out


def test_after_a_refit_only_newer_events_judge_the_next_candidate(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    s = make_settings(kafka_bootstrap, redis_url)
    ds = generate(n_users=300, n_items=60, n_categories=6, events_per_user=(4, 10), seed=8)
    publish_records(s, to_messages(ds))
    try:
        root = tmp_path / "registry"
        config = TrainerConfig(model=TINY, min_events=100, tolerance=1.0)
        first = run(retrain(s, config, root))
        assert first.published and first.version is not None
        until = int(first.metrics["trained_until_ms"])

        # A day later, the same users buy again: the only events the served model lacks.
        purchases = [rec for kind, rec in ds.events if kind == "purchase"]
        users = sorted({r["user_id"] for r in purchases})[:150]
        bought = {u: {r["item_id"] for r in purchases if r["user_id"] == u} for u in users}
        items = sorted({r["item_id"] for r in purchases})
        later = []
        for n, user in enumerate(users):
            item = next(i for i in items[n % len(items) :] + items if i not in bought[user])
            later.append(purchase(f"later-{n}", user, item, until + 86_400_000 + n))
        publish_records(s, [("purchase", r["user_id"], r) for r in later])

        second = run(retrain(s, config, root))
        # Judged on the new day only: the serving version is scored, on users who bought then.
        assert second.serving is not None and second.serving_version == first.version.version
        assert second.metrics["users"] <= len(users)
        assert second.published  # tolerance 1: any candidate clears serving x 0
        assert second.metrics["trained_until_ms"] == float(later[-1]["ts"])
    finally:
        run(delete_topics(kafka_bootstrap, s.topic_partitions()))


def test_a_drift_request_starts_a_run_before_the_next_slot(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No broker: every run fails fast, which is enough to count the runs started.
    s = Settings(redis_url=redis_url, kafka_bootstrap_servers=None)
    caplog.set_level(logging.INFO, logger="streams.trainer")

    def asked() -> int:
        return sum("a drift alert asked for a run" in r.getMessage() for r in caplog.records)

    async def scenario() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_schedule(s, TrainerConfig(), tmp_path / "registry", 3600, stop, poll_s=0.05)
        )
        await asyncio.sleep(0.5)
        redis_client.set(keys.TRAIN_REQUESTED, 1)
        deadline = time.monotonic() + 30
        while asked() < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        stop.set()
        return await asyncio.wait_for(task, 30)

    assert run(scenario()) == 2  # the first run, then the requested one, an hour early
    assert asked() == 1
    assert not redis_client.exists(keys.TRAIN_REQUESTED)  # the request was taken


def test_a_refit_keeps_the_chosen_trend_weight_and_brings_the_trend_up_to_date() -> None:
    from models.sasrec import SASRec, SASRecConfig, SASRecNet
    from models.split import temporal
    from models.trend import decayed_counts, log_counts
    from streams.trainer import _refit
    from tests.models.test_trend import FAST, shop

    split = temporal(shop())
    settings = {**FAST, "trend_days": 7.0, "threads": 1}
    first = SASRec(SASRecConfig(**settings)).fit(split.train, split.valid)  # type: ignore[arg-type]
    assert first.trend_weight is not None and first.trend_weight > 0  # the planted shop's trend
    refit = _refit(first, split, TrainerConfig(model=settings))
    assert refit.trend_weight == first.trend_weight
    assert isinstance(refit.net, SASRecNet)
    n_columns = split.data.catalogue.n_items + 1
    everything = log_counts(decayed_counts(split.data.histories, n_columns, 7.0))
    assert torch.equal(refit.net.trend, torch.from_numpy(everything))
