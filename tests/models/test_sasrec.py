"""SASRec and BERT4Rec learn a planted sequential pattern, reproducibly, and round-trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.bert4rec import BERT4Rec, BERT4RecConfig
from models.checkpoint import load_checkpoint
from models.data import Interactions, from_dataset, from_lists
from models.datasets import generate
from models.evaluate import evaluate
from models.sasrec import SASRec, SASRecConfig
from models.split import Split, leave_one_out

FAST = {"hidden": 32, "epochs": 12, "patience": 12, "batch_size": 64, "lr": 3e-3, "progress": False}


@pytest.fixture(scope="module")
def split() -> Split:
    data = generate(n_users=600, n_items=120, n_categories=6, events_per_user=(8, 20), seed=3)
    return leave_one_out(from_dataset(data))


class Popularity:
    name = "popularity"

    def fit(self, train: Interactions, valid: object = None) -> Popularity:
        counts = np.bincount(train.histories.items, minlength=train.catalogue.n_items + 1)
        self.counts = counts.astype(np.float32)
        return self

    def score(self, histories: object) -> np.ndarray:
        return np.tile(self.counts, (len(histories), 1))  # type: ignore[arg-type]


def ndcg(model: object, split: Split) -> float:
    return float(evaluate(model, split.test, split.train, k=10)["NDCG@10"])  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "sampled", "bce"])
def test_sasrec_learns_the_planted_successors(split: Split, loss: str) -> None:
    model = SASRec(SASRecConfig(loss=loss, negatives=32, **FAST)).fit(split.train, split.valid)  # type: ignore[arg-type]
    popular = ndcg(Popularity().fit(split.train), split)
    learned = ndcg(model, split)
    assert learned > 2 * popular, (learned, popular)
    assert model.history[0]["loss"] > model.history[-1]["loss"]


@pytest.mark.slow
def test_bert4rec_learns_the_planted_successors(split: Split) -> None:
    # masked-item training learns more slowly than next-item training
    config = BERT4RecConfig(**{**FAST, "epochs": 40, "patience": 40})  # type: ignore[arg-type]
    model = BERT4Rec(config).fit(split.train, split.valid)
    # a broken model lands at or under popularity; BERT4Rec reaches about 1.4x here
    assert ndcg(model, split) > 1.25 * ndcg(Popularity().fit(split.train), split)


def test_horizon_loss_is_next_item_loss_when_nothing_else_is_near() -> None:
    torch = pytest.importorskip("torch")
    from models.sasrec import SASRecNet
    from models.train import Batch

    day = 86_400_000
    ids = torch.tensor([[0, 2, 3, 4, 5], [1, 2, 3, 4, 5]])
    spread = torch.tensor(
        [[0, 0, 10 * day, 20 * day, 30 * day], [0, day, 2 * day, 3 * day, 4 * day]]
    )
    batch = Batch(ids[:, :-1], spread[:, :-1], ids[:, 1:], spread[:, 1:])
    torch.manual_seed(0)
    plain = SASRecNet(SASRecConfig(hidden=16, features=()), 8, 0).eval()
    window = SASRecNet(SASRecConfig(hidden=16, features=(), horizon_days=0.5), 8, 0).eval()
    window.load_state_dict(plain.state_dict())
    assert window.loss(batch).item() == pytest.approx(plain.loss(batch).item(), rel=1e-5)
    # one basket: every later item of it is a target of each position, so the loss changes
    basket = Batch(
        ids[:, :-1], torch.zeros_like(ids[:, :-1]), ids[:, 1:], torch.zeros_like(ids[:, 1:])
    )
    assert window.loss(basket).item() != pytest.approx(plain.loss(basket).item(), rel=1e-3)
    with pytest.raises(ValueError, match="horizon_days"):
        SASRecConfig(loss="bce", horizon_days=7.0)


def test_side_features_train_and_score(split: Split) -> None:
    config = SASRecConfig(features=("category", "price", "timegap"), **{**FAST, "epochs": 2})  # type: ignore[arg-type]
    scores = SASRec(config).fit(split.train).score(split.test.inputs)
    assert scores.shape == (len(split.test), split.data.catalogue.n_items + 1)
    assert np.isfinite(scores).all()


def test_same_seed_same_model(split: Split) -> None:
    config = SASRecConfig(**{**FAST, "epochs": 2})  # type: ignore[arg-type]
    a = SASRec(config).fit(split.train).score(split.test.inputs)
    b = SASRec(config).fit(split.train).score(split.test.inputs)
    other = SASRec(SASRecConfig(**{**FAST, "epochs": 2, "seed": 1})).fit(split.train)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, other.score(split.test.inputs))


def test_ema_keeps_the_moving_average_of_the_weights(split: Split) -> None:
    lr = FAST["lr"]
    assert isinstance(lr, float)
    start = SASRec(SASRecConfig(**{**FAST, "epochs": 0})).fit(split.train)  # type: ignore[arg-type]
    config = {**FAST, "epochs": 2}

    def moved(model: SASRec) -> float:
        pairs = zip(model._module().parameters(), start._module().parameters(), strict=True)
        return max(float((a - b).detach().abs().max()) for a, b in pairs)

    # Adam moves a weight by at most lr in its first step. An average that hardly follows
    # the training stays at the weights of that step, validated and kept or not, while
    # the weights as trained move far further in two epochs.
    assert moved(SASRec(SASRecConfig(**config)).fit(split.train)) > 10 * lr  # type: ignore[arg-type]
    slow = {**config, "ema": 1 - 1e-9}
    assert moved(SASRec(SASRecConfig(**slow)).fit(split.train)) <= 1.01 * lr  # type: ignore[arg-type]
    assert moved(SASRec(SASRecConfig(**slow)).fit(split.train, split.valid)) <= 1.01 * lr  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ema"):
        SASRecConfig(ema=1.0)


def test_empty_history_scores_finite(split: Split) -> None:
    model = SASRec(SASRecConfig(**{**FAST, "epochs": 1})).fit(split.train)  # type: ignore[arg-type]
    assert np.isfinite(model.score(from_lists([[], [1]]))).all()


def test_checkpoint_scores_identically_in_a_fresh_process(split: Split, tmp_path: Path) -> None:
    config = BERT4RecConfig(features=("category",), **{**FAST, "epochs": 2})  # type: ignore[arg-type]
    model = BERT4Rec(config).fit(split.train)
    path = tmp_path / "model.pt"
    model.to_checkpoint({"NDCG@10": 0.5}).save(path)
    histories = split.test.inputs.slice(0, 50)
    np.save(tmp_path / "items.npy", histories.padded(20))
    expected = model.score(histories)
    script = f"""
import numpy as np
from models.checkpoint import load_checkpoint
from models.data import from_lists
rows = np.load({str(tmp_path / "items.npy")!r})
model = load_checkpoint({str(path)!r}).build()
scores = model.score(from_lists([r[r > 0].tolist() for r in rows]))
np.save({str(tmp_path / "scores.npy")!r}, scores)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "scores.npy"), expected)
    ckpt = load_checkpoint(path)
    assert ckpt.kind == "bert4rec" and ckpt.metrics == {"NDCG@10": 0.5}
    assert list(ckpt.item_ids) == list(split.data.catalogue.item_ids)


def test_bad_configs_are_named() -> None:
    with pytest.raises(ValueError, match="loss"):
        SASRecConfig(loss="hinge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="features"):
        SASRecConfig(features=("colour",))
    with pytest.raises(ValueError, match="heads"):
        SASRecConfig(hidden=30, heads=4)
    with pytest.raises(RuntimeError, match="not fitted"):
        SASRec().score(from_lists([[1]]))
