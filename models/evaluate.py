"""Offline evaluation: score an EvalSet batch by batch, rank the held-out items, average metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.base import Recommender
from models.data import Histories, Interactions
from models.metrics import (
    NO_RANK,
    PAD_ITEM,
    auc,
    hit_rate,
    mrr,
    ndcg,
    novelty,
    pessimistic_ranks,
    precision,
    recall,
    self_information,
    top_items,
)
from models.split import EvalSet


def sampled_prefix(sampled: int) -> str:
    """Key prefix of sampled metrics, so they never pass for full-ranking figures.

    >>> sampled_prefix(100) + "HR@10"
    'sampled100:HR@10'
    """
    return f"sampled{sampled}:"


@dataclass(frozen=True)
class EvalReport:
    """Mean metrics under stable keys ("HR@10", "MRR", "sampled100:NDCG@10", ...) and costs."""

    model: str
    metrics: dict[str, float]
    ks: tuple[int, ...]
    n_users: int  # rows evaluated
    n_skipped: int  # rows left with no relevant item once seen targets were dropped
    score_seconds: float  # inside model.score
    metric_seconds: float  # everything else evaluate() did
    sampled: int | None = None

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    @property
    def overhead(self) -> float:
        """Share of the run spent outside ``model.score``."""
        total = self.score_seconds + self.metric_seconds
        return self.metric_seconds / total if total > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        """Metrics plus counts and timings, flat, for checkpoints and ModelUpdate maps."""
        return {
            **self.metrics,
            "users": float(self.n_users),
            "skipped": float(self.n_skipped),
            "score_seconds": self.score_seconds,
            "metric_seconds": self.metric_seconds,
        }


def evaluate(
    model: Recommender,
    evalset: EvalSet,
    train: Interactions,
    k: int | Sequence[int] = 10,
    exclude_seen: bool = True,
    batch_size: int = 1024,
    sampled: int | None = None,
    seed: int = 0,
) -> EvalReport:
    """Rank every catalogue item for each row of ``evalset`` and score the targets' ranks.

    ``k`` may be one cut-off or several (``(5, 10, 20)``), all read from one scoring
    pass. Column 0 is never ranked; with ``exclude_seen`` neither is any item of the
    row's input history, and a target already in it is dropped (a row left with no
    target is skipped and counted). Ties are pessimistic (``models.metrics``).
    ``train`` gives the catalogue size and the popularity behind novelty.

    ``sampled=N`` adds the published sampled protocol under ``"sampledN:"`` keys:
    the targets ranked against N items drawn uniformly, without replacement, from
    those the user has neither seen nor targets (fewer when fewer exist); with several
    targets the candidates are the targets plus the negatives. The draw is seeded by
    ``seed`` and consumed batch by batch, so it depends on ``batch_size``.

    The array ``model.score`` returns is masked in place (copied first when it is
    read-only), so a model must hand back an array it does not reuse.
    """
    ks = _check_ks(k)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    if sampled is not None and sampled < 1:
        raise ValueError(f"sampled must be None or >= 1 (got {sampled})")
    start = time.perf_counter()
    n_items = train.catalogue.n_items
    totals = _Totals(ks, n_items)
    information = self_information(np.bincount(train.histories.items, minlength=n_items + 1))
    rng = np.random.default_rng(seed)
    score_seconds = 0.0
    for lo in range(0, len(evalset), batch_size):
        batch = evalset.slice(lo, min(lo + batch_size, len(evalset)))
        tick = time.perf_counter()
        raw = model.score(batch.inputs)
        score_seconds += time.perf_counter() - tick
        scores = _checked(raw, len(batch), n_items, model.name)
        _evaluate_batch(scores, batch, exclude_seen, ks, information, sampled, rng, totals)
    metrics = totals.means()
    return EvalReport(
        model=model.name,
        metrics=metrics,
        ks=ks,
        n_users=totals.n_users,
        n_skipped=totals.n_skipped,
        score_seconds=score_seconds,
        metric_seconds=time.perf_counter() - start - score_seconds,
        sampled=sampled,
    )


class _Totals:
    """Running sums and counts of per-user values, NaN (undefined) values left out."""

    def __init__(self, ks: tuple[int, ...], n_items: int) -> None:
        self.ks = ks
        self.n_items = n_items
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.recommended = {k: np.zeros(n_items + 1, dtype=bool) for k in ks}
        self.n_users = 0
        self.n_skipped = 0

    def add(self, key: str, values: np.ndarray) -> None:
        defined = ~np.isnan(values)
        self.sums[key] = self.sums.get(key, 0.0) + float(values[defined].sum())
        self.counts[key] = self.counts.get(key, 0) + int(defined.sum())

    def add_ranking(self, prefix: str, ranks: np.ndarray, n_candidates: np.ndarray) -> None:
        for k in self.ks:
            self.add(f"{prefix}HR@{k}", hit_rate(ranks, k))
            self.add(f"{prefix}Recall@{k}", recall(ranks, k))
            self.add(f"{prefix}Precision@{k}", precision(ranks, k))
            self.add(f"{prefix}NDCG@{k}", ndcg(ranks, k))
        self.add(f"{prefix}MRR", mrr(ranks))
        self.add(f"{prefix}AUC", auc(ranks, n_candidates))

    def means(self) -> dict[str, float]:
        out = {
            key: s / n if (n := self.counts[key]) else float("nan") for key, s in self.sums.items()
        }
        for k, present in self.recommended.items():
            present[PAD_ITEM] = False
            out[f"Coverage@{k}"] = float(present.sum() / self.n_items)
        return out


def _check_ks(k: int | Sequence[int]) -> tuple[int, ...]:
    ks = (k,) if isinstance(k, int | np.integer) else tuple(k)
    if not ks or any(int(x) < 1 for x in ks):
        raise ValueError(f"k must be a positive int or a non-empty sequence of them (got {k!r})")
    return tuple(sorted({int(x) for x in ks}))


def _checked(scores: np.ndarray, rows: int, n_items: int, name: str) -> np.ndarray:
    if not isinstance(scores, np.ndarray) or scores.shape != (rows, n_items + 1):
        shape = getattr(scores, "shape", type(scores).__name__)
        raise ValueError(f"{name}.score returned {shape}, expected ({rows}, {n_items + 1})")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float32)
    elif not scores.flags.writeable:
        scores = scores.copy()
    # max() propagates NaN and is one cheap pass; isnan().any() makes two
    if scores.size and np.isnan(scores.max()):
        raise ValueError(
            f"{name}.score returned NaN for rows {np.isnan(scores).any(1).nonzero()[0][:5]}"
        )
    return scores


def _row_keys(histories: Histories, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ``row * (n_items + 1) + item`` of a batch, and each key's row."""
    rows = np.repeat(np.arange(len(histories)), histories.lengths())
    keys = np.unique(rows * (n_items + 1) + histories.items.astype(np.int64))
    return keys, keys // (n_items + 1)


