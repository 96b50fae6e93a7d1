"""Train / validation / test splits: leave-one-out and global temporal.

Both produce the same shape: a training view (each user's events before the split
point) and two evaluation sets, each an ``EvalSet`` of input histories and the
items that followed them. The test inputs include the validation events, as the
published protocol does: a model trained on ``train`` and tuned on ``valid`` is
asked for the test targets with everything that happened before them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data import Histories, Interactions
from models.datasets.base import SplitKind

__all__ = ["EvalSet", "Split", "SplitKind", "leave_one_out", "make_split", "temporal"]
MIN_LOO_EVENTS = 3


@dataclass(frozen=True)
class EvalSet:
    """Input histories and, row for row, the items to be predicted after them."""

    inputs: Histories
    targets: Histories

    def __len__(self) -> int:
        return len(self.inputs)

    def slice(self, start: int, stop: int) -> EvalSet:
        return EvalSet(self.inputs.slice(start, stop), self.targets.slice(start, stop))


@dataclass(frozen=True)
class Split:
    kind: SplitKind
    data: Interactions  # everything, for the catalogue and for building inputs
    train: Interactions
    valid: EvalSet
    test: EvalSet
    valid_from_ms: int | None = None  # temporal only: the window boundaries
    test_from_ms: int | None = None


def leave_one_out(data: Interactions) -> Split:
    """Last event of each user is the test target, the one before it validation.

    Users with fewer than three events train only (they have nothing to hold out
    without leaving an empty input), as in the SASRec reference code.

    >>> from models.data import Catalogue, Interactions, from_lists
    >>> cat = Catalogue(tuple("abcdef"), np.zeros((7, 1), np.int32), (), np.zeros(7, np.float32))
    >>> h = from_lists([[1, 2, 3, 4], [5, 6]])
    >>> s = leave_one_out(Interactions("t", ("u", "v"), cat, h, np.zeros(6, np.float32)))
    >>> s.train.histories.sequence(0).tolist(), s.train.histories.sequence(1).tolist()
    ([1, 2], [5, 6])
    >>> s.valid.targets.items.tolist(), s.test.targets.items.tolist()
    ([3], [4])
    >>> s.test.inputs.sequence(0).tolist()
    [1, 2, 3]
    """
    lengths = data.histories.lengths()
    held = lengths >= MIN_LOO_EVENTS
    train_lengths = np.where(held, lengths - 2, lengths)
    users = np.flatnonzero(held)
    n = lengths[users]
    valid = EvalSet(data.prefixes(users, n - 2), data.windows(users, n - 2, n - 1))
    test = EvalSet(data.prefixes(users, n - 1), data.windows(users, n - 1, n))
    return Split("leave-one-out", data, data.truncated(train_lengths), valid, test)


def temporal(
    data: Interactions,
    valid_from_ms: int | None = None,
    test_from_ms: int | None = None,
    window_share: float = 0.1,
) -> Split:
    """Train on events before ``valid_from_ms``, validate until ``test_from_ms``, test after.

    Without explicit boundaries, the validation and test windows each hold the last
    ``window_share`` of all events (so the split follows the data's own pace). A user
    is evaluated in a window when they had at least one event before it and at least
    one in it; the targets are every item they took in the window (``from_dataset``
    keeps first interactions only, so every target is new to the user).
    """
    times = data.histories.times
    if not len(times):
        raise ValueError(f"{data.name}: no events to split")
    if test_from_ms is None:
        test_from_ms = int(np.quantile(times, 1 - window_share))
    if valid_from_ms is None:
        valid_from_ms = int(np.quantile(times, 1 - 2 * window_share))
    if not valid_from_ms <= test_from_ms:
        raise ValueError(f"valid_from_ms {valid_from_ms} is after test_from_ms {test_from_ms}")

    offsets = data.histories.offsets
    # times are sorted within each user, so searchsorted per user finds each boundary
    before_valid = _count_before(times, offsets, valid_from_ms)
    before_test = _count_before(times, offsets, test_from_ms)
    lengths = data.histories.lengths()
    valid = _window(data, before_valid, before_valid, before_test)
    test = _window(data, before_test, before_test, lengths)
    return Split(
        "temporal", data, data.truncated(before_valid), valid, test, valid_from_ms, test_from_ms
    )


def _count_before(times: np.ndarray, offsets: np.ndarray, boundary: int) -> np.ndarray:
    """Per user, how many of their events happened strictly before ``boundary``."""
    before = (times < boundary).astype(np.int64)
    sums = np.concatenate([[0], np.cumsum(before)])
    return sums[offsets[1:]] - sums[offsets[:-1]]


def _window(
    data: Interactions, input_lengths: np.ndarray, starts: np.ndarray, stops: np.ndarray
) -> EvalSet:
    users = np.flatnonzero((input_lengths > 0) & (stops > starts))
    return EvalSet(
        data.prefixes(users, input_lengths[users]),
        data.windows(users, starts[users], stops[users]),
    )


def make_split(data: Interactions, kind: SplitKind | None = None) -> Split:
    """``kind``, or the split the data set calls for (``Interactions.split``)."""
    chosen = kind or data.split
    if chosen == "temporal":
        return temporal(data)
    if chosen == "leave-one-out":
        return leave_one_out(data)
    raise ValueError(f"unknown split {chosen!r}: expected 'leave-one-out' or 'temporal'")
