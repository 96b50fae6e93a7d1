"""Offline benchmark: train every model on one data set and report them side by side.

Each model is fitted on the training view, tuned (early stopping) on the validation
targets only, and scored once on the test targets with full ranking and seen items
removed. The table says what a reader needs to pick a model: quality, what it
recommends (coverage), and what it costs (training, inference, memory).
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.base import Recommender
from models.data import from_dataset
from models.datasets import load
from models.evaluate import evaluate
from models.split import Split, SplitKind, make_split

Factory = Callable[[Split, Mapping[str, Any]], Recommender]


def _sasrec(**fixed: Any) -> Factory:
    def build(split: Split, overrides: Mapping[str, Any]) -> Recommender:
        from models.sasrec import SASRec, SASRecConfig, split_settings

        values = {**fixed, **overrides}
        defaults = split_settings(split.kind, split.train.timed, values.get("loss", "ce"))
        return SASRec(SASRecConfig(**{**defaults, **values}))

    return build


def _bert4rec(split: Split, overrides: Mapping[str, Any]) -> Recommender:
    from models.bert4rec import BERT4Rec, BERT4RecConfig

    return BERT4Rec(BERT4RecConfig(**overrides))


def _baseline(cls_name: str, config_name: str) -> Factory:
    def build(split: Split, overrides: Mapping[str, Any]) -> Recommender:
        import models.baselines as baselines

        config = getattr(baselines, config_name)(**overrides)
        model: Recommender = getattr(baselines, cls_name)(config)
        return model

    return build


def _hybrid(split: Split, overrides: Mapping[str, Any]) -> Recommender:
    from models.baselines import Hybrid, HybridConfig

    return Hybrid(HybridConfig(**{"holdout": split.kind, **overrides}))


def _hybrid_sasrec(split: Split, overrides: Mapping[str, Any]) -> Recommender:
    """The hybrid with SASRec as a third candidate generator, fit once (``FitOnce``).

    Its SASRec is built as the ``sasrec`` row's is, with that row's overrides, which
    ``run`` passes here under the key ``"sasrec"``.
    """
    from models.baselines import FitOnce, Hybrid, HybridConfig

    own = dict(overrides)
    sasrec = own.pop("sasrec", {})
    model = Hybrid(
        HybridConfig(**{"holdout": split.kind, **own}),
        extra=[FitOnce(lambda: MODELS["sasrec"](split, sasrec))],
    )
    model.name = "hybrid-sasrec"
    return model


MODELS: dict[str, Factory] = {
    "most-popular": _baseline("MostPopular", "MostPopularConfig"),
    "recent-popular": _baseline("RecentPopular", "RecentPopularConfig"),
    "item-knn": _baseline("ItemKNN", "ItemKNNConfig"),
    "als": _baseline("ALS", "ALSConfig"),
    "hybrid": _hybrid,
    "hybrid-sasrec": _hybrid_sasrec,
    "sasrec": _sasrec(),
    "sasrec-plain": _sasrec(features=()),
    "sasrec-timegap": _sasrec(features=("category", "price", "timegap")),
    "sasrec-sampled": _sasrec(loss="sampled"),
    "sasrec-bce": _sasrec(loss="bce"),
    "bert4rec": _bert4rec,
}
DEFAULT_MODELS = (
    "most-popular",
    "recent-popular",
    "item-knn",
    "als",
    "hybrid",
    "sasrec",
    "hybrid-sasrec",
    "bert4rec",
)
# A model built around another takes that one's overrides too (``--set sasrec.x=...``
# sets the SASRec inside the hybrid as well as the SASRec row).
EMBEDS = {"hybrid-sasrec": "sasrec"}
COLUMNS = (
    ("HR@10", "HR@10", "{:.4f}"),
    ("NDCG@10", "NDCG@10", "{:.4f}"),
    ("MRR", "MRR", "{:.4f}"),
    ("Coverage@10", "coverage@10", "{:.3f}"),
    ("valid NDCG@10", "valid NDCG@10", "{:.4f}"),
    ("train_s", "train s", "{:.1f}"),
    ("infer_s_per_1k", "inference s / 1k users", "{:.3f}"),
    ("peak_mb", "peak MB", "{:.0f}"),
)


@dataclass
class Row:
    model: str
    figures: dict[str, float] = field(default_factory=dict)


@dataclass
class Result:
    dataset: str
    source: str
    split: SplitKind
    users: int
    items: int
    events: int
    test_users: int
    rows: list[Row]
    seconds: dict[str, float]  # load, split, metrics, total

    @property
    def overhead(self) -> float:
        """Share of the run not spent fitting or scoring models."""
        own = self.seconds["load"] + self.seconds["split"] + self.seconds["metrics"]
        return own / self.seconds["total"] if self.seconds["total"] else 0.0

    def markdown(self) -> str:
        head = "| model | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
        rule = "|---|" + "---:|" * len(COLUMNS)
        lines = [head, rule]
        for row in self.rows:
            cells = [
                fmt.format(row.figures[key]) if key in row.figures else ""
                for key, _, fmt in COLUMNS
            ]
            lines.append(f"| {row.model} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def summary(self) -> str:
        return (
            f"{self.dataset} ({self.source}): {self.users:,} users, {self.items:,} items, "
            f"{self.events:,} events; {self.split} split, {self.test_users:,} test users; "
            f"full ranking, seen items removed. Benchmark overhead (load, split, metrics): "
            f"{100 * self.overhead:.1f} % of {self.seconds['total']:.0f} s."
        )

    def flat(self) -> dict[str, Any]:
        """``"model:figure": value`` pairs plus data set, date and machine, for JSON."""
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "split": self.split,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "overhead": round(self.overhead, 4),
            **{f"seconds:{k}": round(v, 2) for k, v in self.seconds.items()},
        }
        for row in self.rows:
            out.update({f"{row.model}:{k}": round(v, 6) for k, v in row.figures.items()})
        return out


def machine() -> str:
    """CPU model and core count, as the benchmark records name the machine."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            ]
        model = names[0] if names else model
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Peak resident memory above the starting point, in MB, sampled every 20 ms."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * page

    start = rss()
    out = {"peak_mb": 0.0}
    stop = threading.Event()

    def watch() -> None:
        peak = start
        while not stop.wait(0.02):
            peak = max(peak, rss())
            out["peak_mb"] = (peak - start) / 2**20

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["peak_mb"] = max(out["peak_mb"], (rss() - start) / 2**20)


