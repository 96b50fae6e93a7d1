"""Online and batch segmentations on planted segments: recovered, agreeing, k found.

Seeds 1 and 6 of the synthetic shop plant four segments the profile can tell apart
(each pair differs in preferred categories or price level). On some other seeds two
segments share all their categories and differ only in a price level that the
profile blurs; no clusterer recovers them from profiles there (batch K-means ARI
0.5), so they would test the generator, not the models.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from models.data import Interactions, from_dataset
from models.datasets import generate
from models.segments import offline
from models.segments.replay import OnlineConfig, OnlineRun, one_pass

SEEDS = (1, 6)
K_RANGE = offline.OfflineConfig(k_range=(2, 7))


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def planted(request: pytest.FixtureRequest) -> tuple[Interactions, np.ndarray, OnlineRun]:
    ds = generate(n_users=2000, n_items=500, n_segments=4, seed=request.param)
    interactions = from_dataset(ds, repeats="keep")
    truth = np.array([ds.segment_of[u] for u in interactions.user_ids])
    return interactions, truth, one_pass(interactions, online=OnlineConfig(k=4))


def test_one_pass_recovers_planted_segments(
    planted: tuple[Interactions, np.ndarray, OnlineRun],
) -> None:
    _, truth, run = planted
    assigned, _ = run.model.assign(run.embeddings)
    assert adjusted_rand_score(truth, assigned) >= 0.8
    # the label stored at each user's last update, before later centroid moves
    assert adjusted_rand_score(truth, run.labels) >= 0.8


def test_one_pass_silhouette_within_10_percent_of_batch_kmeans(
    planted: tuple[Interactions, np.ndarray, OnlineRun],
) -> None:
    _, _, run = planted
    x = run.embeddings
    online = offline.scores(x, run.model.assign(x)[0]).silhouette
    batch = offline.scores(x, offline.kmeans(x, 4).labels).silhouette
    assert batch > 0.2  # there is structure to find
    assert online >= 0.9 * batch


def test_k_selection_finds_the_planted_four(
    planted: tuple[Interactions, np.ndarray, OnlineRun],
) -> None:
    _, _, run = planted
    choice = offline.choose_k(run.embeddings, K_RANGE)
    assert choice.ks == (2, 3, 4, 5, 6, 7)
    assert choice.chosen == 4
    assert len(choice.per_k) == 6 and all(s.scored == 2000 for s in choice.per_k)
    assert choice.by("davies_bouldin") == 4  # lowest is best for this one


def test_gmm_memberships_are_distributions(
    planted: tuple[Interactions, np.ndarray, OnlineRun],
) -> None:
    _, truth, run = planted
    seg = offline.gmm(run.embeddings, 4)
    assert seg.memberships is not None and seg.memberships.shape == (2000, 4)
    np.testing.assert_allclose(seg.memberships.sum(axis=1), 1.0, atol=1e-9)
    assert (seg.memberships >= 0).all()
    np.testing.assert_array_equal(seg.labels, seg.memberships.argmax(axis=1))
    assert 0.25 <= seg.mean_max_membership <= 1.0
    assert adjusted_rand_score(truth, seg.labels) > 0.8


def test_hdbscan_marks_noise_and_scores_leave_it_out() -> None:
    rng = np.random.default_rng(0)
    blobs = [rng.normal(c, 0.05, size=(150, 3)) for c in ((0, 0, 0), (1, 1, 1), (0, 1, 0))]
    scattered = rng.uniform(-3, 4, size=(30, 3))
    x = np.vstack([*blobs, scattered])
    seg = offline.hdbscan(x, offline.OfflineConfig(hdbscan_dims=None))
    assert seg.k == 3
    assert set(np.unique(seg.labels)) == {offline.NOISE, 0, 1, 2}
    assert 0.0 < seg.noise_share < 0.15
    assert (seg.labels[450:] == offline.NOISE).mean() > 0.8  # the scattered points
    s = offline.scores(x, seg.labels)
    assert s.scored == int((seg.labels != offline.NOISE).sum()) and s.silhouette > 0.8


def test_silhouette_is_sampled_on_large_sets() -> None:
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(0, 1, (40, 2)), rng.normal(6, 1, (40, 2))])
    labels = np.repeat([0, 1], 40)
    whole = offline.scores(x, labels)
    part = offline.scores(x, labels, sample=30)
    assert not whole.sampled and part.sampled and part.scored == 80
    assert part.silhouette == offline.scores(x, labels, sample=30).silhouette  # fixed seed
    assert abs(part.silhouette - whole.silhouette) < 0.1
