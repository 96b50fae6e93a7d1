"""Serving top-k with histories grouped by length against one padded width.

A micro-batch mixes users with one purchase and users with fifty. Padded to the
longest, every row pays the transformer's cost at that width; ``models.serving.top_k``
scores each group of similar length at its own width. This times both on the same
batches (40 histories, a micro-batch at an offered 1,000 events/s, and 500, one near
saturation, over the Toys_and_Games catalogue; SASRec of the default shape
trained one epoch: its cost, not its quality, is what is measured), one torch thread as
in a worker, best of ``--repeats``.

    python -m bench.topk_widths [--users 40 500] [--repeats 5]

Writes ``bench/results/topk_widths.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from bench.common import RESULTS, cpu_description
from models.data import from_dataset
from models.datasets import load
from models.sasrec import SASRec, SASRecConfig
from models.serving import _top_k, top_k
from models.split import leave_one_out

K = 60  # the worker's candidate pool


def _best_ms(call: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - began)
    return 1000 * best


def run(batch_sizes: list[int], repeats: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    ds = load("toys")
    began = time.perf_counter()
    model = SASRec(SASRecConfig(epochs=1, progress=False)).fit(
        leave_one_out(from_dataset(ds)).train
    )
    out: dict[str, Any] = {
        "dataset": f"{ds.name}: {len(model.item_ids):,} items",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": cpu_description(),
        "load_average_1m_at_start": os.getloadavg()[0],
        "train_one_epoch_s": time.perf_counter() - began,
    }
    rng = np.random.default_rng(0)
    n_items = len(model.item_ids)
    maxlen = model.config.maxlen
    for users in batch_sizes:
        full = max(1, users // 50)
        mixes = {
            "short": rng.integers(1, 6, users),
            "short_and_2pct_full": np.r_[rng.integers(1, 6, users - full), [maxlen] * full],
            "uniform": rng.integers(1, maxlen + 1, users),
        }
        for name, lengths in mixes.items():
            histories = [rng.integers(1, n_items + 1, int(m)).tolist() for m in lengths]
            one = _best_ms(partial(_top_k, model, histories, K, True, None), repeats)
            grouped = _best_ms(partial(top_k, model, histories, K), repeats)
            out[f"{users}_{name}_one_width_ms"] = one
            out[f"{users}_{name}_grouped_ms"] = grouped
            out[f"{users}_{name}_speedup"] = one / grouped
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[40, 500])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    result = run(args.users, args.repeats)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "topk_widths.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