def _evaluate_batch(
    scores: np.ndarray,
    batch: EvalSet,
    exclude_seen: bool,
    ks: tuple[int, ...],
    information: np.ndarray,
    sampled: int | None,
    rng: np.random.Generator,
    totals: _Totals,
) -> None:
    n, width = scores.shape
    n_items = width - 1
    seen_keys, seen_rows = _row_keys(batch.inputs, n_items)
    scores[:, 0] = -np.inf
    if exclude_seen:
        scores[seen_rows, seen_keys % width] = -np.inf
    target_keys, _ = _row_keys(batch.targets, n_items)
    relevant_keys = target_keys[target_keys % width != PAD_ITEM]
    if exclude_seen:
        relevant_keys = relevant_keys[~np.isin(relevant_keys, seen_keys, assume_unique=True)]
    rel_rows, rel_items = relevant_keys // width, relevant_keys % width
    n_rel = np.bincount(rel_rows, minlength=n)
    evaluated = n_rel > 0
    n_eval = int(evaluated.sum())
    totals.n_users += n_eval
    totals.n_skipped += n - n_eval
    if n_eval == 0:
        return

    n_seen = np.bincount(seen_rows[seen_keys % width != PAD_ITEM], minlength=n)
    n_candidates = (n_items - n_seen if exclude_seen else np.full(n, n_items))[evaluated]
    # keys are sorted, so each row's relevant items are contiguous
    row_of = np.cumsum(evaluated) - 1
    starts = np.concatenate([[0], np.cumsum(n_rel)])[rel_rows]
    relevant = np.full((n_eval, int(n_rel.max())), NO_RANK, dtype=np.int64)
    relevant[row_of[rel_rows], np.arange(len(rel_rows)) - starts] = rel_items
    kept = scores if n_eval == n else scores[evaluated]
    totals.add_ranking("", pessimistic_ranks(kept, relevant, n_candidates), n_candidates)

    top = top_items(kept, max(ks))
    for k in ks:
        totals.recommended[k][top[:, :k].ravel()] = True
        totals.add(f"Novelty@{k}", novelty(top[:, :k], information))

    if sampled is not None:
        excluded = np.union1d(seen_keys, target_keys)
        negatives = sample_unseen(rng, excluded, n, n_items, sampled)[evaluated]
        # candidates: the relevant items (column 0, always -inf, stands in for padding) then
        # the negatives (padded with item 0 too), so padding never counts as a candidate
        columns = np.concatenate([np.maximum(relevant, 0), negatives], axis=1)
        candidate_scores = np.take_along_axis(kept, columns, axis=1)
        slots = np.where(relevant >= 0, np.arange(relevant.shape[1]), NO_RANK)
        n_sampled = n_rel[evaluated] + np.count_nonzero(negatives != PAD_ITEM, axis=1)
        ranks = pessimistic_ranks(candidate_scores, slots, n_sampled)
        totals.add_ranking(sampled_prefix(sampled), ranks, n_sampled)


