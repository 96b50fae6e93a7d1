"""Checkpoints: round trip in this process and a fresh one, and every kind of bad file."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import pytest
import torch
from torch import nn

from models.checkpoint import (
    MODEL_KINDS,
    SCHEMA_VERSION,
    Checkpoint,
    CheckpointError,
    build_model,
    load_checkpoint,
    model_class,
    register_kind,
)

ROOT = Path(__file__).resolve().parents[2]
KIND = "tiny-test"
TARGET = f"{__name__}:TinyModel"


class TinyModel(nn.Module):
    """Item embeddings and a linear head: enough to tell two sets of weights apart."""

    def __init__(self, n_items: int, dim: int, item_ids: list[str]) -> None:
        super().__init__()
        self.dim, self.item_ids = dim, item_ids
        self.emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.head = nn.Linear(dim, n_items + 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids).mean(dim=1))  # [batch, n_items + 1]

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> Self:
        model = cls(ckpt.n_items, int(ckpt.config["dim"]), list(ckpt.item_ids))
        model.load_state_dict(ckpt.state_dict)
        return model.eval()

    def to_checkpoint(self, metrics: Mapping[str, float] | None = None) -> Checkpoint:
        return Checkpoint(
            kind=KIND,
            config={"dim": self.dim, "layers": (1, 2)},
            state_dict=self.state_dict(),
            item_ids=self.item_ids,
            metrics=dict(metrics or {}),
            extras={"prices": torch.arange(len(self.item_ids) + 1, dtype=torch.float32)},
        )


@pytest.fixture(autouse=True)
def _tiny_kind() -> Iterator[None]:
    register_kind(KIND, TARGET)
    yield
    MODEL_KINDS.pop(KIND, None)


def _trained() -> TinyModel:
    torch.manual_seed(0)
    model = TinyModel(5, 4, [f"item{i}" for i in range(1, 6)])
    # One optimiser step so the weights are not just the initialisation.
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ids = torch.tensor([[1, 2], [3, 4]])
    nn.functional.cross_entropy(model(ids), torch.tensor([3, 5])).backward()
    opt.step()
    return model.eval()


IDS = torch.tensor([[1, 2, 0], [5, 4, 3]])


def test_round_trip_keeps_weights_outputs_and_metadata(tmp_path: Path) -> None:
    model = _trained()
    ckpt = model.to_checkpoint({"ndcg@10": 0.25, "hr@10": 1})
    path = tmp_path / "m.pt"
    ckpt.save(path)

    loaded = load_checkpoint(path)
    assert (loaded.kind, loaded.item_ids, loaded.created_ms) == (
        KIND,
        model.item_ids,
        ckpt.created_ms,
    )
    assert loaded.config == {"dim": 4, "layers": [1, 2]}  # JSON types: the tuple is a list
    assert loaded.metrics == {"ndcg@10": 0.25, "hr@10": 1.0}
    assert torch.equal(loaded.extras["prices"], torch.arange(6, dtype=torch.float32))
    assert loaded.state_dict.keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict[name], tensor), name

    rebuilt = build_model(loaded)
    assert isinstance(rebuilt, TinyModel)
    with torch.no_grad():
        assert torch.equal(rebuilt(IDS), model(IDS))


def test_fresh_process_rebuilds_the_same_model(tmp_path: Path) -> None:
    model = _trained()
    path, out = tmp_path / "m.pt", tmp_path / "out.pt"
    model.to_checkpoint({"loss": 1.5}).save(path)
    script = (
        "import sys, torch\n"
        "from models.checkpoint import load_checkpoint, register_kind\n"
        f"register_kind({KIND!r}, {TARGET!r})\n"
        "ckpt = load_checkpoint(sys.argv[1])\n"
        "with torch.no_grad():\n"
        f"    scores = ckpt.build()(torch.tensor({IDS.tolist()}))\n"
        "torch.save({'scores': scores, 'items': ckpt.item_ids}, sys.argv[2])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = torch.load(out, weights_only=True)
    assert result["items"] == model.item_ids
    with torch.no_grad():
        assert torch.equal(result["scores"], model(IDS))


class Evil:
    """Unpickling this would run code; a weights-only load must refuse it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("pwned",))


