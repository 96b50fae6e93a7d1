"""Leave-one-out and temporal splits hold out the right events and never leak them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.data import Catalogue, Interactions, from_dataset, from_lists
from models.datasets import generate
from models.split import leave_one_out, make_split, temporal


def interactions(seqs: list[list[int]], times: list[list[int]]) -> Interactions:
    n = max(i for s in seqs for i in s)
    cat = Catalogue(
        tuple(str(i) for i in range(1, n + 1)),
        np.zeros((n + 1, 1), np.int32),
        (),
        np.full(n + 1, np.nan, np.float32),
    )
    h = from_lists(seqs, times=times)
    return Interactions(
        "t", tuple(f"u{i}" for i in range(len(seqs))), cat, h, np.zeros(len(h.items), np.float32)
    )


def test_leave_one_out_keeps_short_users_in_training_only() -> None:
    data = interactions([[1, 2, 3, 4, 5], [6, 7]], [[1, 2, 3, 4, 5], [1, 2]])
    s = leave_one_out(data)
    assert s.train.histories.sequence(0).tolist() == [1, 2, 3]
    assert s.train.histories.sequence(1).tolist() == [6, 7]
    assert s.valid.inputs.users.tolist() == [0] and s.valid.targets.items.tolist() == [4]
    assert s.test.inputs.sequence(0).tolist() == [1, 2, 3, 4] and s.test.targets.items.tolist() == [
        5
    ]


def test_temporal_windows_by_time() -> None:
    data = interactions([[1, 2, 3, 4], [5, 6], [7]], [[10, 20, 30, 40], [35, 45], [50]])
    s = temporal(data, valid_from_ms=30, test_from_ms=40)
    assert s.train.histories.lengths().tolist() == [2, 0, 0]
    # user 1 has nothing before the validation window, user 2 nothing before the test one
    assert s.valid.inputs.users.tolist() == [0] and s.valid.targets.items.tolist() == [3]
    assert s.test.inputs.users.tolist() == [0, 1]
    assert s.test.targets.items.tolist() == [4, 6]
    assert s.test.inputs.sequence(1).tolist() == [5]
    with pytest.raises(ValueError, match="after"):
        temporal(data, valid_from_ms=40, test_from_ms=30)


def test_no_target_is_ever_in_the_training_view() -> None:
    data = from_dataset(generate(n_users=200, n_items=60, n_categories=5, seed=1))
    for s in (leave_one_out(data), temporal(data)):
        for evalset in (s.valid, s.test):
            for row in range(len(evalset)):
                user = int(evalset.inputs.users[row])
                target_times = evalset.targets.times[
                    evalset.targets.offsets[row] : evalset.targets.offsets[row + 1]
                ]
                train = s.train.histories
                train_times = train.times[train.offsets[user] : train.offsets[user + 1]]
                assert train_times.max(initial=-1) <= target_times.min()
                assert set(evalset.targets.sequence(row)).isdisjoint(train.sequence(user))


def test_default_split_follows_the_data() -> None:
    data = interactions([[1, 2, 3]], [[1, 2, 3]])
    assert make_split(data).kind == "leave-one-out"
    shop = dataclasses.replace(data, split="temporal")
    assert make_split(shop).kind == "temporal"
    assert make_split(shop, "leave-one-out").kind == "leave-one-out"
    # the training view keeps it, so models fit on it (the hybrid's holdout) can read it
    assert make_split(shop).train.split == "temporal"
    with pytest.raises(ValueError, match="unknown split"):
        make_split(data, "random")  # type: ignore[arg-type]
