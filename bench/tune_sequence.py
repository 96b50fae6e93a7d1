"""Grid search of sequence-model settings, selected on validation targets only.

Every combination of the grid is trained on the training view and scored on the
validation targets; the run reports the test figures of the one combination with the
best validation NDCG@10, so the test targets never steer the choice.

    python -m bench.tune_sequence toys --model sasrec \
        --grid '{"dropout": [0.2, 0.5], "lr": [0.001, 0.003]}' --workers 4

Runs go to separate processes (``--workers``); on an accelerator pass ``--device cuda``.
Each finished run is appended to ``bench/results/tune-<model>-<set>.jsonl``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import signal
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
_SPLITS: dict[str, Any] = {}


def combinations(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, lists turned into tuples.

    >>> combinations({"a": [1, 2], "b": [["x"]]})
    [{'a': 1, 'b': ('x',)}, {'a': 2, 'b': ('x',)}]
    """
    keys = list(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        out.append(
            {k: tuple(v) if isinstance(v, list) else v for k, v in zip(keys, values, strict=True)}
        )
    return out


def _split(dataset: str) -> Any:
    from models.data import from_dataset
    from models.datasets import load
    from models.split import make_split

    if dataset not in _SPLITS:
        _SPLITS[dataset] = make_split(from_dataset(load(dataset)))
    return _SPLITS[dataset]


def trial(dataset: str, model: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Fit one combination; validation and test figures of the restored best weights."""
    from models.benchmark import MODELS
    from models.evaluate import evaluate

    split = _split(dataset)
    recommender: Any = MODELS[model](split, {"progress": False, **settings})
    started = time.perf_counter()
    recommender.fit(split.train, split.valid)
    seconds = time.perf_counter() - started
    valid = evaluate(recommender, split.valid, split.train, k=10)
    test = evaluate(recommender, split.test, split.train, k=10)
    history = getattr(recommender, "history", [])
    return {
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "valid NDCG@10": valid["NDCG@10"],
        "valid HR@10": valid["HR@10"],
        "test NDCG@10": test["NDCG@10"],
        "test HR@10": test["HR@10"],
        "train_s": seconds,
        "epochs": history[-1]["epoch"] if history else 0,
    }


def _die_with_parent() -> None:
    """Worker initialiser: a killed sweep must not leave its trainings running (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--grid", required=True, help="JSON object: field -> list of values")
    parser.add_argument("--fixed", default="{}", help="JSON object of settings for every run")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    fixed = json.loads(args.fixed)
    runs = [{**fixed, **c} for c in combinations(json.loads(args.grid))]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / f"tune-{args.model}-{args.dataset}.jsonl"
    results = []
    # spawn: a forked child cannot use CUDA once the parent touched it
    with ProcessPoolExecutor(
        args.workers, mp_context=mp.get_context("spawn"), initializer=_die_with_parent
    ) as pool:
        futures = [pool.submit(trial, args.dataset, args.model, r) for r in runs]
        for future in as_completed(futures):
            row = future.result()
            row["date"] = datetime.now(UTC).isoformat(timespec="seconds")
            results.append(row)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"valid {row['valid NDCG@10']:.4f}  test {row['test NDCG@10']:.4f}  "
                f"HR {row['test HR@10']:.4f}  {row['train_s']:6.1f} s  ep {row['epochs']:3d}  "
                f"{row['settings']}",
                flush=True,
            )
    best = max(results, key=lambda r: r["valid NDCG@10"])
    print(f"selected on validation: {json.dumps(best)}")


if __name__ == "__main__":
    main()
