"""Serving top-k with histories grouped by length against one padded width.

A micro-batch mixes users with one purchase and users with fifty. Padded to the
longest, every row pays the transformer's cost at that width; ``models.serving.top_k``
scores each group of similar length at its own width. This times both on the same
batches (40 histories, a micro-batch at an offered 1,000 events/s, and 500, one near
saturation, over the Toys_and_Games catalogue; SASRec of the default shape
trained one epoch: its cost, not its quality, is what is measured), one torch thread as
in a worker, best of ``--repeats`` taken in turns (ten times as many for the small
batches, whose times are a few ms). Then offline scoring (``SequenceRecommender.score``,
as the ``benchmark`` command's evaluation calls it, 1,024 users at a time, every
thread) of the set's leave-one-out test users, against one padded width per chunk.

    python -m bench.topk_widths [--users 40 500] [--repeats 5]

Writes ``bench/results/topk_widths.json``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from bench.common import batches_main, cpu_description, header
from models.blocks import padded_batch
from models.data import Histories, from_dataset
from models.datasets import load
from models.datasets.base import Dataset
from models.sasrec import SASRec, SASRecConfig
from models.serving import _top_k, top_k
from models.split import Split, leave_one_out

K = 60  # the worker's candidate pool


def _best_ms(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best time of each, in ms, the two taking turns so that both see the same load."""
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for i, call in enumerate((a, b)):
            began = time.perf_counter()
            call()
            best[i] = min(best[i], time.perf_counter() - began)
    return 1000 * best[0], 1000 * best[1]


def one_epoch_toys() -> tuple[Dataset, Split, SASRec, float]:
    """Toys_and_Games, its leave-one-out split, and a SASRec of the default shape
    trained one epoch (what these benchmarks time depends on its shape, not its
    quality), with the seconds the split and training took."""
    ds = load("toys")
    began = time.perf_counter()
    split = leave_one_out(from_dataset(ds))
    model = SASRec(SASRecConfig(epochs=1, progress=False)).fit(split.train)
    return ds, split, model, time.perf_counter() - began


def run(batch_sizes: list[int], repeats: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    ds, split, model, trained = one_epoch_toys()
    out: dict[str, Any] = {
        "dataset": f"{ds.name}: {len(model.item_ids):,} items",
        **header(cpu_description()),
        "train_one_epoch_s": trained,
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
            one, grouped = _best_ms(
                partial(_top_k, model, histories, K, True, None),
                partial(top_k, model, histories, K),
                repeats * (10 if users < 100 else 1),
            )
            out[f"{users}_{name}_one_width_ms"] = one
            out[f"{users}_{name}_grouped_ms"] = grouped
            out[f"{users}_{name}_speedup"] = one / grouped
    torch.set_num_threads(os.cpu_count() or 1)
    test = split.test.inputs
    chunks = [test.slice(lo, min(lo + 1024, len(test))) for lo in range(0, len(test), 1024)]
    net = model._module()
    one, grouped = _best_ms(
        partial(_one_width_scores, net, chunks, model.config.maxlen),
        partial(_grouped_scores, model, chunks),
        repeats,
    )
    out["offline_users"] = len(test)
    out["offline_one_width_users_per_s"] = len(test) / (one / 1000)
    out["offline_grouped_users_per_s"] = len(test) / (grouped / 1000)
    out["offline_speedup"] = one / grouped
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


@torch.no_grad()
def _one_width_scores(net: Any, chunks: list[Histories], maxlen: int) -> None:
    for chunk in chunks:
        ids, times = padded_batch(chunk, maxlen)
        net.scores(ids, times).float().numpy()


def _grouped_scores(model: SASRec, chunks: list[Histories]) -> None:
    for chunk in chunks:
        model.score(chunk)


def main() -> None:
    batches_main("topk_widths", __doc__ or "", run, [40, 500], 5)


if __name__ == "__main__":
    main()
