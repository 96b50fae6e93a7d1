"""The benchmark trains the models it is asked for and writes a table and flat JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from models.benchmark import parse_overrides, run, save
from models.datasets import generate
from models.datasets.eventlog import write_eventlog
from streams.cli import main


@pytest.fixture(scope="module")
def eventlog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "shop.jsonl"
    write_eventlog(path, generate(n_users=300, n_items=80, n_categories=5, seed=2))
    return path


def test_run_reports_every_model_and_its_costs(eventlog: Path, tmp_path: Path) -> None:
    overrides = parse_overrides(["sasrec.epochs=2", "sasrec.progress=false", "sasrec.hidden=16"])
    result = run(
        str(eventlog), ["most-popular", "sasrec"], None, overrides, progress=lambda _: None
    )
    assert [row.model for row in result.rows] == ["most-popular", "sasrec"]
    for row in result.rows:
        assert 0.0 <= row.figures["NDCG@10"] <= row.figures["HR@10"] <= 1.0
        assert row.figures["train_s"] > 0 and row.figures["infer_s_per_1k"] > 0
        assert row.figures["peak_mb"] >= 0
    assert result.split == "leave-one-out" and result.test_users == 300
    assert 0.0 < result.overhead < 1.0
    md, js = save(result, tmp_path)
    table = md.read_text()
    assert "| most-popular |" in table and "| sasrec |" in table and "NDCG@10" in table
    flat = json.loads(js.read_text())
    assert flat["dataset"] == "synthetic" and "sasrec:NDCG@10" in flat
    assert "cores" in flat["machine"]
    assert 1 <= flat["sasrec:best_epoch"] <= flat["sasrec:epochs"] == 2
    assert 0 < flat["sasrec:best_s"] <= flat["sasrec:train_s"]
    assert "most-popular:best_s" not in flat


def test_sasrec_learns_a_horizon_on_temporal_splits_and_a_trend_where_times_are_real(
    eventlog: Path,
) -> None:
    from models.benchmark import MODELS
    from models.data import from_dataset
    from models.datasets import load
    from models.sasrec import HORIZON_DAYS, TREND_DAYS
    from models.split import make_split

    data = from_dataset(load(str(eventlog)))
    temporal, loo = make_split(data, "temporal"), make_split(data, "leave-one-out")
    build = MODELS["sasrec"]
    assert build(temporal, {}).config.horizon_days == HORIZON_DAYS  # type: ignore[attr-defined]
    assert build(loo, {}).config.horizon_days is None  # type: ignore[attr-defined]
    assert build(temporal, {"horizon_days": 2.0}).config.horizon_days == 2.0  # type: ignore[attr-defined]
    assert build(temporal, {"loss": "bce"}).config.horizon_days is None  # type: ignore[attr-defined]
    assert build(temporal, {}).config.trend_days == TREND_DAYS  # type: ignore[attr-defined]
    # the event log's times are real; a sequence file's are one stamped day per position
    assert build(loo, {}).config.trend_days == TREND_DAYS  # type: ignore[attr-defined]
    stamped = make_split(dataclasses.replace(data, timed=False), "leave-one-out")
    assert build(stamped, {}).config.trend_days is None  # type: ignore[attr-defined]
    assert build(temporal, {"trend_days": None}).config.trend_days is None  # type: ignore[attr-defined]


def test_the_hybrid_with_sasrec_runs_in_the_benchmark(eventlog: Path) -> None:
    pairs = ["sasrec.epochs=2", "sasrec.progress=false", "sasrec.hidden=16"]
    overrides = parse_overrides([*pairs, "hybrid-sasrec.candidates=30"])
    result = run(str(eventlog), ["hybrid-sasrec"], None, overrides, progress=lambda _: None)
    [row] = result.rows
    assert row.model == "hybrid-sasrec"
    assert 0.0 <= row.figures["NDCG@10"] <= row.figures["HR@10"] <= 1.0
    # the inner SASRec's epochs, as a sasrec row reports its own
    assert row.figures["epochs"] == 2 and row.figures["best_epoch"] in (1, 2)
    assert 0 < row.figures["best_s"] < row.figures["train_s"]


def test_hybrid_sasrec_builds_its_sasrec_as_the_sasrec_row(eventlog: Path) -> None:
    from models.baselines import FitOnce, Hybrid
    from models.benchmark import MODELS
    from models.data import from_dataset
    from models.datasets import load
    from models.sasrec import SASRec
    from models.split import make_split

    split = make_split(from_dataset(load(str(eventlog))), "temporal")
    model = MODELS["hybrid-sasrec"](split, {"candidates": 30, "sasrec": {"hidden": 16}})
    assert isinstance(model, Hybrid) and model.config.candidates == 30
    assert model.name == "hybrid-sasrec" and isinstance(model.factories[-1], FitOnce)
    inner = model.factories[-1]()
    assert isinstance(inner, SASRec) and inner.config.hidden == 16
    assert inner.config.horizon_days is not None  # type: ignore[attr-defined]


def test_unknown_models_and_bad_overrides_are_named(eventlog: Path) -> None:
    with pytest.raises(ValueError, match="unknown models"):
        run(str(eventlog), ["nope"])
    with pytest.raises(ValueError, match=r"model\.field=value"):
        parse_overrides(["epochs=3"])


def test_cli_prints_the_table(
    eventlog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["benchmark", str(eventlog), "--models", "most-popular", "--out", str(tmp_path)])
    assert code == 0
    assert "| most-popular |" in capsys.readouterr().out
    assert (tmp_path / "models-synthetic.json").is_file()
    assert main(["benchmark", str(eventlog), "--models", "nope", "--out", str(tmp_path)]) == 2
