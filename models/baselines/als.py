"""Implicit-feedback matrix factorisation (ALS, Hu, Koren & Volinsky 2008) via ``implicit``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from threadpoolctl import threadpool_limits

from models.baselines.features import PAD_SCORE, user_item_matrix
from models.data import Histories, Interactions
from models.split import EvalSet
from schemas.errors import ConfigError

if TYPE_CHECKING:
    from implicit.cpu.als import AlternatingLeastSquares


@dataclass(frozen=True)
class ALSConfig:
    """Defaults: the best compromise on the ml-100k, toys and online-retail validation sets.

    The sets disagree (toys wants more factors and confidence, the denser two want
    less); these settings reach 83-91% of each set's own best validation NDCG@10.
    """

    factors: int = 128
    regularization: float = 3.0
    iterations: int = 15
    # Confidence of an observed item (alpha x its count) against 1 for an unobserved
    # one: how much a purchase outweighs the absence of one.
    alpha: float = 10.0
    seed: int = 0
    # implicit's own thread pool (0 = one per core); the solves are independent per
    # user/item, so the result does not depend on it.
    threads: int = 0

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1:
            raise ConfigError(
                f"factors and iterations must be >= 1, got {self.factors}, {self.iterations}"
            )
        if self.regularization < 0 or self.alpha <= 0:
            raise ConfigError(
                f"need regularization >= 0 and alpha > 0, got {self.regularization}, {self.alpha}"
            )


class ALS:
    """Item factors from training; a user's factor solved afresh from whatever history is given.

    Solving the user factor at score time (the exact least-squares step ALS itself
    alternates) lets the model score inputs it never trained on: a leave-one-out
    test input holding the validation item, or a new user in the stream.
    """

    def __init__(self, config: ALSConfig | None = None) -> None:
        self.config = config or ALSConfig()
        self.name = "als"
        self.model: AlternatingLeastSquares | None = None
        self.item_factors: np.ndarray | None = None  # float32 [n_items + 1, factors]

    def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        user_items = user_item_matrix(train.histories, train.catalogue.n_items + 1, binary=False)
        model = fit_als(user_items, self.config)
        self.model = model
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def user_factors(self, histories: Histories) -> np.ndarray:
        """Each history's least-squares user factor, float32 ``[n, factors]``."""
        if self.model is None or self.item_factors is None:
            raise RuntimeError(f"{self.name}: score() called before fit()")
        user_items = user_item_matrix(histories, self.item_factors.shape[0], binary=False)
        if not len(histories):
            return np.zeros((0, self.item_factors.shape[1]), dtype=np.float32)
        with threadpool_limits(1, "blas"):
            factors = self.model.recalculate_user(np.arange(len(histories)), user_items)
        return np.asarray(factors, dtype=np.float32)

    def score(self, histories: Histories) -> np.ndarray:
        users = self.user_factors(histories)
        assert self.item_factors is not None
        scores = users @ self.item_factors.T
        scores[:, 0] = PAD_SCORE
        return scores


def fit_als(user_items: Any, c: ALSConfig) -> Any:
    """implicit's ALS fitted on a users x items confidence matrix (CSR)."""
    from implicit.cpu.als import AlternatingLeastSquares

    # implicit runs its own threads; OpenBLAS threads inside them oversubscribe the
    # cores (implicit warns about it), so BLAS gets one thread while implicit runs.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=c.factors,
            regularization=c.regularization,
            alpha=c.alpha,
            iterations=c.iterations,
            random_state=c.seed,
            num_threads=c.threads,
            calculate_training_loss=False,
        )
        model.fit(user_items, show_progress=False)
    return model
