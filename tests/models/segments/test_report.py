"""Personas and the ``segments`` report, end to end on generated data and on MovieLens."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from models.data import from_dataset
from models.datasets import available, generate
from models.segments import personas as pers
from models.segments.report import Report, ReportConfig, run, save
from streams.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG, path


@pytest.fixture(scope="module")
def report() -> Report:
    ds = generate(n_users=2000, n_items=500, n_segments=4, seed=1)
    return run(ds, ReportConfig(k_range=(2, 6)))


def test_report_puts_online_and_batch_side_by_side(report: Report) -> None:
    models = [(r.embedding, r.segmentation.model) for r in report.rows]
    assert models == [
        ("profile", "online"),
        ("profile", "batch k-means"),
        ("profile", "gaussian mixture"),
        ("profile", "hdbscan"),
    ]
    assert report.choices["profile"].chosen == 4
    by = {r.segmentation.model: r for r in report.rows}
    assert by["online"].ari >= 0.8 and by["batch k-means"].ari >= 0.8
    assert by["online"].scores.silhouette >= 0.9 * by["batch k-means"].scores.silhouette
    assert report.online_vs_kmeans > 0.9
    table = report.table()
    assert "ARI vs planted" in table and table.count("\n") == 5
    assert "| profile | online | 4 |" in table


def test_report_files(report: Report, tmp_path: Path) -> None:
    files = save(report, tmp_path / "out", tmp_path / "results")
    for name in ("projection.png", "profiles.png", "k_selection.png"):
        assert_png(tmp_path / "out" / name)
    md = (tmp_path / "out" / "report.md").read_text()
    for section in ("## Personas", "### Choice of k on profile", "![users by segment]"):
        assert section in md
    figures = json.loads((tmp_path / "results" / "segments-synthetic.json").read_text())
    assert figures["machine"].endswith("cores") and figures["dataset"] == "synthetic"
    assert figures["date"] and figures["profile:chosen_k"] == 4
    assert figures["profile:online:k"] == 4 and figures["profile:online:ari_planted"] >= 0.8
    assert all(isinstance(v, int | float | str) for v in figures.values())
    assert (tmp_path / "out" / "segments-synthetic.json").read_text() == (
        tmp_path / "results" / "segments-synthetic.json"
    ).read_text()
    assert len(files) == 6


def test_personas_describe_each_segment(report: Report) -> None:
    people = report.people
    assert [p.segment for p in people] == [0, 1, 2, 3]
    assert sum(p.size for p in people) == report.users
    assert math.isclose(sum(p.share for p in people), 1.0)
    md = report.personas_md
    for p in people:
        assert f"### Segment {p.segment}: {p.size:,} users" in md
        assert len(p.categories) == 3 and all(name.startswith("c") for name, _, _ in p.categories)
        assert p.prototype.startswith("u") and len(p.items) == 5
    # seed 1 plants two segments at the 80 price level and two at 5: two dear, two cheap
    relative = sorted(p.price_relative for p in people)
    assert relative[1] < 1.0 < relative[2]


def test_personas_figures_on_a_tiny_log(tmp_path: Path) -> None:
    ds = generate(n_users=60, n_items=40, n_segments=2, events_per_user=(2, 6), seed=4)
    interactions = from_dataset(ds, repeats="keep")
    labels = np.array([ds.segment_of[u] for u in interactions.user_ids])
    labels[:3] = -1  # noise goes last, under its own title
    x = np.random.default_rng(0).normal(size=(interactions.n_users, 4))
    people = pers.personas(interactions, labels, x)
    assert [p.segment for p in people] == [0, 1, -1]
    assert people[-1].size == 3 and "Outliers" in pers.markdown(people, "planted labels")
    h = interactions.histories
    end = h.times.max()
    members = np.flatnonzero(labels == 0)
    lengths = h.lengths()[members]
    recency = (end - h.times[h.offsets[members + 1] - 1]) / 86_400_000
    assert people[0].events == float(np.median(lengths))
    assert people[0].recency_days == pytest.approx(float(np.median(recency)))
    assert_png(pers.plot_projection(x, labels, tmp_path / "p.png", "t"))
    assert_png(pers.plot_profiles(people, tmp_path / "b.png", "t"))
    assert pers.per_30_days(np.array([6]), np.array([0.0]))[0] == 6.0


def test_cli_segments_with_als_embeddings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    args = ["segments", "synthetic", "--embedding", "als", "--k", "4", "--limit", "20000"]
    code = main([*args, "--out", str(out), "--results", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| als | batch k-means | 4 |" in printed and "| profile | online | 4 |" in printed
    figures = json.loads((tmp_path / "segments-synthetic-als.json").read_text())
    assert figures["als:kmeans:k"] == 4 and "profile:online:silhouette" in figures
    assert (out / "report.md").is_file()
    assert not (out / "k_selection.png").exists()  # k was given, nothing was chosen


def test_cli_rejects_a_bad_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["segments", "synthetic", "--k-range", "5", "--results", ""]) == 2
    assert "2-10" in capsys.readouterr().err


@pytest.mark.skipif("ml-100k" not in available(), reason="../shared/data/ml-100k is missing")
def test_report_on_movielens(tmp_path: Path) -> None:
    report = run("ml-100k", ReportConfig(limit=30_000, k_range=(2, 5)))
    assert report.source == "ml-100k, first 30,000 events"
    assert not report.planted and len(report.rows) == 4
    assert all(not math.isnan(r.scores.silhouette) for r in report.rows[:3])
    names = {name for p in report.people for name, _, _ in p.categories}
    assert names & {"Drama", "Comedy", "Action"}  # genre names, not hash buckets
    assert all(math.isnan(p.price) for p in report.people)  # MovieLens has no prices
    save(report, tmp_path, None)
    assert "price level: unknown" in (tmp_path / "report.md").read_text().lower()
