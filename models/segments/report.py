"""The ``segments`` report: online and batch segmentations of one data set side by side.

The online model is ``replay.one_pass`` (one pass over the events in time order, as the
stream makes it); the batch models are K-means, a Gaussian mixture and HDBSCAN on the
chosen user embedding. All of them are scored with the same silhouette,
Calinski-Harabasz and Davies-Bouldin scores, on the same points, and the report writes
personas of one segmentation with two figures.

>>> parse_k_range("2-10")
(2, 10)
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from models.data import Interactions, from_dataset
from models.datasets import Dataset, load
from models.datasets.synthetic import SyntheticDataset
from models.segments import embeddings as emb
from models.segments import offline
from models.segments import personas as pers
from models.segments.replay import OnlineConfig, OnlineRun, one_pass

MODEL_KEYS = {
    "online": "online",
    "batch k-means": "kmeans",
    "gaussian mixture": "gmm",
    "hdbscan": "hdbscan",
}


def parse_k_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep:
        raise ValueError(f"expected a range like 2-10, got {text!r}")
    return int(low), int(high)


@dataclass(frozen=True)
class ReportConfig:
    embedding: str = "profile"  # one of embeddings.EMBEDDINGS
    k: int | None = None  # fixed k for every model; None: chosen by silhouette over k_range
    k_range: tuple[int, int] = (2, 10)
    limit: int | None = None  # first N events in time order
    personas_of: str = "kmeans"  # which segmentation of the chosen embedding: or online, gmm
    checkpoint: str | None = None  # sequence model to read states from; None: train one
    sequence_epochs: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.embedding not in emb.EMBEDDINGS:
            raise ValueError(f"unknown embedding {self.embedding!r}: one of {emb.EMBEDDINGS}")
        if self.k is not None and self.k < 2:
            raise ValueError(f"k must be at least 2, got {self.k}")
        if self.personas_of not in ("online", "kmeans", "gmm", "hdbscan"):
            raise ValueError(f"personas_of must name a model, got {self.personas_of!r}")


@dataclass(frozen=True)
class Row:
    embedding: str
    segmentation: offline.Segmentation
    scores: offline.Scores
    ari: float  # vs planted segments (synthetic data), NaN otherwise


@dataclass
class Report:
    dataset: str
    source: str
    users: int
    events: int
    config: ReportConfig
    rows: list[Row] = field(default_factory=list)
    choices: dict[str, offline.KChoice] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # embedding name -> build time
    people: list[pers.Persona] = field(default_factory=list)
    personas_md: str = ""
    # what the personas and the projection show: embeddings, labels, a description
    view: tuple[np.ndarray, np.ndarray, str] | None = field(default=None, repr=False)
    online_vs_kmeans: float = math.nan  # ARI between the online and batch K-means labels
    date: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))

    @property
    def planted(self) -> bool:
        return any(not math.isnan(r.ari) for r in self.rows)

    def table(self) -> str:
        head = ["embedding", "model", "k", "silhouette", "Calinski-Harabasz", "Davies-Bouldin"]
        head += ["ARI vs planted"] if self.planted else []
        head += ["sizes %", "noise share", "mean max membership", "time s"]
        lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
        for r in self.rows:
            seg, s = r.segmentation, r.scores
            cells = [
                r.embedding,
                seg.model,
                str(seg.k),
                _f(s.silhouette),
                _f(s.calinski_harabasz, 0),
            ]
            cells += [_f(s.davies_bouldin)] + ([_f(r.ari)] if self.planted else [])
            cells += [
                _sizes(seg.labels),
                f"{100 * seg.noise_share:.1f} %",
                _f(seg.mean_max_membership),
                f"{seg.seconds:.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def notes(self) -> list[str]:
        c = self.config
        hdb = [r for r in self.rows if r.segmentation.model == "hdbscan"]
        covered = ", ".join(f"{r.embedding} {r.scores.scored:,}" for r in hdb)
        out = [
            "- online: `models.segments.replay.one_pass` on the profile, k set to the batch "
            "choice; its labels are `run.model.assign(run.embeddings)` (each user's nearest "
            "final centroid), and its time is the whole pass, profiling included.",
            "- profile embeddings go through the online model's scaler (fitted on the first "
            "profiles of the pass), so the online and batch rows score the very same points.",
            "- k: "
            + (
                f"fixed at {c.k}"
                if c.k
                else "the highest K-means silhouette over "
                f"{c.k_range[0]}-{c.k_range[1]} (tables below)"
            )
            + "; the mixture's labels are each user's largest membership.",
            "- HDBSCAN finds clusters on 5 principal components; its scores cover its non-noise "
            "users only"
            + (f" ({covered} of {self.users:,} here)" if hdb else "")
            + ("; noise counts as one more group in its ARI." if self.planted else "."),
        ]
        if any(r.scores.sampled for r in self.rows):
            out.append("- silhouette: on a random sample of 5,000 users (seed 0) per row.")
        if c.embedding != "profile":
            out.append(
                f"- the online model runs on profiles only: compare it with the profile rows; "
                f"the {c.embedding} rows are scored on {c.embedding} embeddings, and scores "
                "compare within an embedding, not across."
            )
        if not math.isnan(self.online_vs_kmeans):
            out.append(
                f"- online vs batch K-means on profiles: ARI {self.online_vs_kmeans:.3f} "
                "(1 = the same partition)."
            )
        return out

    def markdown(self) -> str:
        parts = [
            f"# Segments of {self.dataset}",
            "",
            f"{self.source}: {self.users:,} users, {self.events:,} events (repeats kept). "
            f"{self.date}, {_machine()}. Embeddings: "
            + ", ".join(f"{k} built in {v:.2f} s" for k, v in self.seconds.items())
            + ".",
            "",
            self.table(),
            "",
            *self.notes(),
        ]
        for name, choice in self.choices.items():
            parts += [
                "",
                f"### Choice of k on {name} embeddings (K-means)",
                "",
                choice.markdown(),
                "",
                f"Chosen by silhouette: k = {choice.chosen}; Calinski-Harabasz would take "
                f"{choice.by('calinski_harabasz')}, Davies-Bouldin {choice.by('davies_bouldin')}.",
            ]
        parts += ["", "## Personas", "", self.personas_md]
        parts += ["![users by segment](projection.png)", "", "![profiles](profiles.png)", ""]
        if self.choices:
            parts += ["![choice of k](k_selection.png)", ""]
        return "\n".join(parts)

    def flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"users": self.users, "events": self.events}
        for r in self.rows:
            key = f"{r.embedding}:{MODEL_KEYS[r.segmentation.model]}"
            figures = {
                "k": r.segmentation.k,
                "silhouette": r.scores.silhouette,
                "calinski_harabasz": r.scores.calinski_harabasz,
                "davies_bouldin": r.scores.davies_bouldin,
                "ari_planted": r.ari,
                "noise_share": r.segmentation.noise_share,
                "mean_max_membership": r.segmentation.mean_max_membership,
                "seconds": r.segmentation.seconds,
            }
            out.update({f"{key}:{k}": _round(v) for k, v in figures.items() if not _nan(v)})
        for name, choice in self.choices.items():
            out[f"{name}:chosen_k"] = choice.chosen
            for k, s in zip(choice.ks, choice.per_k, strict=True):
                out[f"{name}:k{k}:silhouette"] = _round(s.silhouette)
        out.update({f"{k}:embedding_seconds": round(v, 2) for k, v in self.seconds.items()})
        if not math.isnan(self.online_vs_kmeans):
            out["profile:online_vs_kmeans_ari"] = _round(self.online_vs_kmeans)
        return {**out, "dataset": self.source, "date": self.date, "machine": _machine()}


def _sizes(labels: np.ndarray) -> str:
    """Segment shares of all users, largest first, noise left out.

    >>> _sizes(np.array([0, 0, 0, 1, -1]))
    '60/20'
    """
    counts = np.bincount(labels[labels != offline.NOISE], minlength=1)
    counts = np.sort(counts[counts > 0])[::-1]
    return "/".join(f"{100 * c / len(labels):.0f}" for c in counts)


def _f(value: float, digits: int = 3) -> str:
    return "" if math.isnan(value) else f"{value:,.{digits}f}"


def _nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _round(value: float) -> float:
    return value if isinstance(value, int) else round(float(value), 6)


def _machine() -> str:
    return f"{os.cpu_count()} cores"


def _online(interactions: Interactions, k: int, seed: int) -> tuple[OnlineRun, float]:
    started = time.perf_counter()
    # A pass counts user updates, at least one per user: this many always seed it.
    config = OnlineConfig(k=k, init_points=min(500, interactions.n_users), seed=seed)
    return one_pass(interactions, online=config), time.perf_counter() - started


def _embedding(name: str, interactions: Interactions, config: ReportConfig) -> np.ndarray:
    if name == "als":
        return emb.als_embeddings(interactions)
    model = config.checkpoint or emb.train_sequence_model(
        interactions, epochs=config.sequence_epochs, seed=config.seed
    )
    return emb.sequence_embeddings(model, interactions.histories)


def run(dataset: str | Dataset, config: ReportConfig = ReportConfig()) -> Report:
    """Segment one data set every way the config asks; nothing is written."""
    ds = load(dataset, limit=config.limit) if isinstance(dataset, str) else dataset
    interactions = from_dataset(ds, repeats="keep")
    truth = None
    if isinstance(ds, SyntheticDataset):
        truth = np.array([ds.segment_of[u] for u in interactions.user_ids])
    source = ds.name + (f", first {config.limit:,} events" if config.limit else "")
    report = Report(ds.name, source, interactions.n_users, interactions.n_events, config)
    settings = offline.OfflineConfig(k_range=config.k_range, seed=config.seed)

    # The profile scaler does not depend on k, so a first pass gives the space k is
    # chosen in; the pass is rerun only when the choice differs.
    first, first_s = _online(interactions, config.k or config.k_range[0], config.seed)
    started = time.perf_counter()
    spaces = {"profile": emb.profile_embeddings(interactions, first.model.scaler)[0]}
    report.seconds["profile"] = time.perf_counter() - started
    if config.embedding != "profile":
        started = time.perf_counter()
        spaces[config.embedding] = _embedding(config.embedding, interactions, config)
        report.seconds[config.embedding] = time.perf_counter() - started

    labellings: dict[tuple[str, str], np.ndarray] = {}
    for name, x in spaces.items():
        k = config.k
        if k is None:
            report.choices[name] = offline.choose_k(x, settings)
            k = report.choices[name].chosen
        found: list[offline.Segmentation] = []
        if name == "profile":
            online, seconds = (
                (first, first_s) if k == first.model.k else _online(interactions, k, config.seed)
            )
            labels, _ = online.model.assign(online.embeddings)
            found.append(offline.Segmentation("online", labels.astype(np.int64), seconds))
        found += [offline.kmeans(x, k, settings), offline.gmm(x, k, settings)]
        found.append(offline.hdbscan(x, settings))
        for seg in found:
            s = offline.scores(x, seg.labels, settings.silhouette_sample, config.seed)
            ari = math.nan if truth is None else float(adjusted_rand_score(truth, seg.labels))
            report.rows.append(Row(name, seg, s, ari))
            labellings[(name, MODEL_KEYS[seg.model])] = seg.labels
    report.online_vs_kmeans = float(
        adjusted_rand_score(labellings[("profile", "online")], labellings[("profile", "kmeans")])
    )

    which = config.personas_of
    space = "profile" if which == "online" else config.embedding
    labels = labellings[(space, which)]
    titles = {p["item_id"]: p["title"] for p in ds.products if p.get("title")}
    report.people = pers.personas(interactions, labels, spaces[space], titles)
    model = next(m for m, key in MODEL_KEYS.items() if key == which)
    what = f"{model} on {space} embeddings"
    report.personas_md = pers.markdown(report.people, what)
    report.view = (spaces[space], labels, what)
    return report


def save(report: Report, out_dir: Path, results_dir: Path | None) -> list[Path]:
    """Write report.md, the PNGs and the JSON (also into ``results_dir`` when given)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if report.view is None:
        raise ValueError("the report holds no segmentation to draw")
    x, labels, what = report.view
    files = [
        pers.plot_projection(x, labels, out_dir / "projection.png", f"{report.dataset}: {what}"),
        pers.plot_profiles(report.people, out_dir / "profiles.png", f"{report.dataset}: {what}"),
    ]
    if report.choices:
        files.append(offline.plot_choices(report.choices, out_dir / "k_selection.png"))
    md = out_dir / "report.md"
    md.write_text(report.markdown())
    suffix = "" if report.config.embedding == "profile" else f"-{report.config.embedding}"
    name = f"segments-{report.dataset}{suffix}.json"
    text = json.dumps(report.flat(), indent=1) + "\n"
    files += [md, out_dir / name]
    (out_dir / name).write_text(text)
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        (results_dir / name).write_text(text)
        files.append(results_dir / name)
    return files
