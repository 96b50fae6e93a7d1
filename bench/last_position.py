"""Scoring from the last position alone against a full encoder pass.

Scoring the next item reads the encoder's hidden state at the last position only.
``ItemEncoder.forward(..., last_only=True)`` runs the last block for that one position
(its attention reads every position; its query, residual and feed-forward are cut
to the last one); a full pass computes every position and keeps one. Both run on the
same micro-batches of real histories (Toys_and_Games test users, in the order of the
test set, as the model's item indices), with a SASRec of the default shape trained one
epoch (the cost depends on its shape, not its quality), one torch thread as in a
worker, best of ``--repeats`` taken in turns; the scores are checked to agree. Also
timed: the worker's whole ``top_k`` on the same batch, to show the share the pass has.

    python -m bench.last_position [--users 20 55 200] [--repeats 50]

Writes ``bench/results/last_position.json``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from bench.common import batches_main, cpu_description, header
from bench.topk_widths import _best_ms, one_epoch_toys
from models.sasrec import SASRecNet
from models.serving import _left_padded, top_k
from streams.settings import Settings


@torch.no_grad()
def _full_pass(net: SASRecNet, ids: torch.Tensor, stamps: torch.Tensor) -> torch.Tensor:
    h = net.encoder(ids, stamps)[:, -1]
    return h @ net.encoder.items().T


@torch.no_grad()
def _last_only(net: SASRecNet, ids: torch.Tensor, stamps: torch.Tensor) -> torch.Tensor:
    return net.scores(ids, stamps)


def run(batch_sizes: list[int], repeats: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    ds, split, model, trained = one_epoch_toys()
    net = model.net
    assert isinstance(net, SASRecNet)
    out: dict[str, Any] = {
        "dataset": f"{ds.name}: {len(model.item_ids):,} items, test users' histories",
        **header(cpu_description()),
        "train_one_epoch_s": trained,
    }
    test = split.test.inputs
    maxlen, k = model.config.maxlen, Settings(**{}).candidates
    start = 0
    for users in batch_sizes:
        histories = [test.sequence(i).tolist() for i in range(start, start + users)]
        start += users
        width = min(maxlen, max(len(h) for h in histories))
        ids = _left_padded(histories, width)
        stamps = torch.zeros_like(ids)
        gap = (_full_pass(net, ids, stamps) - _last_only(net, ids, stamps)).abs().max()
        if not gap <= 1e-4:
            raise AssertionError(f"last-position scores differ by {float(gap)} on {users} rows")
        full, last = _best_ms(
            partial(_full_pass, net, ids, stamps), partial(_last_only, net, ids, stamps), repeats
        )
        whole, _ = _best_ms(partial(top_k, model, histories, k), lambda: None, repeats)
        out[f"{users}_width"] = width
        out[f"{users}_full_pass_ms"] = full
        out[f"{users}_last_only_ms"] = last
        out[f"{users}_speedup"] = full / last
        out[f"{users}_top_k_ms"] = whole
    return {key: round(v, 3) if isinstance(v, float) else v for key, v in out.items()}


def main() -> None:
    batches_main("last_position", __doc__ or "", run, [20, 55, 200], 50)


if __name__ == "__main__":
    main()
