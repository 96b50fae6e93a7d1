"""ItemKNN: finds a planted item-item pattern, agrees with the stream's twin, falls back sanely."""

from __future__ import annotations

import numpy as np
import pytest

from models.baselines.itemknn import ItemKNN, ItemKNNConfig
from models.baselines.popular import MostPopular
from models.cooccurrence import CoOccurrenceRecommender
from models.data import from_lists
from models.split import Split
from schemas.errors import ConfigError
from tests.models.baselines.conftest import Scorer


@pytest.mark.parametrize("window", [None, 3])
def test_beats_popularity_on_a_planted_successor_pattern(
    shop: Split, ndcg10: Scorer, window: int | None
) -> None:
    knn = ItemKNN(ItemKNNConfig(window=window)).fit(shop.train)
    popular = MostPopular().fit(shop.train)
    assert ndcg10(knn, shop) > 1.5 * ndcg10(popular, shop)


def test_keeps_at_most_the_configured_neighbours(shop: Split) -> None:
    knn = ItemKNN(ItemKNNConfig(neighbours=7)).fit(shop.train)
    assert knn.similarity is not None
    assert knn.similarity.getnnz(axis=1).max() == 7
    assert knn.similarity.diagonal().max() == 0.0  # an item is not its own neighbour


def test_items_without_neighbours_rank_below_every_neighbour(shop: Split) -> None:
    knn = ItemKNN(ItemKNNConfig(neighbours=5, anchors=2)).fit(shop.train)
    inputs = shop.test.inputs.slice(0, 50)
    scores = knn.score(inputs)
    assert knn.similarity is not None
    for i in range(len(inputs)):
        anchors = inputs.sequence(i)[-2:]
        neighbours = np.unique(knn.similarity[anchors].indices)
        others = np.setdiff1d(np.arange(1, scores.shape[1]), neighbours)
        assert scores[i, neighbours].min() > scores[i, others].max()
        assert np.isfinite(scores[i, 1:]).all()


def test_sliding_window_matches_the_streams_online_twin(shop: Split) -> None:
    """Same pairs, same cosine, same anchor weights: the same neighbour ranking."""
    window, anchors = 3, 3
    knn = ItemKNN(ItemKNNConfig(window=window, neighbours=1000, anchors=anchors))
    knn.fit(shop.train)
    twin = CoOccurrenceRecommender[int](window=window, neighbours=1000, anchors=anchors)
    h = shop.train.histories
    order = np.argsort(h.times, kind="stable")  # the stream sees events in time order
    users = np.repeat(np.arange(len(h)), h.lengths())
    twin.learn_many(zip(users[order].tolist(), h.items[order].tolist(), strict=True))
    for user in range(0, 60, 3):
        online = {
            r.item: r.score for r in twin.recommend(user, k=1000) if r.reason == "bought_with"
        }
        offline = knn.score(h.slice(user, user + 1))[0]
        assert online
        assert {i: float(offline[i]) for i in online} == pytest.approx(online, rel=1e-5)
        rest = np.setdiff1d(np.arange(1, len(offline)), [*online, *h.sequence(user)])
        assert offline[rest].max() < min(online.values())


def test_doctest_sized_history_and_config_errors() -> None:
    with pytest.raises(ConfigError, match="neighbours"):
        ItemKNNConfig(neighbours=0)
    with pytest.raises(ConfigError, match="window"):
        ItemKNNConfig(window=0)
    with pytest.raises(RuntimeError, match="before fit"):
        ItemKNN().score(from_lists([[1]]))