def _payload() -> dict[str, Any]:
    return _trained().to_checkpoint({"hr@10": 0.5}).payload()


def _write_truncated(path: Path) -> None:
    _trained().to_checkpoint().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_random(path: Path) -> None:
    path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())


def _write_payload(**changes: Any) -> Any:
    def write(path: Path) -> None:
        payload = _payload()
        for key, value in changes.items():
            if value is _DROP:
                del payload[key]
            else:
                payload[key] = value
        torch.save(payload, path)

    return write


_DROP = object()

CORRUPTIONS = {
    "truncated": (_write_truncated, "not a readable checkpoint"),
    "random bytes": (_write_random, "not a readable checkpoint"),
    "empty file": (lambda p: p.write_bytes(b""), "not a readable checkpoint"),
    "pickled object": (lambda p: torch.save({"x": Evil()}, p), "refusing to unpickle"),
    "not a checkpoint": (lambda p: torch.save({"a": 1}, p), "no format marker"),
    "newer schema": (_write_payload(schema_version=SCHEMA_VERSION + 1), "schema version"),
    "schema as bool": (_write_payload(schema_version=True), "schema version"),
    "missing item_ids": (_write_payload(item_ids=_DROP), "missing key(s): item_ids"),
    "missing state_dict": (_write_payload(state_dict=_DROP), "missing key(s): state_dict"),
    "item_ids a str": (_write_payload(item_ids="abc"), "item_ids must be a list"),
    "duplicate items": (_write_payload(item_ids=["a", "a"]), "duplicates"),
    "metric not a number": (_write_payload(metrics={"hr": "high"}), "not a number"),
    "weight not a tensor": (_write_payload(state_dict={"w": [1.0]}), "'w' holds list"),
    "kind empty": (_write_payload(kind=""), "kind must be"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_bad_files_raise_checkpoint_error_naming_file_and_problem(
    tmp_path: Path, case: str
) -> None:
    write, problem = CORRUPTIONS[case]
    path = tmp_path / "bad.pt"
    write(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "absent.pt")


def test_mmap_load_matches(tmp_path: Path) -> None:
    ckpt = _trained().to_checkpoint()
    ckpt.save(tmp_path / "m.pt")
    mapped = load_checkpoint(tmp_path / "m.pt", mmap=True)
    assert all(torch.equal(mapped.state_dict[k], v) for k, v in ckpt.state_dict.items())


def test_config_must_be_json() -> None:
    with pytest.raises(CheckpointError, match="JSON types"):
        Checkpoint(kind=KIND, config={"f": object()}, state_dict={}, item_ids=[])


def test_kind_lookup_errors() -> None:
    assert model_class(KIND) is TinyModel
    with pytest.raises(CheckpointError, match="unknown model kind 'nope'"):
        model_class("nope")
    register_kind("ghost", "models.no_such_module:Ghost")
    try:
        with pytest.raises(CheckpointError, match=r"cannot import models\.no_such_module"):
            model_class("ghost")
    finally:
        del MODEL_KINDS["ghost"]
    with pytest.raises(CheckpointError, match="module:Class"):
        register_kind("x", "no-colon")
    assert MODEL_KINDS["sasrec"] == "models.sasrec:SASRec"


def test_weights_that_do_not_fit_the_config_are_a_checkpoint_error() -> None:
    ckpt = _trained().to_checkpoint()
    wrong = Checkpoint(
        kind=KIND,
        config={"dim": 8},
        state_dict=ckpt.state_dict,
        item_ids=ckpt.item_ids,
    )
    with pytest.raises(CheckpointError, match="cannot build a 'tiny-test' model"):
        build_model(wrong)