def run(
    dataset: str,
    models: Sequence[str] = DEFAULT_MODELS,
    split: SplitKind | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[str], None] = print,
) -> Result:
    """Load, split, fit and evaluate ``models`` on ``dataset`` (a name or a file path)."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown models {unknown}; known: {', '.join(MODELS)}")
    started = time.perf_counter()
    raw = load(dataset)
    data = from_dataset(raw)
    loaded = time.perf_counter()
    chosen = make_split(data, split)
    split_done = time.perf_counter()
    progress(f"{raw.name}: {data.n_users:,} users, {data.catalogue.n_items:,} items, {chosen.kind}")
    rows, metric_seconds = [], 0.0
    for name in models:
        own = dict((overrides or {}).get(name, {}))
        if name in EMBEDS:
            own[EMBEDS[name]] = (overrides or {}).get(EMBEDS[name], {})
        model = MODELS[name](chosen, own)
        with peak_rss() as memory:
            fit_started = time.perf_counter()
            model.fit(chosen.train, chosen.valid)
            train_s = time.perf_counter() - fit_started
            valid = evaluate(model, chosen.valid, chosen.train, k=10)
            test = evaluate(model, chosen.test, chosen.train, k=10)
        metric_seconds += valid.metric_seconds + test.metric_seconds
        figures = {
            **test.metrics,
            "valid NDCG@10": valid["NDCG@10"],
            "train_s": train_s,
            "infer_s_per_1k": 1000 * test.score_seconds / max(test.n_users, 1),
            "users_per_s": test.n_users / test.score_seconds if test.score_seconds else 0.0,
            "peak_mb": memory["peak_mb"],
        }
        # when a sequence model reached the weights it keeps: the rest of its training
        # time is the patience spent confirming that nothing better follows
        # (a hybrid's are those of the sequence model among its candidate generators)
        scored: list[dict[str, float]] = []
        for part in (model, *getattr(model, "generators", [])):
            scored = scored or [r for r in getattr(part, "history", []) if "NDCG@10" in r]
        if scored:
            best = max(scored, key=lambda r: r["NDCG@10"])
            figures.update(
                epochs=scored[-1]["epoch"], best_epoch=best["epoch"], best_s=best["seconds"]
            )
        weight = getattr(model, "trend_weight", None)  # SASRec's, chosen on validation
        if weight is not None:
            figures["trend_weight"] = weight
        rows.append(Row(name, figures))
        progress(
            f"  {name:<16} NDCG@10 {figures['NDCG@10']:.4f}  HR@10 {figures['HR@10']:.4f}  "
            f"valid NDCG@10 {valid['NDCG@10']:.4f}  train {train_s:.1f} s"
        )
    return Result(
        dataset=raw.name,
        source=raw.source,
        split=chosen.kind,
        users=data.n_users,
        items=data.catalogue.n_items,
        events=data.n_events,
        test_users=len(chosen.test),
        rows=rows,
        seconds={
            "load": loaded - started,
            "split": split_done - loaded,
            "metrics": metric_seconds,
            "total": time.perf_counter() - started,
        },
    )


def save(result: Result, out_dir: Path) -> tuple[Path, Path]:
    """Write the table (markdown) and the flat figures (JSON) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"models-{result.dataset}"
    md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
    md.write_text(f"{result.summary()}\n\n{result.markdown()}\n")
    js.write_text(json.dumps(result.flat(), indent=1) + "\n")
    return md, js


def parse_overrides(pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``model.field=value`` pairs; values are read as JSON when they parse, else text.

    >>> parse_overrides(["sasrec.epochs=3", "als.factors=64", "sasrec.features=[\\"price\\"]"])
    {'sasrec': {'epochs': 3, 'features': ('price',)}, 'als': {'factors': 64}}
    """
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        model, dot, name = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"expected model.field=value, got {pair!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out.setdefault(model, {})[name] = tuple(value) if isinstance(value, list) else value
    return out


__all__ = ["DEFAULT_MODELS", "MODELS", "Result", "Row", "parse_overrides", "run", "save"]
