"""Online K-means segmentation: River's incremental K-means over a shareable model state.

The state (`SegmentModel`) is plain numbers: the profile scaler, the centroids and how
many updates each centroid has taken. It is what the workers keep in Redis. Each
worker runs River's `KMeans` on a copy of it and hands back the change it made
(`OnlineKMeans.delta`), so that updates from several workers can be added together.

River's `halflife` is the step towards a new point. It is set before each update to
1 / (updates of that centroid), MacQueen's running mean, with a floor (`min_rate`)
so that a centroid keeps following its users when their habits change.

>>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
>>> model = seed_model(X, k=2, version="v1")
>>> online = OnlineKMeans(model)
>>> seg, dist = online.learn_predict(np.array([5.2, 5.1]))
>>> seg == int(online.predict(np.array([[5.0, 5.0]]))[0][0]), bool(dist < 0.3)
(True, True)
>>> delta, counts = online.delta()
>>> int(counts.sum()), bool(np.abs(delta).sum() > 0)
(1, True)
"""

from __future__ import annotations

import functools
import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from river import cluster
from sklearn.cluster import KMeans as BatchKMeans

from models.segments.profile import ProfileConfig, ProfileScaler


@dataclass(frozen=True)
class SegmentModel:
    """Centroids in the embedding space, the update count of each, and the scaler."""

    version: str
    centroids: np.ndarray = field(repr=False)  # float64 [k, dim]
    counts: np.ndarray = field(repr=False)  # float64 [k]
    scaler: ProfileScaler | None = None  # None when the embeddings are not profiles

    @property
    def k(self) -> int:
        return len(self.centroids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "centroids": self.centroids.tolist(),
            "counts": self.counts.tolist(),
            "scaler": None if self.scaler is None else self.scaler.to_dict(),
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], profile: ProfileConfig | None = None
    ) -> SegmentModel:
        scaler = data.get("scaler")
        return cls(
            version=str(data["version"]),
            centroids=np.asarray(data["centroids"], dtype=np.float64),
            counts=np.asarray(data["counts"], dtype=np.float64),
            scaler=None
            if scaler is None
            else ProfileScaler.from_dict(scaler, profile or ProfileConfig()),
        )

    def assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid of each row of ``x`` and the Euclidean distance to it."""
        d2 = ((x[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
        seg = d2.argmin(axis=1)
        return seg, np.sqrt(d2[np.arange(len(x)), seg])


def seed_model(
    x: np.ndarray, k: int, version: str, scaler: ProfileScaler | None = None, seed: int = 0
) -> SegmentModel:
    """Initial centroids by k-means++ and Lloyd on a first sample of embeddings.

    River's own initialisation draws centroids at random, which on a small number of
    well-separated groups often leaves one centroid with no users and two groups under
    another; seeding from data is what STREAMKMeans does with its first chunk.
    """
    k = max(1, min(k, len(np.unique(x, axis=0))))
    fitted = BatchKMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
    counts = np.bincount(fitted.labels_, minlength=k).astype(np.float64)
    return SegmentModel(version, fitted.cluster_centers_.astype(np.float64), counts, scaler)


class _KMeans(cluster.KMeans):
    """River's `KMeans`, told which centre is nearest when the caller knows it.

    `OnlineKMeans` finds the nearest centre on a numpy copy of the centres before each
    update (the step size depends on it); River's own search walks every centre's dict
    again, for the same answer, at several times the cost. River still moves the centre.
    """

    nearest: int | None = None

    def predict_one(self, x: dict[Any, float]) -> int:
        if self.nearest is not None:
            return self.nearest
        return int(super().predict_one(x))


class OnlineKMeans:
    """River's `KMeans` started from a `SegmentModel`, recording what it changes."""

    def __init__(self, model: SegmentModel, min_rate: float = 0.01, seed: int = 0) -> None:
        if not 0.0 < min_rate <= 1.0:
            raise ValueError(f"min_rate must lie in (0, 1], got {min_rate}")
        self.min_rate = min_rate
        self._seed = seed
        self.load(model)

    def load(self, model: SegmentModel) -> None:
        """Take the shared state as the new starting point (drops local, unsent changes)."""
        self.model = model
        k, dim = model.centroids.shape
        self._river = _KMeans(n_clusters=k, halflife=1.0, p=2, seed=self._seed)
        rng = random.Random(self._seed)
        fill = functools.partial(rng.gauss, 0.0, 1.0)
        # River adds a feature lazily with a random coordinate; every feature is set here,
        # so that fallback is never used.
        self._river.centers = {
            c: defaultdict(fill, enumerate(model.centroids[c].tolist())) for c in range(k)
        }
        self._dim = dim
        self._counts = model.counts.copy()
        self._learnt = np.zeros(k)
        # A copy of River's centers as a matrix, kept in step after each update: the step
        # size depends on which centroid is nearest, and finding it here costs a tenth of
        # River's dict-based search, which is then skipped.
        self._mirror = model.centroids.copy()

    def learn_predict(self, x: np.ndarray) -> tuple[int, float]:
        """Move the nearest centroid towards ``x``; its segment and distance after the move."""
        nearest = int(((self._mirror - x) ** 2).sum(axis=1).argmin())
        self._river.halflife = max(1.0 / (self._counts[nearest] + 1.0), self.min_rate)
        self._river.nearest = nearest
        try:
            segment = int(self._river.learn_predict_one(dict(enumerate(x.tolist()))))
        finally:
            self._river.nearest = None
        self._counts[segment] += 1.0
        self._learnt[segment] += 1.0
        center = self._river.centers[segment]
        row = np.fromiter((center[i] for i in range(self._dim)), np.float64, self._dim)
        self._mirror[segment] = row
        return segment, float(np.sqrt(((row - x) ** 2).sum()))

    def centroids(self) -> np.ndarray:
        return self._mirror.copy()

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segments and distances for rows of ``x`` under the current centroids, no learning."""
        return replace(self.model, centroids=self.centroids()).assign(x)

    def delta(self) -> tuple[np.ndarray, np.ndarray]:
        """Centroid shift and update counts since the last `load`."""
        return self.centroids() - self.model.centroids, self._learnt.copy()
