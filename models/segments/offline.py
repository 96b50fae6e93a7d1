"""Batch segmentation of user embeddings: K-means, a Gaussian mixture, HDBSCAN, choice of k.

These are the references the online K-means is judged against: they see every user
at once and may iterate. Scores are scikit-learn's: silhouette (higher is better,
in [-1, 1]), Calinski-Harabasz (higher is better) and Davies-Bouldin (lower is
better). HDBSCAN's noise points (label -1) are left out of every score.

>>> x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1]])
>>> s = scores(x, np.array([0, 0, 0, 1, 1, 1]))
>>> round(s.silhouette, 2), s.scored, s.sampled
(0.98, 6, False)
>>> math.isnan(scores(x, np.array([0, 0, 0, 0, 0, -1])).silhouette)  # one cluster: undefined
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.mixture import GaussianMixture

NOISE = -1


@dataclass(frozen=True)
class OfflineConfig:
    k_range: tuple[int, int] = (2, 10)  # inclusive
    seed: int = 0
    n_init: int = 4
    # Silhouette is quadratic in the points; above this many it is computed on a
    # random sample of this size (fixed seed), and the report says so.
    silhouette_sample: int = 5000
    gmm_covariance: str = "diag"  # "full" over 36 dims is slow and overfits small segments
    # Added to each variance: unused hash buckets are constant columns, and a variance
    # of ~0 there would make any user with a small share in one an outlier.
    gmm_reg_covar: float = 1e-3
    min_cluster_size: int | None = None  # HDBSCAN; None: 1 % of users, at least 10
    min_samples: int = 5  # HDBSCAN's density neighbourhood
    # HDBSCAN runs on this many principal components: densities in 32-36 dimensions are
    # so flat that it calls (nearly) every user noise on MovieLens and Online Retail.
    hdbscan_dims: int | None = 5

    def __post_init__(self) -> None:
        lo, hi = self.k_range
        if not 2 <= lo <= hi:
            raise ValueError(f"k_range must satisfy 2 <= low <= high, got {self.k_range}")


@dataclass(frozen=True)
class Scores:
    """Cluster-quality scores of one labelling, over its non-noise points."""

    silhouette: float
    calinski_harabasz: float
    davies_bouldin: float
    scored: int  # points the scores cover (noise left out)
    sampled: bool  # silhouette on a random sample of OfflineConfig.silhouette_sample points


def scores(x: np.ndarray, labels: np.ndarray, sample: int = 5000, seed: int = 0) -> Scores:
    """Silhouette, Calinski-Harabasz and Davies-Bouldin of ``labels`` over ``x``.

    Noise points are left out; with fewer than two clusters left, every score is NaN.
    """
    keep = labels != NOISE
    x, labels = x[keep], labels[keep]
    n = len(labels)
    if len(np.unique(labels)) < 2 or len(np.unique(labels)) >= n:
        return Scores(math.nan, math.nan, math.nan, n, False)
    sampled = n > sample
    sil = silhouette_score(
        x, labels, sample_size=sample if sampled else None, random_state=seed if sampled else None
    )
    return Scores(
        float(sil),
        float(calinski_harabasz_score(x, labels)),
        float(davies_bouldin_score(x, labels)),
        n,
        sampled,
    )


@dataclass(frozen=True)
class Segmentation:
    """Labels of one model (-1 = noise), its fit time and, for a mixture, the memberships."""

    model: str
    labels: np.ndarray = field(repr=False)  # int64 [n_users]
    seconds: float
    memberships: np.ndarray | None = field(default=None, repr=False)  # GMM: [n_users, k]

    @property
    def k(self) -> int:
        return len(np.unique(self.labels[self.labels != NOISE]))

    @property
    def noise_share(self) -> float:
        return float((self.labels == NOISE).mean()) if len(self.labels) else 0.0

    @property
    def mean_max_membership(self) -> float:
        """Mean over users of their largest membership: 1 = every user wholly in one segment."""
        if self.memberships is None:
            return math.nan
        return float(self.memberships.max(axis=1).mean())


def kmeans(x: np.ndarray, k: int, config: OfflineConfig = OfflineConfig()) -> Segmentation:
    started = time.perf_counter()
    fitted = KMeans(n_clusters=k, n_init=config.n_init, random_state=config.seed).fit(x)
    labels = fitted.labels_.astype(np.int64)
    return Segmentation("batch k-means", labels, time.perf_counter() - started)


def gmm(x: np.ndarray, k: int, config: OfflineConfig = OfflineConfig()) -> Segmentation:
    """Gaussian mixture: each user's memberships (posterior per component) sum to 1."""
    started = time.perf_counter()
    mixture = GaussianMixture(
        n_components=k,
        covariance_type=config.gmm_covariance,
        n_init=1,
        random_state=config.seed,
        reg_covar=config.gmm_reg_covar,
    ).fit(x)
    memberships = mixture.predict_proba(x)
    labels = memberships.argmax(axis=1).astype(np.int64)
    return Segmentation("gaussian mixture", labels, time.perf_counter() - started, memberships)


