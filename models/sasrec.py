"""SASRec: next-item prediction with causal self-attention (Kang & McAuley, 2018).

The default loss is full-softmax cross-entropy over the whole catalogue, which
Klenitskiy & Vasilev (RecSys 2023) showed to lift SASRec above BERT4Rec; a sampled
softmax keeps large catalogues affordable, and ``bce`` with one negative per
position reproduces the original paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from models.blocks import ItemEncoder
from models.train import Batch, SequenceConfig, SequenceNet, SequenceRecommender

Loss = Literal["ce", "sampled", "bce"]


@dataclass(frozen=True)
class SASRecConfig(SequenceConfig):
    loss: Loss = "ce"
    negatives: int = 256  # for "sampled": shared uniform negatives per batch

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in ("ce", "sampled", "bce"):
            raise ValueError(f"unknown loss {self.loss!r}: expected 'ce', 'sampled' or 'bce'")


class SASRecNet(SequenceNet):
    def __init__(self, config: SASRecConfig, n_items: int, n_categories: int) -> None:
        super().__init__()
        self.config = config
        self.encoder = ItemEncoder(config, n_items, n_items + 1, n_categories, causal=True)

    def loss(self, batch: Batch) -> torch.Tensor:
        h = self.encoder(batch.ids, batch.times)  # [B, L, d]
        where = batch.targets > 0
        h, targets = h[where], batch.targets[where]  # [N, d], [N]
        items = self.encoder.items()  # [n_items + 1, d]
        if self.config.loss == "ce":
            logits = h @ items[1:].T  # [N, n_items]: padding is never a target
            return F.cross_entropy(logits, targets - 1)
        n_items = items.shape[0] - 1
        positive = (h * items[targets]).sum(-1, keepdim=True)  # [N, 1]
        if self.config.loss == "sampled":
            negatives = torch.randint(1, n_items + 1, (self.config.negatives,), device=h.device)
            negative = h @ items[negatives].T  # [N, negatives]
            negative = negative.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), -1e9)
            logits = torch.cat([positive, negative], dim=1)
            return F.cross_entropy(logits, torch.zeros_like(targets))
        negatives = torch.randint(1, n_items + 1, targets.shape, device=h.device)
        negative = (h * items[negatives]).sum(-1, keepdim=True)
        logits = torch.cat([positive, negative], dim=1)
        labels = torch.cat([torch.ones_like(positive), torch.zeros_like(negative)], dim=1)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def scores(self, ids: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Next-item scores after each sequence: [B, n_items + 1]."""
        h = self.encoder(ids, times)[:, -1]  # [B, d]
        return h @ self.encoder.items().T


class SASRec(SequenceRecommender):
    """SASRec behind the Recommender protocol."""

    kind = "sasrec"
    config_type = SASRecConfig

    def __init__(self, config: SASRecConfig | None = None) -> None:
        super().__init__(config or SASRecConfig())

    def network(self, n_items: int, n_categories: int) -> SequenceNet:
        assert isinstance(self.config, SASRecConfig)
        return SASRecNet(self.config, n_items, n_categories)

    def training_rows(self, ids: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, ...]:
        """Inputs are each prefix, targets the item after it: shift by one."""
        return ids[:, :-1], times[:, :-1], ids[:, 1:]
