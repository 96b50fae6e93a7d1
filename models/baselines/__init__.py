"""Baseline recommenders: popularity, item-item kNN, ALS and a LightGBM-reranked hybrid."""

from models.baselines.als import ALS, ALSConfig
from models.baselines.hybrid import FitOnce, GeneratorFactory, Hybrid, HybridConfig
from models.baselines.itemknn import ItemKNN, ItemKNNConfig
from models.baselines.popular import (
    MostPopular,
    MostPopularConfig,
    RecentPopular,
    RecentPopularConfig,
)

__all__ = [
    "ALS",
    "ALSConfig",
    "FitOnce",
    "GeneratorFactory",
    "Hybrid",
    "HybridConfig",
    "ItemKNN",
    "ItemKNNConfig",
    "MostPopular",
    "MostPopularConfig",
    "RecentPopular",
    "RecentPopularConfig",
]