def min_cluster_size(n: int, config: OfflineConfig = OfflineConfig()) -> int:
    """HDBSCAN's smallest segment: 1 % of the users, at least 10.

    >>> min_cluster_size(943), min_cluster_size(4338)
    (10, 43)
    """
    return config.min_cluster_size or max(10, n // 100)


def hdbscan(x: np.ndarray, config: OfflineConfig = OfflineConfig()) -> Segmentation:
    """Density clusters of any number; users in no dense region are noise (-1): niches.

    Clusters are found on ``config.hdbscan_dims`` principal components; the labels are
    then scored, like every other model's, on the full embedding.
    """
    started = time.perf_counter()
    dims = config.hdbscan_dims
    if dims is not None and dims < min(x.shape):
        x = PCA(dims, random_state=config.seed).fit_transform(x)
    labels = HDBSCAN(
        min_cluster_size=min_cluster_size(len(x), config),
        min_samples=config.min_samples,
        copy=True,
    ).fit_predict(x)
    return Segmentation("hdbscan", labels.astype(np.int64), time.perf_counter() - started)


@dataclass(frozen=True)
class KChoice:
    """Scores of K-means at every k of a range, and the k of the best silhouette."""

    ks: tuple[int, ...]
    per_k: tuple[Scores, ...] = field(repr=False)
    chosen: int

    def by(self, score: str) -> int:
        """The k another score would choose: the highest CH or the lowest DB."""
        values = [getattr(s, score) for s in self.per_k]
        best = np.nanargmin(values) if score == "davies_bouldin" else np.nanargmax(values)
        return self.ks[int(best)]

    def markdown(self) -> str:
        lines = [
            "| k | silhouette | Calinski-Harabasz | Davies-Bouldin |",
            "|---:|---:|---:|---:|",
        ]
        for k, s in zip(self.ks, self.per_k, strict=True):
            mark = " (chosen)" if k == self.chosen else ""
            lines.append(
                f"| {k}{mark} | {s.silhouette:.3f} | {s.calinski_harabasz:,.0f} "
                f"| {s.davies_bouldin:.3f} |"
            )
        return "\n".join(lines)


def choose_k(x: np.ndarray, config: OfflineConfig = OfflineConfig()) -> KChoice:
    """K-means at each k of ``config.k_range``; the chosen k has the highest silhouette."""
    lo, hi = config.k_range
    hi = min(hi, len(np.unique(x, axis=0)) - 1)
    if hi < lo:
        raise ValueError(f"too few distinct users ({len(x)}) for k in {config.k_range}")
    ks = tuple(range(lo, hi + 1))
    per_k = tuple(
        scores(x, kmeans(x, k, config).labels, config.silhouette_sample, config.seed) for k in ks
    )
    sil = [s.silhouette for s in per_k]
    return KChoice(ks, per_k, ks[int(np.nanargmax(sil))])


def plot_choices(choices: Mapping[str, KChoice], path: Path) -> Path:
    """The three scores against k, one column of panels per embedding."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("silhouette", "higher"),
        ("calinski_harabasz", "higher"),
        ("davies_bouldin", "lower"),
    )
    fig, axes = plt.subplots(3, len(choices), figsize=(3.6 * len(choices), 6.4), squeeze=False)
    for col, (name, choice) in enumerate(choices.items()):
        for row, (score, better) in enumerate(panels):
            ax = axes[row][col]
            ax.plot(choice.ks, [getattr(s, score) for s in choice.per_k], marker="o")
            ax.axvline(choice.chosen, color="grey", linestyle=":")
            ax.set_title(f"{name}: {score.replace('_', '-')} ({better} is better)", fontsize=8)
            ax.set_xticks(choice.ks)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
