"""Transformer blocks shared by SASRec and BERT4Rec: item representation and encoder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.data import Catalogue, Histories

FEATURES = frozenset({"category", "price", "timegap"})
PRICE_BUCKETS = 10
GAP_BUCKETS = 24  # log2 of the gap in minutes: 0 = same minute .. 23 = ~16 years


@dataclass(frozen=True)
class EncoderConfig:
    maxlen: int = 50
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.3
    # any of FEATURES, fused into the item representation; a set without categories or
    # prices leaves those embeddings at a constant, so the default is safe everywhere
    features: tuple[str, ...] = ("category", "price")

    def __post_init__(self) -> None:
        unknown = set(self.features) - FEATURES
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {sorted(FEATURES)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")


def gap_buckets(times: torch.Tensor) -> torch.Tensor:
    """Bucket of the time since the previous event (log2 minutes), 0 for the first.

    >>> gap_buckets(torch.tensor([[0, 0, 60_000, 60_000 + 8 * 60_000]])).tolist()
    [[0, 0, 1, 4]]
    """
    gaps = (times[:, 1:] - times[:, :-1]).clamp(min=0).float() / 60_000.0
    buckets = torch.log2(gaps + 1.0).ceil().long().clamp(max=GAP_BUCKETS - 1)
    return torch.cat([torch.zeros_like(times[:, :1]), buckets], dim=1)


def side_feature_tensors(catalogue: Catalogue) -> dict[str, torch.Tensor]:
    """The per-item arrays the encoder needs, as tensors to keep inside the checkpoint."""
    return {
        "categories": torch.from_numpy(catalogue.categories.astype(np.int64)),
        "price_buckets": torch.from_numpy(catalogue.price_buckets(PRICE_BUCKETS)),
    }


class ItemEncoder(nn.Module):
    """Embeds items (plus their side features) and encodes sequences with self-attention.

    ``n_tokens`` counts every id the input may carry: padding 0, items 1..n_items and,
    for BERT4Rec, a mask token. Outputs are scored against ``items()``, the fused
    representation of every item, so side features reach cold items too.
    """

    def __init__(
        self,
        config: EncoderConfig,
        n_items: int,
        n_tokens: int,
        n_categories: int,
        causal: bool,
    ) -> None:
        super().__init__()
        self.config, self.n_items, self.causal = config, n_items, causal
        d = config.hidden
        self.item = nn.Embedding(n_tokens, d, padding_idx=0)
        self.position = nn.Embedding(config.maxlen, d)
        features = set(config.features)
        self.category = (
            nn.Embedding(n_categories + 1, d, padding_idx=0) if "category" in features else None
        )
        self.price = nn.Embedding(PRICE_BUCKETS + 1, d) if "price" in features else None
        self.gap = nn.Embedding(GAP_BUCKETS, d) if "timegap" in features else None
        self.register_buffer("categories", torch.zeros(n_tokens, 1, dtype=torch.long))
        self.register_buffer("price_buckets", torch.zeros(n_tokens, dtype=torch.long))
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            d,
            config.heads,
            dim_feedforward=d,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, config.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self._tokens_cache: tuple[tuple[tuple[int, int], ...], torch.Tensor] | None = None
        # items enter scaled by sqrt(d) (std 1); side features share the item scale and
        # positions start small, so that neither drowns the item signal
        for table in (self.item, self.category, self.price, self.gap):
            if table is not None:
                nn.init.normal_(table.weight, std=d**-0.5)
        nn.init.normal_(self.position.weight, std=0.1)
        with torch.no_grad():
            self.item.weight[0].zero_()
            if self.category is not None:
                self.category.weight[0].zero_()

    def set_side_features(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load per-item categories and price buckets (rows beyond the items stay 0)."""
        categories = tensors["categories"]
        padded = torch.zeros(self.item.num_embeddings, categories.shape[1], dtype=torch.long)
        padded[: categories.shape[0]] = categories
        self.categories = padded
        prices = torch.zeros(self.item.num_embeddings, dtype=torch.long)
        prices[: len(tensors["price_buckets"])] = tensors["price_buckets"]
        self.price_buckets = prices

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Fused representation of token ids, any shape -> shape + (hidden,)."""
        x = self.item(ids)
        if self.category is not None:
            cats = self.categories[ids]  # [..., max_categories]
            counts = (cats > 0).sum(-1, keepdim=True).clamp(min=1)
            x = x + self.category(cats).sum(-2) / counts
        if self.price is not None:
            x = x + self.price(self.price_buckets[ids])
        return x

    def _tokens(self) -> torch.Tensor | None:
        """Fused representation of every token id, cached outside training; None in training.

        Fusing the side features costs more than the rest of a small scoring batch, and
        at inference every input and output lookup can read this one table. Any change
        to the weights (an optimiser step, a load, a move) changes the tensors'
        versions or storage, and so the cache key. The key reads only what ``embed``
        reads: walking every parameter of the blocks cost 2 % of the stream's processing.
        """
        if self.training or torch.is_grad_enabled():
            return None
        read = [self.item.weight, self.categories, self.price_buckets]
        read += [t.weight for t in (self.category, self.price) if t is not None]
        key = tuple((t._version, t.data_ptr()) for t in read)
        if self._tokens_cache is None or self._tokens_cache[0] != key:
            every = torch.arange(self.item.num_embeddings, device=self.item.weight.device)
            self._tokens_cache = (key, self.embed(every))
        return self._tokens_cache[1]

    def items(self) -> torch.Tensor:
        """Output representation of padding + every item: [n_items + 1, hidden]."""
        table = self._tokens()
        if table is not None:
            return table[: self.n_items + 1]
        return self.embed(torch.arange(self.n_items + 1, device=self.item.weight.device))

    def forward(
        self, ids: torch.Tensor, times: torch.Tensor | None = None, last_only: bool = False
    ) -> torch.Tensor:
        """ids [B, L] left-padded with 0 -> hidden states [B, L, hidden].

        ``last_only``: the hidden state of the last position alone, [B, 1, hidden], what
        scoring the next item reads. The last block then attends from that one position
        and runs its feed-forward on it alone, which a full pass would do for every
        position only to discard them. The result is the same, and a scoring pass over
        20-200 Toys histories takes 18-28 % less (``python -m bench.last_position``).
        """
        _, length = ids.shape
        positions = torch.arange(self.config.maxlen - length, self.config.maxlen, device=ids.device)
        table = self._tokens()
        fused = self.embed(ids) if table is None else table[ids]
        x = fused * (self.config.hidden**0.5) + self.position(positions)
        if self.gap is not None and times is not None:
            x = x + self.gap(gap_buckets(times))
        pad = ids == 0
        x = self.dropout(x) * (~pad).unsqueeze(-1)
        # [B * heads, L, L], True = may not attend. Every position may attend to itself,
        # so a padding row never sees an all-masked row (which would turn into NaN).
        blocked = pad.unsqueeze(1).expand(-1, length, -1)
        if self.causal:
            future = torch.triu(torch.ones(length, length, dtype=torch.bool, device=ids.device), 1)
            blocked = blocked | future
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=ids.device)
        mask = blocked.repeat_interleave(self.config.heads, dim=0)
        if not last_only:
            return self.norm(self.blocks(x, mask=mask))
        *front, final = self.blocks.layers
        for layer in front:
            x = layer(x, src_mask=mask)
        return self.norm(_last_position(final, x, mask[:, -1:]))


def _width_class(length: int, maxlen: int) -> int:
    """The padded width a history of ``length`` items is scored at: the next power of
    two, at most ``maxlen``.

    >>> [_width_class(n, 50) for n in (0, 1, 3, 4, 5, 33, 50, 80)]
    [1, 1, 4, 4, 8, 50, 50, 50]
    """
    return min(maxlen, 1 << max(0, length - 1).bit_length())


# What one more forward pass costs on its own, in padded history positions: about 1 ms
# on one CPU thread against about 6 us per position at full width, SASRec of the
# default shape. Chosen with bench.topk_widths: no batch size or mix it measures lost
# more than about 10 % against one pass at the widest width (partly the timing noise of
# a 4 ms call), and batches holding a few long histories gain up to 4x.
_PASS_COST_POSITIONS = 200


def _width_groups(sizes: dict[int, int]) -> list[list[int]]:
    """Width classes (with how many histories each holds) grouped into forward passes so
    that padding plus passes cost the least: each group is padded to its widest class.

    >>> _width_groups({1: 30, 2: 5, 4: 5})  # a few rows: one pass
    [[1, 2, 4]]
    >>> _width_groups({4: 39, 50: 1})  # one long history would cost the others 12x
    [[4], [50]]
    """
    widths = sorted(sizes)
    # best[j]: the least cost of the first j classes; cut[j]: where its last group starts
    best, cut = [0] * (len(widths) + 1), [0] * (len(widths) + 1)
    for j in range(1, len(widths) + 1):
        rows, best[j] = 0, -1
        for i in range(j, 0, -1):
            rows += sizes[widths[i - 1]]
            cost = best[i - 1] + _PASS_COST_POSITIONS + rows * widths[j - 1]
            if best[j] < 0 or cost < best[j]:
                best[j], cut[j] = cost, i - 1
    groups, j = [], len(widths)
    while j > 0:
        groups.append(widths[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def rows_by_width(lengths: np.ndarray, maxlen: int) -> list[np.ndarray]:
    """Rows of a batch of histories (their ``lengths``), grouped into forward passes.

    Padded to the longest history, a batch pays the transformer's cost (linear in the
    width, attention quadratic) at that width for every row. Padding is masked and
    positions count from the end, so scoring rows in groups changes no score.

    >>> groups = rows_by_width(np.array([50, 3, 1, 50] + [4] * 30), 50)
    >>> [len(g) for g in groups], groups[1].tolist()
    ([32, 2], [0, 3])
    """
    classes = np.array([_width_class(int(n), maxlen) for n in lengths], dtype=np.int64)
    sizes = {int(w): int(c) for w, c in zip(*np.unique(classes, return_counts=True), strict=True)}
    return [np.flatnonzero(np.isin(classes, group)) for group in _width_groups(sizes)]


def padded_batch(histories: Histories, maxlen: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Last ``maxlen`` items and times of each history as tensors [B, L], left-padded."""
    length = max(1, min(maxlen, int(histories.lengths().max(initial=0))))
    ids = torch.from_numpy(histories.padded(length).astype(np.int64))
    times = torch.from_numpy(histories.padded(length, histories.times))
    return ids, times


def _last_position(
    layer: nn.TransformerEncoderLayer, x: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``layer(x, src_mask=...)[:, -1:]`` of a pre-norm layer, computed for that row alone.

    ``mask`` is the last row of the full mask, [B * heads, 1, L]. Keys and values still
    come from every position; only the query, the residual and the feed-forward are
    cut to the last one.
    """
    h = layer.norm1(x)
    attended = layer.self_attn(h[:, -1:], h, h, attn_mask=mask, need_weights=False)[0]
    y = x[:, -1:] + layer.dropout1(attended)
    return y + layer._ff_block(layer.norm2(y))
