"""The model holder: metric floors, canary by stable user fraction, promotion, rejection."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from models.data import from_dataset
from models.datasets import generate
from models.registry import Registry
from models.sasrec import SASRec, SASRecConfig
from models.split import leave_one_out
from streams.serving.holder import ModelHolder, ModelRejected, load_served, user_bucket


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    data = generate(n_users=120, n_items=40, n_categories=4, events_per_user=(4, 8), seed=2)
    split = leave_one_out(from_dataset(data))
    config = SASRecConfig(hidden=8, epochs=1, batch_size=64, progress=False, threads=1)
    model = SASRec(config).fit(split.train)
    registry = Registry(tmp_path_factory.mktemp("registry"))
    return [
        registry.publish(model.to_checkpoint({"NDCG@10": v}), "sasrec").to_record()
        for v in (0.05, 0.01)
    ]


def test_metric_floor_rejects_a_weak_version(versions: list[dict[str, Any]]) -> None:
    assert load_served(versions[0], {"NDCG@10": 0.03}).version == versions[0]["version"]
    with pytest.raises(ModelRejected, match="below the floor") as err:
        load_served(versions[1], {"NDCG@10": 0.03})
    assert err.value.kind == "metric"
    with pytest.raises(ModelRejected, match="MRR None"):
        load_served(versions[0], {"MRR": 0.1})  # a floor on a metric the version lacks


def test_canary_serves_a_stable_fraction_then_everyone(versions: list[dict[str, Any]]) -> None:
    now = [0.0]
    holder = ModelHolder("sasrec", canary_fraction=0.25, canary_seconds=60, clock=lambda: now[0])
    first, second = versions

    async def offer(update: dict[str, Any]) -> bool:
        return await holder.offer(update)

    assert asyncio.run(offer(first))  # nothing serving yet: straight in
    assert holder.versions()["current"] == first["version"]
    assert asyncio.run(offer(second))
    assert holder.versions() == {
        "current": first["version"],
        "canary": second["version"],
        "previous": None,
    }
    users = [f"user-{i}" for i in range(4000)]
    on_canary = {u for u in users if holder.for_user(u).version == second["version"]}  # type: ignore[union-attr]
    assert abs(len(on_canary) / len(users) - 0.25) < 0.03
    assert on_canary == {u for u in users if user_bucket(u) < 0.25}  # stable per user
    now[0] = 59.0
    holder.tick()
    assert holder.versions()["canary"] == second["version"]
    now[0] = 60.0
    holder.tick()
    assert holder.versions() == {
        "current": second["version"],
        "canary": None,
        "previous": first["version"],
    }
    assert holder.take_counts() == {"model_swaps": 2}


def test_a_version_for_another_model_name_is_ignored(
    versions: list[dict[str, Any]], tmp_path: Path
) -> None:
    holder = ModelHolder("other-model")
    assert not asyncio.run(holder.offer(versions[0]))
    assert holder.current is None and holder.rejected == []
