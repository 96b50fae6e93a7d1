"""Serving a trained sequence model: top-K with seen items removed, reasons, canary checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.blocks import EncoderConfig, ItemEncoder
from models.data import from_dataset, from_lists
from models.datasets import generate
from models.sasrec import SASRec, SASRecConfig
from models.serving import _best, canary_check, top_k
from models.split import leave_one_out


@pytest.fixture(scope="module")
def model() -> SASRec:
    data = generate(n_users=300, n_items=60, n_categories=4, events_per_user=(5, 12), seed=5)
    split = leave_one_out(from_dataset(data))
    config = SASRecConfig(hidden=16, epochs=3, batch_size=64, progress=False, threads=1)
    return SASRec(config).fit(split.train, split.valid)


def test_top_k_matches_full_scores_without_seen_items(model: SASRec) -> None:
    histories = [[3, 7, 9], [1], [5, 5, 2, 8, 11, 4]]
    got = top_k(model, histories, k=5)
    full = model.score(from_lists(histories))
    for row, history in enumerate(histories):
        scores = full[row].copy()
        scores[0] = -np.inf
        scores[history] = -np.inf
        expected = np.argsort(-scores, kind="stable")[:5]
        assert got.items[row].tolist() == expected.tolist()
        assert not set(got.items[row].tolist()) & set(history)
        assert np.allclose(got.scores[row], scores[expected], atol=1e-5)
        assert set(got.because[row].tolist()) <= set(history)


def test_a_batch_of_mixed_lengths_scores_each_history_as_alone(model: SASRec) -> None:
    rng = np.random.default_rng(3)
    n = len(model.item_ids)
    histories = [rng.integers(1, n + 1, int(m)).tolist() for m in rng.integers(1, 70, 40)]
    batch = top_k(model, histories, k=8)
    for row, history in enumerate(histories):
        alone = top_k(model, [history], k=8)
        assert np.allclose(batch.scores[row], alone.scores[0], atol=1e-4), row
        assert batch.items[row].tolist() == alone.items[0].tolist(), row
        assert batch.because[row].tolist() == alone.because[0].tolist(), row


def test_offline_scores_of_mixed_lengths_match_each_history_alone(model: SASRec) -> None:
    rng = np.random.default_rng(4)
    n = len(model.item_ids)
    histories = [rng.integers(1, n + 1, int(m)).tolist() for m in rng.integers(1, 70, 60)]
    batch = model.score(from_lists(histories))
    for row, history in enumerate(histories):
        alone = model.score(from_lists([history]))
        assert np.allclose(batch[row], alone[0], atol=1e-4), row


def test_history_beyond_maxlen_is_still_excluded(model: SASRec) -> None:
    n = len(model.item_ids)
    long = list(range(1, n - 4))  # longer than maxlen 50, so most is never read
    got = top_k(model, [long], k=10)
    assert set(got.items[0][got.items[0] > 0].tolist()) <= set(range(n - 4, n + 1))
    assert (got.items[0] == 0).sum() == 10 - 5  # only 5 unseen items are left


def test_canary_accepts_a_trained_model_and_rejects_nan_weights(model: SASRec) -> None:
    assert canary_check(model) is None
    broken = SASRec.from_checkpoint(model.to_checkpoint())
    assert broken.net is not None
    with torch.no_grad():
        broken.net.encoder.item.weight[5].fill_(float("nan"))
    reason = canary_check(broken)
    assert reason is not None and "NaN" in reason


def test_the_fused_item_table_follows_every_change_to_what_it_fuses(model: SASRec) -> None:
    copy = SASRec.from_checkpoint(model.to_checkpoint())
    net = copy.net
    assert net is not None
    encoder = net.encoder
    category = encoder.category
    assert category is not None
    every = torch.arange(encoder.item.num_embeddings)

    def fresh() -> torch.Tensor:
        with torch.enable_grad():  # the cache is off while gradients are on
            return encoder.embed(every).detach()

    with torch.no_grad():
        assert torch.equal(encoder.items(), fresh()[: encoder.n_items + 1])
        encoder.item.weight[3].add_(1.0)
        assert torch.equal(encoder.items()[3], fresh()[3])
        category.weight[1].add_(1.0)
        assert torch.equal(encoder.items(), fresh()[: encoder.n_items + 1])
        cats = encoder.categories.clone()
        cats[2] = 0
        encoder.set_side_features({"categories": cats, "price_buckets": encoder.price_buckets})
        assert torch.equal(encoder.items()[2], fresh()[2])


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("causal", [True, False])
def test_the_last_position_alone_is_the_full_pass_cut_to_it(heads: int, causal: bool) -> None:
    torch.manual_seed(heads)
    config = EncoderConfig(hidden=32, heads=heads, blocks=3, maxlen=20)
    encoder = ItemEncoder(config, n_items=50, n_tokens=52, n_categories=4, causal=causal).eval()
    ids = torch.randint(1, 51, (6, 20))
    ids[1, :15] = 0  # left padding of every length, down to a single item
    ids[2, :19] = 0
    ids[3, :10] = 0
    with torch.no_grad():
        full = encoder(ids)[:, -1]
        last = encoder(ids, last_only=True)
    assert last.shape == (6, 1, 32)
    assert torch.allclose(last[:, 0], full, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 6),
    width=st.integers(1, 4000),
    k=st.integers(1, 12),
    unseen=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_two_step_top_k_gives_what_one_pass_gives(
    rows: int, width: int, k: int, unseen: float, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    # Distinct scores: the order of tied ones is unspecified in either way.
    scores = torch.stack([torch.randperm(width, generator=gen) for _ in range(rows)]).float()
    # Seen items are -inf; a row may have fewer than k items left.
    scores[torch.rand(rows, width, generator=gen) < unseen] = -torch.inf
    k = min(k, width)
    best, idx = _best(scores, k, chunk=8)
    full = torch.topk(scores, k, dim=1)
    assert torch.equal(best, full.values)
    finite = torch.isfinite(best)
    assert torch.equal(idx[finite], full.indices[finite])
