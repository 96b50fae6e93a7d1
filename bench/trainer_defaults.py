"""What the trainer's SASRec settings are worth on a shop's log split in time.

The trainer (``reco train``) splits the event log in time and trains SASRec with
``TrainerConfig.sasrec_config()``: the model's defaults plus what a time split calls for
(``models.sasrec.split_settings``: a 7-day horizon of targets and the shop's trend).
This trains the candidate as one retraining run does, with those settings and with the
bare model defaults, side by side, and scores both on the held-back window.

    python -m bench.trainer_defaults [online_retail] [--max-minutes 12]

Each setting runs in its own process on one torch thread, the two at once.
Writes ``bench/results/trainer_defaults.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.common import cpu_description, header, write_results

SETTINGS: dict[str, dict[str, Any]] = {
    "trainer": {},
    "model_defaults": {"horizon_days": None, "trend_days": None},
}


def _one(dataset: str, label: str, max_minutes: float) -> dict[str, float]:
    from models.data import from_dataset
    from models.datasets import load
    from models.evaluate import evaluate
    from models.sasrec import SASRec
    from models.split import temporal
    from streams.trainer import TrainerConfig

    model = {**SETTINGS[label], "threads": 1, "max_minutes": max_minutes}
    config = TrainerConfig(model=model)
    split = temporal(from_dataset(load(dataset)), window_share=config.window_share)
    started = time.perf_counter()
    sasrec = SASRec(config.sasrec_config()).fit(split.train, split.valid)
    seconds = time.perf_counter() - started
    test = evaluate(sasrec, split.test, split.train, k=config.ks())
    valid = evaluate(sasrec, split.valid, split.train, k=config.ks())
    figures = {
        "test_NDCG@10": test["NDCG@10"],
        "test_HR@10": test["HR@10"],
        "valid_NDCG@10": valid["NDCG@10"],
        "train_s": seconds,
        "validations": float(len([h for h in sasrec.history if "NDCG@10" in h])),
        "test_users": float(len(split.test)),
    }
    if sasrec.trend_weight is not None:
        figures["trend_weight"] = sasrec.trend_weight
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="online_retail")
    parser.add_argument("--max-minutes", type=float, default=12.0)
    args = parser.parse_args()
    started = header(cpu_description())
    with ProcessPoolExecutor(max_workers=len(SETTINGS)) as pool:
        futures = {
            label: pool.submit(_one, args.dataset, label, args.max_minutes) for label in SETTINGS
        }
        runs = {label: future.result() for label, future in futures.items()}
    figures: dict[str, Any] = {
        **started,
        "dataset": args.dataset,
        **{f"{label}:{k}": round(v, 4) for label, run in runs.items() for k, v in run.items()},
    }
    base = runs["model_defaults"]["test_NDCG@10"]
    if base > 0:
        figures["trainer_over_defaults_test_NDCG@10"] = round(
            runs["trainer"]["test_NDCG@10"] / base, 3
        )
    write_results("trainer_defaults", figures)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
