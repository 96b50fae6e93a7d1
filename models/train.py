"""Training loop shared by the sequence models: batching, early stopping, scoring."""

from __future__ import annotations

import copy
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, NamedTuple, Self, cast

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from models.blocks import (
    EncoderConfig,
    ItemEncoder,
    padded_batch,
    rows_by_width,
    side_feature_tensors,
)
from models.checkpoint import Checkpoint
from models.data import Histories, Interactions
from models.split import EvalSet

MIN_TRAIN_EVENTS = 2
# settings of one run on one machine, not of the model: a checkpoint leaves them out
RUNTIME_FIELDS = frozenset({"threads", "progress", "score_batch", "max_minutes", "device"})


@dataclass(frozen=True)
class SequenceConfig(EncoderConfig):
    epochs: int = 200
    batch_size: int = 128
    lr: float = 3e-3
    lr_decay: float = 0.5  # learning rate factor after each evaluation that does not improve
    weight_decay: float = 0.0
    # Validate, keep and serve an exponential moving average of the weights (this decay
    # per optimiser step) instead of the last step's; None: the weights as trained.
    ema: float | None = None
    patience: int = 3  # evaluations without a better validation NDCG@10 before stopping
    eval_steps: int = 100  # fewest optimiser steps between validations (whole epochs)
    max_minutes: float | None = None  # wall-clock cap on training
    seed: int = 0
    threads: int | None = None  # torch threads; None = every core
    score_batch: int = 1024
    progress: bool = True
    device: str = "cpu"  # torch device to train and score on; a checkpoint always loads on CPU

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema must be None or lie in (0, 1), got {self.ema}")


class Batch(NamedTuple):
    ids: torch.Tensor  # [B, L] left-padded input items
    times: torch.Tensor  # [B, L] epoch ms
    targets: torch.Tensor  # [B, L] item to predict at each position, 0 = none
    target_times: torch.Tensor | None = None  # [B, L] epoch ms of each target, when kept


