"""Remapped: a fitted SASRec scores histories of another catalogue, column for column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.base import Recommender
from models.checkpoint import load_checkpoint
from models.data import Histories, Interactions, from_dataset, from_lists
from models.datasets import generate
from models.evaluate import evaluate
from models.remap import Remapped, SequenceScorer, catalogue_map
from models.sasrec import SASRec, SASRecConfig
from models.split import leave_one_out

TINY = SASRecConfig(
    hidden=16, blocks=1, maxlen=12, epochs=2, eval_steps=1, progress=False, threads=1
)


@pytest.fixture(scope="module")
def data() -> Interactions:
    ds = generate(n_users=80, n_items=40, n_categories=4, events_per_user=(3, 9), seed=5)
    return from_dataset(ds)


@pytest.fixture(scope="module")
def model(data: Interactions) -> SASRec:
    return SASRec(TINY).fit(data)


def test_catalogue_map_finds_every_shared_item() -> None:
    source = [f"i{n}" for n in range(50)]
    target = ["new", *source[::-3], "i7x", ""]
    mapped = catalogue_map(source, target)
    expected = [0] + [source.index(t) + 1 if t in source else 0 for t in target]
    assert mapped.tolist() == expected
    assert catalogue_map([], ["a"]).tolist() == [0, 0]
    assert catalogue_map(["a"], []).tolist() == [0]


def test_identity_catalogue_gives_identical_scores(data: Interactions, model: SASRec) -> None:
    remapped = Remapped(model, data.catalogue.item_ids)
    assert isinstance(remapped, Recommender)
    assert isinstance(model, SequenceScorer)
    assert remapped.n_known == data.catalogue.n_items
    batch = data.histories.slice(0, 30)
    np.testing.assert_array_equal(remapped.score(batch), model.score(batch))


def test_identity_evaluates_like_the_model(data: Interactions, model: SASRec) -> None:
    split = leave_one_out(data)
    direct = evaluate(model, split.test, split.train, k=(5, 10))
    wrapped = evaluate(Remapped(model, data.catalogue.item_ids), split.test, split.train, k=(5, 10))
    assert wrapped.metrics == direct.metrics
    assert direct["NDCG@10"] > 0


def test_permuted_catalogue_permutes_columns(data: Interactions, model: SASRec) -> None:
    ids = data.catalogue.item_ids
    perm = np.random.default_rng(0).permutation(len(ids))  # new number j + 1 is old perm[j] + 1
    remapped = Remapped(model, tuple(ids[p] for p in perm))
    old_to_new = np.zeros(len(ids) + 1, dtype=np.int32)
    old_to_new[perm + 1] = np.arange(1, len(ids) + 1)
    batch = data.histories.slice(10, 40)
    renumbered = Histories(batch.users, batch.offsets, old_to_new[batch.items], batch.times)

    scores = remapped.score(renumbered)
    expected = model.score(batch)
    assert scores.shape == expected.shape
    np.testing.assert_array_equal(scores[:, 1:], expected[:, perm + 1])
    assert not np.array_equal(scores[:, 1:], expected[:, 1:])  # the permutation did something


def test_unknown_items_rank_last_and_are_dropped_from_inputs(
    data: Interactions, model: SASRec
) -> None:
    ids = data.catalogue.item_ids
    # catalogue: two new items around the first 20 the model knows; items 21.. are gone
    catalogue = ("new-a", *ids[:10], "new-b", *ids[10:20])
    remapped = Remapped(model, catalogue)
    assert remapped.n_known == 20
    new_a, new_b = 1, 12
    # old item k (1..10) is new k + 1, old k (11..20) is new k + 2
    rows = [[new_a, 2, new_b, 5, 14], [new_a, new_b], [3]]
    times = [[1, 2, 3, 4, 5], [1, 2], [7]]
    scores = remapped.score(from_lists(rows, times=times))
    assert scores.shape == (3, len(catalogue) + 1)
    assert np.isneginf(scores[:, [new_a, new_b]]).all()
    assert np.isfinite(scores[:, 1:]).sum() == 3 * 20

    # the same histories without the unknown items, in the model's own numbering
    plain = model.score(from_lists([[1, 4, 12], [], [2]], times=[[2, 4, 5], [], [7]]))
    known = [n for n in range(1, len(catalogue) + 1) if n not in (new_a, new_b)]
    np.testing.assert_array_equal(scores[:, known], plain[:, 1:21])


def test_out_of_catalogue_numbers_and_empty_batches(data: Interactions, model: SASRec) -> None:
    remapped = Remapped(model, data.catalogue.item_ids[:5])
    with pytest.raises(ValueError, match=r"outside 0\.\.5"):
        remapped.score(from_lists([[6]]))
    assert remapped.score(from_lists([])).shape == (0, 6)


def test_a_checkpoint_is_frozen_once_wrapped(
    data: Interactions, model: SASRec, tmp_path: Path
) -> None:
    path = tmp_path / "m.pt"
    model.to_checkpoint({"NDCG@10": 0.1}).save(path)
    built = load_checkpoint(path).build()
    assert isinstance(built, SequenceScorer)
    remapped = Remapped(built, data.catalogue.item_ids[::-1])
    batch = data.histories.slice(0, 5)
    reversed_batch = Histories(
        batch.users, batch.offsets, (data.catalogue.n_items + 1 - batch.items), batch.times
    )
    np.testing.assert_allclose(
        remapped.score(reversed_batch)[:, 1:], model.score(batch)[:, :0:-1], rtol=1e-5
    )
    with pytest.raises(NotImplementedError, match="not trained again"):
        remapped.fit(data)
