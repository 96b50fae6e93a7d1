"""Two-stage hybrid: candidates from several recommenders, reranked by LightGBM lambdarank."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np

from models.base import Recommender
from models.baselines.als import ALS, ALSConfig
from models.baselines.features import CONTEXT_FEATURES, PAD_SCORE, ItemStats, row_index, top_k
from models.baselines.itemknn import ItemKNN, ItemKNNConfig
from models.data import Histories, Interactions
from models.split import EvalSet, temporal
from schemas.errors import ConfigError

if TYPE_CHECKING:
    from lightgbm import LGBMRanker

GeneratorFactory = Callable[[], Recommender]
Holdout = Literal["auto", "leave-one-out", "temporal"]


@dataclass(frozen=True)
class FitOnce:
    """A generator too costly to fit twice, such as a sequence model.

    It is fit once, without the held-out end of the training data, and that fit both
    labels the ranker's lists and scores afterwards: it misses the last event of each
    history as a training target, and the training time is halved.
    """

    factory: GeneratorFactory

    def __call__(self) -> Recommender:
        return self.factory()


@dataclass(frozen=True)
class HybridConfig:
    """Ranker settings chosen on the online-retail, ml-100k and toys validation sets.

    The ranker overfits a few hundred lists quickly and its validation NDCG is noisy,
    hence small trees, many samples per leaf and a patient early stop.
    """

    candidates: int = 200  # per user, merged rank by rank from the generators' top lists
    # How the ranker's training labels are held out of the training data: the last
    # event per user, or the last ``holdout_share`` of the time line. "auto" follows
    # the data set's own split (``Interactions.split``), as ``models.split.make_split`` does.
    holdout: Holdout = "auto"
    holdout_share: float = 0.1
    max_queries: int = 20_000  # users sampled to train the ranker (those with a hit)
    n_estimators: int = 500  # upper bound; early stopping picks the number
    learning_rate: float = 0.05
    num_leaves: int = 7
    min_child_samples: int = 200
    early_stopping_rounds: int = 100
    half_life_days: float = 7.0  # for the recent-popularity feature
    score_batch: int = 1024
    # LightGBM threads. One: the ranker's data is small, and OpenMP workers that
    # spin-wait for a busy second core made training ten times slower, not faster.
    threads: int = 1
    seed: int = 0
    als: ALSConfig = field(default_factory=ALSConfig)
    itemknn: ItemKNNConfig = field(default_factory=ItemKNNConfig)

    def __post_init__(self) -> None:
        counts = (self.candidates, self.max_queries, self.score_batch, self.n_estimators)
        if min(counts) < 1:
            raise ConfigError(
                f"candidates, max_queries, score_batch and n_estimators must be >= 1, got {counts}"
            )
        if self.holdout not in ("auto", "leave-one-out", "temporal"):
            raise ConfigError(f"unknown holdout {self.holdout!r}")
        if not 0.0 < self.holdout_share < 1.0:
            raise ConfigError(f"holdout_share must lie in (0, 1), got {self.holdout_share}")


class Hybrid:
    """Candidates from ALS and ItemKNN (and any ``extra`` generators), reranked by LightGBM.

    A generator is given as a factory, since each is fit twice: once without the
    held-out end of the training data (to label the ranker's training lists without
    leaking), once on all of it (for scoring), unless wrapped in ``FitOnce``. Each
    fit sees the validation targets ``fit`` is given, for a generator that stops
    early on them. ``generators`` replaces the default pair; the first generator's
    scores order the items outside the candidate list.
    """

    def __init__(
        self,
        config: HybridConfig | None = None,
        extra: Sequence[GeneratorFactory] = (),
        generators: Sequence[GeneratorFactory] | None = None,
    ) -> None:
        self.config = c = config or HybridConfig()
        default: list[GeneratorFactory] = [lambda: ALS(c.als), lambda: ItemKNN(c.itemknn)]
        self.factories = [*(default if generators is None else generators), *extra]
        if not self.factories:
            raise ConfigError("Hybrid needs at least one candidate generator")
        self.name = "hybrid"
        self.generators: list[Recommender] = []
        self.stats: ItemStats | None = None
        self.ranker: LGBMRanker | None = None
        self.feature_names: list[str] = []

    def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        import lightgbm

        c = self.config
        rng = np.random.default_rng(c.seed)
        rest, held = self._hold_out(train)
        self.generators, self.stats = self._fit_generators(rest, valid)
        x, y = self._labelled(held, rng)
        if not len(y):
            raise ValueError(f"{train.name}: no held-out target is among the candidates")
        self.generators, self.stats = self._fit_generators(train, valid, self.generators)
        if valid is not None and len(valid):
            x_val, y_val = self._labelled(valid, rng)
        else:  # early stopping on a tenth of the held-out lists instead
            n_lists = len(y) // self._width
            n_val = max(1, n_lists // 10) if n_lists > 1 else 0
            cut = (n_lists - n_val) * self._width
            x, x_val, y, y_val = x[:cut], x[cut:], y[:cut], y[cut:]
        ranker = lightgbm.LGBMRanker(
            objective="lambdarank",
            n_estimators=c.n_estimators,
            learning_rate=c.learning_rate,
            num_leaves=c.num_leaves,
            min_child_samples=c.min_child_samples,
            random_state=c.seed,
            n_jobs=c.threads,
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        )
        fit_args: dict[str, Any] = {}
        if len(y_val):
            # LightGBM 4.7 renamed eval_set (still accepted, with a warning) to eval_X/eval_y.
            if "eval_X" in inspect.signature(ranker.fit).parameters:
                fit_args = {"eval_X": (x_val,), "eval_y": (y_val,)}
            else:
                fit_args = {"eval_set": [(x_val, y_val)]}
            fit_args |= {
                "eval_group": [np.full(len(y_val) // self._width, self._width)],
                "eval_at": [10],
                "callbacks": [lightgbm.early_stopping(c.early_stopping_rounds, verbose=False)],
            }
        # Feature names stay on the side (``feature_names``): given to LightGBM, they
        # make scikit-learn warn at every predict on a plain array.
        ranker.fit(x, y, group=np.full(len(y) // self._width, self._width), **fit_args)
        self.ranker = ranker
        return self

    def score(self, histories: Histories) -> np.ndarray:
        if self.ranker is None:
            raise RuntimeError(f"{self.name}: score() called before fit()")
        parts = []
        for start in range(0, len(histories), self.config.score_batch):
            batch = histories.slice(start, min(start + self.config.score_batch, len(histories)))
            first, candidates, x = self._candidates(batch)
            flat = x.reshape(-1, x.shape[-1])
            predicted = np.asarray(
                self.ranker.predict(flat, num_threads=self.config.threads)
            ).reshape(candidates.shape)
            finite = np.where(np.isfinite(first), first, -np.inf)
            top = finite.max(axis=1, initial=-np.inf, keepdims=True)
            # Non-candidates keep the first generator's order, shifted to <= -1, and
            # candidates score their place in the reranked list (N for the first ... 1),
            # so every candidate outranks every other item. A shallow ranker predicts
            # few distinct values; the stable sort then keeps the merged generator order.
            out = (first - np.where(np.isfinite(top), top, 0.0) - 1.0).astype(np.float32)
            order = np.argsort(-predicted, axis=1, kind="stable")
            places = np.empty(candidates.shape, dtype=np.float32)
            width = candidates.shape[1]
            np.put_along_axis(places, order, np.arange(width, 0, -1, dtype=np.float32)[None], 1)
            np.put_along_axis(out, candidates, places, axis=1)
            out[:, 0] = PAD_SCORE
            parts.append(out)
        if not parts:
            return np.zeros((0, self._n_columns), dtype=np.float32)
        return np.concatenate(parts)

    @property
    def _n_columns(self) -> int:
        assert self.stats is not None
        return len(self.stats.prices)

    @property
    def _width(self) -> int:
        return min(self.config.candidates, self._n_columns - 1)

    def _fit_generators(
        self,
        data: Interactions,
        valid: EvalSet | None,
        fitted: Sequence[Recommender] = (),
    ) -> tuple[list[Recommender], ItemStats]:
        """Each generator fit on ``data``, or taken from ``fitted`` where it fits once."""
        generators = [
            fitted[i] if fitted and isinstance(factory, FitOnce) else factory().fit(data, valid)
            for i, factory in enumerate(self.factories)
        ]
        names = [g.name for g in generators]
        if len(set(names)) != len(names):
            raise ConfigError(f"generator names must differ, got {names}")
        per_generator = [f"{n}_{kind}" for n in names for kind in ("score", "gap", "rank")]
        self.feature_names = [*per_generator, *CONTEXT_FEATURES]
        return generators, ItemStats.of(data, self.config.half_life_days)

    def _hold_out(self, train: Interactions) -> tuple[Interactions, EvalSet]:
        """Training data without its end, and the end as labelled lists."""
        kind = self.config.holdout
        if kind == "auto":
            kind = train.split
        if kind == "temporal":
            times = train.histories.times
            boundary = int(np.quantile(times, 1.0 - self.config.holdout_share))
            split = temporal(train, valid_from_ms=boundary, test_from_ms=int(times.max()) + 1)
            return split.train, split.valid
        lengths = train.histories.lengths()
        users = np.flatnonzero(lengths >= 2)  # a user keeps at least one event to fit on
        n = lengths[users]
        held = EvalSet(train.prefixes(users, n - 1), train.windows(users, n - 1, n))
        return train.truncated(np.where(lengths >= 2, lengths - 1, lengths)), held

    def _labelled(self, lists: EvalSet, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Features and 0/1 labels of the candidate lists that contain a target, sampled."""
        xs, ys = [], []
        for start in range(0, len(lists), self.config.score_batch):
            batch = lists.slice(start, min(start + self.config.score_batch, len(lists)))
            _, candidates, x = self._candidates(batch.inputs)
            targets = batch.targets
            hit = np.zeros((len(batch), self._n_columns), dtype=bool)
            hit[row_index(targets), targets.items] = True
            y = np.take_along_axis(hit, candidates, axis=1)
            keep = y.any(axis=1)
            xs.append(x[keep])
            ys.append(y[keep])
        x_all, y_all = np.concatenate(xs), np.concatenate(ys)
        if len(y_all) > self.config.max_queries:
            chosen = np.sort(rng.choice(len(y_all), self.config.max_queries, replace=False))
            x_all, y_all = x_all[chosen], y_all[chosen]
        return x_all.reshape(-1, x_all.shape[-1]), y_all.ravel().astype(np.int32)

    def _candidates(self, histories: Histories) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first generator's scores, candidate items ``[n, N]`` and their features."""
        assert self.stats is not None
        n, width = len(histories), self._width
        rows = row_index(histories)
        scores, tops = [], []
        for g in self.generators:
            s = g.score(histories)
            masked = s.copy()
            masked[:, 0] = -np.inf
            masked[rows, histories.items] = -np.inf  # never propose what the user has
            scores.append(s)
            tops.append(top_k(masked, width))
        candidates = merge_ranked(tops, width)
        per_generator = []
        for s, top in zip(scores, tops, strict=True):
            rank = np.full(s.shape, width, dtype=np.float32)
            np.put_along_axis(rank, top, np.arange(width, dtype=np.float32)[None, :], axis=1)
            value = np.take_along_axis(s, candidates, axis=1)
            best = np.take_along_axis(s, top[:, :1], axis=1) if n else value
            per_generator += [value, best - value, np.take_along_axis(rank, candidates, axis=1)]
        context = self.stats.features(histories, candidates)
        x = np.concatenate([np.stack(per_generator, axis=2), context], axis=2)
        return scores[0], candidates, x.astype(np.float32)


def merge_ranked(tops: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Interleave top lists rank by rank, dropping repeats, and keep ``width`` per row.

    >>> merge_ranked([np.array([[1, 2, 3]]), np.array([[2, 4, 5]])], 3).tolist()
    [[1, 2, 4]]
    """
    stacked = np.stack(tops, axis=2).reshape(tops[0].shape[0], -1)  # rank-major
    order = np.argsort(stacked, axis=1, kind="stable")
    ordered = np.take_along_axis(stacked, order, axis=1)
    repeat = np.zeros(stacked.shape, dtype=bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    is_repeat = np.zeros_like(repeat)
    np.put_along_axis(is_repeat, order, repeat, axis=1)
    # Each top list alone holds ``width`` distinct items, so every row has enough.
    first = np.argsort(is_repeat, axis=1, kind="stable")[:, :width]
    return np.take_along_axis(stacked, first, axis=1)