class SequenceNet(nn.Module):
    """A torch module with an item encoder, a training loss and next-item scores."""

    encoder: ItemEncoder

    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, ids: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Next-item scores after each left-padded sequence: [B, n_items + 1]."""
        raise NotImplementedError


class SequenceRecommender(ABC):
    """Fit/score/checkpoint plumbing around a torch module with ``loss`` and ``scores``."""

    kind: ClassVar[str]
    config_type: ClassVar[type[SequenceConfig]]

    def __init__(self, config: SequenceConfig) -> None:
        self.config = config
        self.name = (
            f"{self.kind}" if not config.features else f"{self.kind}+{'+'.join(config.features)}"
        )
        self.net: SequenceNet | None = None
        self.item_ids: tuple[str, ...] = ()
        self.history: list[dict[str, float]] = []  # per evaluation: epoch, loss, ndcg, seconds
        self.train_seconds = 0.0

    @abstractmethod
    def network(self, n_items: int, n_categories: int) -> SequenceNet: ...

    @abstractmethod
    def training_rows(self, ids: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, ...]:
        """From padded [U, maxlen + 1] sequences, the (inputs, times, targets) to train on."""

    def _module(self) -> SequenceNet:
        if self.net is None:
            raise RuntimeError(f"{self.name} is not fitted")
        return self.net

    def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        from models.evaluate import evaluate

        c = self.config
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        torch.set_num_threads(c.threads or os.cpu_count() or 1)
        net = self.network(train.catalogue.n_items, train.catalogue.n_categories)
        net.encoder.set_side_features(side_feature_tensors(train.catalogue))
        net.to(c.device)
        self.net, self.item_ids = net, train.catalogue.item_ids
        rows = self._rows(train)
        optimiser = torch.optim.Adam(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        averaged = (
            None
            if c.ema is None
            else torch.optim.swa_utils.AveragedModel(
                net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(c.ema)
            )
        )
        # the average is a copy of the network, so it scores and saves as the network does
        kept = net if averaged is None else cast(SequenceNet, averaged.module)
        best, best_state, stale = -1.0, copy.deepcopy(net.state_dict()), 0
        started = time.perf_counter()
        bar = tqdm(range(c.epochs), desc=self.name, disable=not c.progress, leave=False)
        total, steps = 0.0, 0
        for epoch in bar:
            net.train()
            for batch in self._batches(rows, rng):
                optimiser.zero_grad()
                loss = net.loss(batch)
                loss.backward()
                optimiser.step()
                if averaged is not None:
                    averaged.update_parameters(net)
                total, steps = total + loss.item(), steps + 1
            last = epoch + 1 == c.epochs
            if steps < c.eval_steps and not last:
                continue  # small data: an epoch is too few steps to judge
            record = {"epoch": epoch + 1, "loss": total / max(steps, 1)}
            total, steps = 0.0, 0
            if valid is not None and len(valid):
                self.net = kept
                try:
                    ndcg = evaluate(self, valid, train, k=10)["NDCG@10"]
                finally:
                    self.net = net
                record["NDCG@10"] = ndcg
                if ndcg > best:
                    best, best_state, stale = ndcg, copy.deepcopy(kept.state_dict()), 0
                else:
                    stale += 1
                    for group in optimiser.param_groups:
                        group["lr"] *= c.lr_decay
            record["seconds"] = time.perf_counter() - started
            self.history.append(record)
            bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
            out_of_time = c.max_minutes is not None and record["seconds"] > c.max_minutes * 60
            if stale >= c.patience or out_of_time:
                break
        if valid is not None and len(valid):
            net.load_state_dict(best_state)
        elif averaged is not None:
            net.load_state_dict(kept.state_dict())
        net.eval()
        self.train_seconds = time.perf_counter() - started
        return self

    def _rows(self, train: Interactions) -> tuple[np.ndarray, ...]:
        """Each history cut from its end into windows of ``maxlen + 1`` events.

        Consecutive windows share one event, so every transition of a long (dense)
        history is a training target once, not only its last ``maxlen``.
        """
        span = self.config.maxlen
        lengths = train.histories.lengths()
        users = np.flatnonzero(lengths >= MIN_TRAIN_EVENTS)
        counts = -(-(lengths[users] - 1) // span)  # windows per user
        user_rep = np.repeat(users, counts)
        back = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        stops = lengths[user_rep] - back * span
        starts = np.maximum(stops - span - 1, 0)
        windows = train.windows(user_rep, starts, stops)
        ids = windows.padded(span + 1).astype(np.int64)
        times = windows.padded(span + 1, windows.times)
        return self.training_rows(ids, times)

    def _batches(self, rows: tuple[np.ndarray, ...], rng: np.random.Generator) -> Iterator[Batch]:
        """Shuffled batches of similar lengths, trimmed to their longest row.

        Most rows of sparse data are mostly padding; grouping rows by length inside
        shuffled chunks cuts the padding the transformer would attend over.
        """
        ids, times, targets = rows[:3]
        target_times = rows[3] if len(rows) > 3 else None
        lengths = (ids > 0).sum(1)
        size = self.config.batch_size
        order = rng.permutation(len(ids))
        chunk = size * 32
        batches: list[np.ndarray] = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            batches.extend(part[i : i + size] for i in range(0, len(part), size))
        for b in rng.permutation(len(batches)):
            index = batches[b]
            width = max(1, int(lengths[index].max()))
            device = self.config.device
            yield Batch(
                torch.from_numpy(ids[index, -width:]).to(device),
                torch.from_numpy(times[index, -width:]).to(device),
                torch.from_numpy(targets[index, -width:]).to(device),
                None
                if target_times is None
                else torch.from_numpy(target_times[index, -width:]).to(device),
            )

    @torch.no_grad()
    def score(self, histories: Histories) -> np.ndarray:
        """Scores of every item after each history: [n, n_items + 1].

        Rows go through the network in groups of similar length (``rows_by_width``), each
        padded to its own longest history rather than the batch's.
        """
        net = self._module()
        net.eval()
        n, maxlen, device = len(histories), self.config.maxlen, self.config.device
        if n == 0:
            return np.zeros((0, 1), np.float32)
        ids, times = padded_batch(histories, maxlen)
        lengths = np.minimum(histories.lengths(), maxlen)
        out: np.ndarray | None = None
        for group in rows_by_width(lengths, maxlen):
            for start in range(0, len(group), self.config.score_batch):
                rows = group[start : start + self.config.score_batch]
                width = max(1, int(lengths[rows].max()))
                picked = torch.from_numpy(rows)
                part = net.scores(
                    ids[picked, -width:].to(device), times[picked, -width:].to(device)
                )
                if out is None:
                    out = np.empty((n, part.shape[1]), np.float32)
                out[rows] = part.float().cpu().numpy()
        assert out is not None
        return out

    def to_checkpoint(self, metrics: Mapping[str, float] | None = None) -> Checkpoint:
        """Weights, config, vocabulary and side features: everything ``from_checkpoint`` needs."""
        net = self._module()
        return Checkpoint(
            kind=self.kind,
            config={k: v for k, v in asdict(self.config).items() if k not in RUNTIME_FIELDS},
            state_dict={k: v.cpu() for k, v in net.state_dict().items()},
            item_ids=list(self.item_ids),
            metrics=dict(metrics or {}),
            extras={"n_categories": torch.tensor(self._n_categories(net))},
        )

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> Self:
        if ckpt.kind != cls.kind:
            raise ValueError(f"checkpoint holds a {ckpt.kind!r} model, not {cls.kind!r}")
        model = cls(cls.config_from(ckpt.config))
        net = model.network(len(ckpt.item_ids), int(ckpt.extras["n_categories"]))
        state = ckpt.state_dict
        net.encoder.set_side_features(
            {
                "categories": state["encoder.categories"],
                "price_buckets": state["encoder.price_buckets"],
            }
        )
        net.load_state_dict(state)
        net.eval()
        model.net, model.item_ids = net, tuple(ckpt.item_ids)
        return model

    @staticmethod
    def _n_categories(net: SequenceNet) -> int:
        category = net.encoder.category
        return 0 if category is None else int(category.num_embeddings) - 1

    @classmethod
    def config_from(cls, values: dict[str, Any]) -> SequenceConfig:
        known = {f.name for f in fields(cls.config_type)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{cls.kind}: unknown config fields {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls.config_type(**values)
