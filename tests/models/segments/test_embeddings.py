"""User embeddings: ALS factors that separate planted segments, SASRec states from a checkpoint."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from models.data import Interactions, from_dataset, from_lists
from models.datasets import generate
from models.segments import embeddings as emb
from models.segments import offline
from models.segments.profile import ProfileScaler

DAY_MS = 86_400_000


@pytest.fixture(scope="module", params=(1, 6), ids=["seed1", "seed6"])
def planted(request: pytest.FixtureRequest) -> tuple[Interactions, np.ndarray]:
    ds = generate(n_users=2000, n_items=500, n_segments=4, seed=request.param)
    interactions = from_dataset(ds, repeats="keep")
    return interactions, np.array([ds.segment_of[u] for u in interactions.user_ids])


def test_als_embeddings_separate_planted_segments(planted: tuple[Interactions, np.ndarray]) -> None:
    interactions, truth = planted
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # implicit warns when BLAS threads are not limited
        x = emb.als_embeddings(interactions)
    assert x.shape == (2000, 32) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    found = adjusted_rand_score(truth, offline.kmeans(x, 4).labels)
    noise = np.random.default_rng(0).normal(size=x.shape)
    chance = adjusted_rand_score(truth, offline.kmeans(noise, 4).labels)
    assert chance < 0.05
    assert found > 0.8  # 0.95-0.96 measured on these seeds


def test_als_embeddings_are_reproducible(planted: tuple[Interactions, np.ndarray]) -> None:
    interactions, _ = planted
    np.testing.assert_array_equal(
        emb.als_embeddings(interactions), emb.als_embeddings(interactions)
    )


def test_confidence_weighs_frequency_and_recency() -> None:
    h = from_lists([[1, 1, 2], [3]], times=[[0, 30 * DAY_MS, 60 * DAY_MS], [90 * DAY_MS]])
    m = emb.confidence_matrix(h, 4, half_life_days=30.0).toarray()
    # item 1 twice, 60 and 30 days before the user's last event; item 2 at it
    np.testing.assert_allclose(m[0], [0.0, 0.25 + 0.5, 1.0, 0.0], rtol=1e-6)
    at_end = emb.confidence_matrix(h, 4, half_life_days=30.0, anchor="dataset").toarray()
    np.testing.assert_allclose(at_end[0], 0.5 * m[0], rtol=1e-6)  # 30 days older
    np.testing.assert_allclose(at_end[1], m[1])
    with pytest.raises(ValueError, match="half_life_days"):
        emb.confidence_matrix(h, 4, half_life_days=0.0)


def test_profile_embeddings_take_a_given_scaler(planted: tuple[Interactions, np.ndarray]) -> None:
    interactions, _ = planted
    x, scaler = emb.profile_embeddings(interactions)
    assert x.shape == (2000, scaler.config.dim)
    other = ProfileScaler(scaler.config, scaler.mean, (2 * scaler.std[0], *scaler.std[1:]))
    y, kept = emb.profile_embeddings(interactions, other)
    assert kept is other
    nb = scaler.config.n_buckets
    np.testing.assert_array_equal(x[:, :nb], y[:, :nb])  # only the price column moves
    np.testing.assert_allclose(y[:, nb], x[:, nb] / 2)


def test_sequence_embeddings_from_model_and_checkpoint(tmp_path: Path) -> None:
    ds = generate(n_users=150, n_items=60, n_segments=2, events_per_user=(3, 12), seed=2)
    interactions = from_dataset(ds)
    model = emb.train_sequence_model(interactions, epochs=1, maxlen=20)
    histories = interactions.histories
    x = emb.sequence_embeddings(model, histories)
    assert x.shape == (150, model.config.hidden) and np.isfinite(x).all()
    assert len(np.unique(x.round(5), axis=0)) > 100  # users differ
    path = tmp_path / "sasrec.pt"
    model.to_checkpoint().save(path)
    np.testing.assert_allclose(emb.sequence_embeddings(path, histories), x, atol=1e-5)
    # the state after the last event is the one the model scores the next item from
    assert model.net is not None
    scores = model.score(histories.slice(0, 3))
    items = model.net.encoder.items().detach().numpy()
    np.testing.assert_allclose(x[:3] @ items.T, scores, rtol=1e-4, atol=1e-4)
    empty = emb.sequence_embeddings(model, from_lists([[], [1, 2]]))
    assert not empty[0].any() and empty[1].any()
