"""The River wrapper: its centroid copy, its deltas, and merging two copies' deltas."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from river import cluster

from models.segments.online import OnlineKMeans, SegmentModel, seed_model


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 4.0, -1.0]])
    labels = rng.integers(3, size=n)
    return centers[labels] + rng.normal(scale=0.5, size=(n, 3)), labels


def test_learning_moves_rivers_centers_and_the_copy_alike() -> None:
    x, _ = blobs(600, 0)
    km = OnlineKMeans(seed_model(x[:200], 3, "v"), min_rate=0.02)
    for row in x[200:]:
        km.learn_predict(row)
    river = np.array([[km._river.centers[c][i] for i in range(3)] for c in range(3)])
    np.testing.assert_allclose(km.centroids(), river)
    shift, counts = km.delta()
    np.testing.assert_allclose(km.model.centroids + shift, river)
    assert counts.sum() == 400


def test_each_update_is_the_one_river_makes_on_its_own() -> None:
    """The nearest centre handed to River is the one River's own search finds."""
    x, _ = blobs(800, 2)
    km = OnlineKMeans(seed_model(x[:200], 3, "v"), min_rate=0.05)
    plain = cluster.KMeans(n_clusters=3, halflife=1.0, p=2, seed=0)
    plain.centers = {
        c: defaultdict(float, enumerate(km.model.centroids[c].tolist())) for c in range(3)
    }
    for row in x[200:]:
        segment, _ = km.learn_predict(row)
        plain.halflife = km._river.halflife  # the step size the update just used
        assert plain.learn_predict_one(dict(enumerate(row.tolist()))) == segment
    river = np.array([[plain.centers[c][i] for i in range(3)] for c in range(3)])
    np.testing.assert_allclose(km.centroids(), river)


def test_summed_shifts_of_two_copies_track_one_sequential_learner() -> None:
    """What the Redis merge does with two workers' batches, against one worker."""
    x, _ = blobs(2000, 1)
    start = seed_model(x[:300], 3, "v")
    solo = OnlineKMeans(start, min_rate=0.02)
    left, right = OnlineKMeans(start, min_rate=0.02), OnlineKMeans(start, min_rate=0.02)
    shared = start
    for at in range(300, 2000, 100):
        batch = x[at : at + 100]
        for row in batch:
            solo.learn_predict(row)
        for row in batch[::2]:
            left.learn_predict(row)
        for row in batch[1::2]:
            right.learn_predict(row)
        (dl, cl), (dr, cr) = left.delta(), right.delta()
        shared = SegmentModel("v", shared.centroids + dl + dr, shared.counts + cl + cr)
        left.load(shared)
        right.load(shared)
    gap = np.abs(shared.centroids - solo.centroids()).max()
    assert gap < 0.1, gap  # blobs 4 apart, noise 0.5
    np.testing.assert_allclose(shared.counts, start.counts + solo.delta()[1])