def sample_unseen(
    rng: np.random.Generator, excluded: np.ndarray, n_rows: int, n_items: int, size: int
) -> np.ndarray:
    """``size`` distinct items per row, uniform over 1..n_items minus the row's excluded ones.

    ``excluded`` holds sorted unique keys ``row * (n_items + 1) + item``. A row with
    fewer than ``size`` allowed items gets all of them, padded with ``PAD_ITEM``.

    >>> out = sample_unseen(np.random.default_rng(0), np.array([1, 2, 6]), 2, 4, 3)
    >>> sorted(out[0].tolist()), sorted(out[1].tolist())
    ([0, 3, 4], [2, 3, 4])
    """
    width = n_items + 1
    excluded = excluded[excluded % width != PAD_ITEM]
    ex_rows = excluded // width
    starts = np.searchsorted(ex_rows, np.arange(n_rows))
    n_allowed = n_items - np.bincount(ex_rows, minlength=n_rows)
    # Draw ranks among each row's allowed items, then map ranks to item numbers.
    ranks = np.zeros((n_rows, size), dtype=np.int64)
    drawn = np.zeros((n_rows, size), dtype=bool)
    rows = np.flatnonzero(n_allowed >= 2 * size)
    # With room to spare, draw with replacement and redraw repeats until none is left: the
    # procedure treats every allowed rank alike, so the final set is a uniform sample.
    picks = rng.integers(0, n_allowed[rows, None], size=(len(rows), size))
    while len(rows):
        picks.sort(axis=1)
        again = np.zeros(picks.shape, dtype=bool)
        again[:, 1:] = picks[:, 1:] == picks[:, :-1]
        if not again.any():
            break
        r, c = np.nonzero(again)
        picks[r, c] = rng.integers(0, n_allowed[rows[r]])
    ranks[rows], drawn[rows] = picks, True
    # Crowded rows: a random order of all their allowed ranks, cut at ``size``.
    rows = np.flatnonzero((n_allowed < 2 * size) & (n_allowed > 0))
    if len(rows):
        most = int(n_allowed[rows].max())
        keys = rng.random((len(rows), most))
        keys[np.arange(most) >= n_allowed[rows, None]] = np.inf
        take = min(size, most)
        picks = np.argpartition(keys, take - 1, axis=1)[:, :take]
        ranks[rows, :take] = picks
        drawn[rows, :take] = np.take_along_axis(keys, picks, axis=1) < np.inf
    # The j-th allowed item (0-based) is j + 1 plus the excluded items e_i whose count of
    # allowed items below them, e_i - 1 - i, is <= j; one searchsorted does every row.
    below = excluded % width - 1 - (np.arange(len(excluded)) - starts[ex_rows])
    queries = np.arange(n_rows)[:, None] * width + ranks
    skipped = np.searchsorted(ex_rows * width + below, queries, side="right") - starts[:, None]
    return np.where(drawn, ranks + 1 + skipped, PAD_ITEM)
