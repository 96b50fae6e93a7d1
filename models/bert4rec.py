"""BERT4Rec: bidirectional self-attention trained to fill in masked items (Sun et al., 2019).

It shares SASRec's encoder with the causal mask lifted. Training hides a random
share of each sequence behind a mask token and predicts the hidden items over the
full catalogue; inference appends a mask token after the history and reads the
prediction there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.blocks import ItemEncoder
from models.train import Batch, SequenceConfig, SequenceNet, SequenceRecommender


@dataclass(frozen=True)
class BERT4RecConfig(SequenceConfig):
    mask_prob: float = 0.2
    last_mask_prob: float = 0.1  # rows that mask only their last item, as inference does

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")


class BERT4RecNet(SequenceNet):
    def __init__(self, config: BERT4RecConfig, n_items: int, n_categories: int) -> None:
        super().__init__()
        self.config = config
        self.mask_token = n_items + 1
        self.encoder = ItemEncoder(config, n_items, n_items + 2, n_categories, causal=False)

    def loss(self, batch: Batch) -> torch.Tensor:
        ids = batch.targets  # [B, L] the full sequences
        real = ids > 0
        masked = (torch.rand(ids.shape, device=ids.device) < self.config.mask_prob) & real
        last_only = torch.rand(ids.shape[0], 1, device=ids.device) < self.config.last_mask_prob
        masked = torch.where(last_only, torch.zeros_like(masked), masked)
        masked[:, -1] |= last_only.squeeze(1) & real[:, -1]
        inputs = ids.masked_fill(masked, self.mask_token)
        h = self.encoder(inputs, batch.times)[masked]  # [N, d]
        if h.shape[0] == 0:
            return h.sum()  # nothing masked in this batch: a zero loss that still backprops
        logits = h @ self.encoder.items()[1:].T  # [N, n_items]: padding is never a target
        return F.cross_entropy(logits, ids[masked] - 1)

    def scores(self, ids: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Append a mask token after each history and score the item behind it."""
        keep = self.config.maxlen - 1
        mask = torch.full_like(ids[:, :1], self.mask_token)
        ids = torch.cat([ids[:, -keep:], mask], dim=1)  # [B, L']
        times = torch.cat([times[:, -keep:], times[:, -1:]], dim=1)
        h = self.encoder(ids, times, last_only=True)[:, -1]  # [B, d]
        return h @ self.encoder.items().T


class BERT4Rec(SequenceRecommender):
    """BERT4Rec behind the Recommender protocol."""

    kind = "bert4rec"
    config_type = BERT4RecConfig

    def __init__(self, config: BERT4RecConfig | None = None) -> None:
        super().__init__(config or BERT4RecConfig())

    def network(self, n_items: int, n_categories: int) -> SequenceNet:
        assert isinstance(self.config, BERT4RecConfig)
        return BERT4RecNet(self.config, n_items, n_categories)

    def training_rows(self, ids: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, ...]:
        """Whole sequences; the masking happens per batch inside the loss."""
        return ids[:, 1:], times[:, 1:], ids[:, 1:]
