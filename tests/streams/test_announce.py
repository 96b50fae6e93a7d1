"""Announcing model versions on model-updates, and `reco publish`, against the real broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from models.checkpoint import MODEL_KINDS, Checkpoint, register_kind
from models.registry import Registry
from schemas.codec import Codec
from schemas.errors import ServiceError
from streams.announce import announce
from streams.cli import main
from streams.probes import free_port
from streams.settings import Settings
from tests.streams.harness import consume, run

pytestmark = pytest.mark.integration


def _ckpt(hr: float) -> Checkpoint:
    return Checkpoint(
        kind="linear-test",
        config={"n": 3},
        state_dict={"weight": torch.randn(3, 3), "bias": torch.zeros(3)},
        item_ids=["a", "b", "c"],
        metrics={"hr@10": hr, "ndcg@10": hr / 2},
    )


class LinearModel(torch.nn.Linear):
    """The smallest model `reco publish` can rebuild from a checkpoint before publishing."""

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> LinearModel:
        model = cls(ckpt.config["n"], ckpt.config["n"])
        model.load_state_dict(ckpt.state_dict)
        return model

    def to_checkpoint(self, metrics: dict[str, float] | None = None) -> Checkpoint:
        raise NotImplementedError


@pytest.mark.parametrize("wire_format", ["avro", "confluent"])
def test_announced_record_is_the_registry_record(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path, wire_format: str
) -> None:
    topic = topic_factory("model-updates", partitions=2)
    s = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_model_updates=topic,
        wire_format=wire_format,
    )
    reg = Registry(tmp_path / "registry")
    versions = [reg.publish(_ckpt(0.1), "sasrec"), reg.publish(_ckpt(0.2), "sasrec")]
    sent = [run(announce(v, s)) for v in versions]
    assert {a.topic for a in sent} == {topic}
    assert sent[0].partition == sent[1].partition  # keyed by model name

    records = consume(s, topic, 2, timeout=30)
    codec = Codec(s.wire_format)
    assert [r.key for r in records] == [b"sasrec", b"sasrec"]
    assert [codec.decode("ModelUpdate", r.value) for r in records] == [
        v.to_record() for v in versions
    ]
    assert [(r.partition, r.offset) for r in records] == [(a.partition, a.offset) for a in sent]


def test_unreachable_broker_is_a_service_error(tmp_path: Path) -> None:
    s = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    version = Registry(tmp_path).publish(_ckpt(0.1), "m")
    with pytest.raises(ServiceError, match=r"announcing m .* failed"):
        run(announce(version, s, timeout=5))


def test_cli_publish_writes_the_registry_and_announces(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = topic_factory("model-updates", partitions=1)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("RECO_TOPIC_MODEL_UPDATES", topic)
    monkeypatch.setenv("RECO_PARTITIONS", "1")
    register_kind("linear-test", f"{__name__}:LinearModel")
    try:
        path = tmp_path / "ckpt.pt"
        _ckpt(0.4).save(path)
        root = tmp_path / "reg"
        assert main(["publish", str(path), "--name", "cli-model", "--registry", str(root)]) == 0
        latest = Registry(root).latest("cli-model")
        assert latest.version in capsys.readouterr().out
        (record,) = consume(Settings(kafka_bootstrap_servers=kafka_bootstrap), topic, 1, 30)
        assert Codec().decode("ModelUpdate", record.value) == latest.to_record()

        # A checkpoint whose weights do not fit its config is refused before publishing.
        bad = _ckpt(0.5)
        Checkpoint(bad.kind, {"n": 4}, bad.state_dict, bad.item_ids).save(path)
        assert main(["publish", str(path), "--name", "cli-model", "--registry", str(root)]) == 2
        assert "cannot build a 'linear-test' model" in capsys.readouterr().err
        assert Registry(root).versions("cli-model") == [latest.version]
    finally:
        MODEL_KINDS.pop("linear-test", None)
