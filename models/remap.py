"""A fitted sequence model scoring histories numbered in another catalogue.

Item numbers are positions in a catalogue, so a model trained on yesterday's event log
and today's log number the same item differently. ``Remapped`` translates in both
directions with two index arrays, which is what comparing the serving model with a
freshly trained one on today's held-back events needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self, runtime_checkable

import numpy as np

from models.data import Histories, Interactions
from models.split import EvalSet

__all__ = ["Remapped", "SequenceScorer", "catalogue_map"]


@runtime_checkable
class SequenceScorer(Protocol):
    """A fitted model that names its items: number ``i + 1`` is ``item_ids[i]``."""

    name: str
    item_ids: tuple[str, ...]

    def score(self, histories: Histories) -> np.ndarray: ...


def catalogue_map(source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """For each item number of ``target`` (0 = padding), its number in ``source``, 0 if absent.

    >>> catalogue_map(["a", "b", "c"], ["c", "x", "a"]).tolist()
    [0, 3, 0, 1]
    """
    out = np.zeros(len(target) + 1, dtype=np.int64)
    if not len(source) or not len(target):
        return out
    src = np.asarray(source, dtype=str)
    tgt = np.asarray(target, dtype=str)
    order = np.argsort(src, kind="stable")
    ranked = src[order]
    pos = np.minimum(np.searchsorted(ranked, tgt), len(ranked) - 1)
    found = ranked[pos] == tgt
    out[1:][found] = order[pos[found]] + 1
    return out


class Remapped:
    """Scores ``Histories`` of ``catalogue`` with a model fitted on its own catalogue.

    Input items the model does not know are dropped from the histories; catalogue
    items it does not know score ``-inf``, so they rank last. The model is frozen:
    ``fit`` raises.
    """

    def __init__(self, model: SequenceScorer, catalogue: Sequence[str]) -> None:
        self.model = model
        self.name = model.name
        self.item_ids = tuple(catalogue)
        self.to_model = catalogue_map(model.item_ids, self.item_ids)  # [len(catalogue) + 1]
        # padding (column 0) passes through, so an identical catalogue gives identical scores
        self.columns = np.concatenate([[0], np.flatnonzero(self.to_model)])
        self.sources = self.to_model[self.columns]

    @property
    def n_known(self) -> int:
        """Catalogue items the model can score."""
        return len(self.columns) - 1

    def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        raise NotImplementedError(f"{self.name} wraps a fitted model; it is not trained again")

    def translate(self, histories: Histories) -> Histories:
        """``histories`` in the model's numbering, items it does not know left out.

        Users become -1: the model never saw this data's user numbering.
        """
        items = histories.items
        if len(items) and (int(items.min()) < 0 or int(items.max()) >= len(self.to_model)):
            raise ValueError(
                f"histories hold item numbers outside 0..{len(self.to_model) - 1} "
                "(another catalogue?)"
            )
        mapped = self.to_model[items]
        keep = mapped > 0
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        return Histories(
            users=np.full(len(histories), -1, dtype=np.int64),
            offsets=kept_before[histories.offsets].astype(np.int64),
            items=mapped[keep].astype(np.int32),
            times=histories.times[keep],
        )

    def score(self, histories: Histories) -> np.ndarray:
        n = len(histories)
        out = np.full((n, len(self.item_ids) + 1), -np.inf, dtype=np.float32)  # [n, items + 1]
        if n == 0:
            return out
        raw = self.model.score(self.translate(histories))  # [n, model items + 1]
        out[:, self.columns] = raw[:, self.sources]
        return out
