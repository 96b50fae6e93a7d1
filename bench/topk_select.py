"""Selecting the best k of a micro-batch's catalogue scores: two steps against one.

``models.serving._best`` takes the top k of the blocks' maxima, then the top k of those
blocks' columns; ``torch.topk`` takes the top k of the whole row. Both run on the same
score matrices (the rows of a micro-batch over the Toys_and_Games catalogue, 30 seen
items per row set to -inf as the worker does), one torch thread as in a worker, best
of ``--repeats`` taken in turns. The results are checked to be the same (tied scores
may come in another order). Selection
depends on the matrix's shape, not on a model's quality, so the scores are products of
random user and item vectors of the default width.

    python -m bench.topk_select [--users 48 200 500] [--repeats 50]

Writes ``bench/results/topk_select.json``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from bench.common import batches_main, cpu_description, header
from bench.topk_widths import _best_ms
from models.datasets import load
from models.serving import _best
from streams.settings import Settings

HIDDEN = 128  # SASRec's default width


def run(batch_sizes: list[int], repeats: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    ds = load("toys")
    columns = len(ds.products) + 2  # padding and the items, as the model scores them
    k = Settings(**{}).candidates
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(columns, HIDDEN, generator=gen) * HIDDEN**-0.5
    out: dict[str, Any] = {
        "dataset": f"{ds.name}: {columns:,} score columns",
        **header(cpu_description()),
        "k": k,
    }
    for users in batch_sizes:
        scores = torch.randn(users, HIDDEN, generator=gen) @ table.T
        scores[:, 0] = -torch.inf
        scores.scatter_(1, torch.randint(1, columns, (users, 30), generator=gen), -torch.inf)
        full, fast = torch.topk(scores, k, dim=1), _best(scores, k)
        # Tied scores may come in another order: torch.topk leaves theirs unspecified.
        same = torch.equal(full.values, fast[0]) and torch.equal(
            full.indices.sort(1).values, fast[1].sort(1).values
        )
        if not same:
            raise AssertionError(f"two-step top-k differs from torch.topk on {users} rows")
        one, two = _best_ms(
            partial(torch.topk, scores, k, dim=1), partial(_best, scores, k), repeats
        )
        out[f"{users}_topk_ms"] = one
        out[f"{users}_two_step_ms"] = two
        out[f"{users}_speedup"] = one / two
    return {key: round(v, 3) if isinstance(v, float) else v for key, v in out.items()}


def main() -> None:
    batches_main("topk_select", __doc__ or "", run, [48, 200, 500], 50)


if __name__ == "__main__":
    main()
