"""Model registry: versions, LATEST, rollback, crash leftovers, two publishers at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models.checkpoint import Checkpoint, CheckpointError
from models.registry import LATEST, Registry, RegistryError, version_ms
from schemas.codec import Codec

ROOT = Path(__file__).resolve().parents[2]


def _ckpt(seed: int, hr: float) -> Checkpoint:
    gen = torch.Generator().manual_seed(seed)
    return Checkpoint(
        kind="tiny",
        config={"dim": 3},
        state_dict={"w": torch.randn(4, 3, generator=gen)},
        item_ids=["a", "b", "c"],
        metrics={"hr@10": hr},
    )


def test_publish_two_versions_latest_follows_and_rollback(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    before_ms = time.time_ns() // 1_000_000
    v1 = reg.publish(_ckpt(1, 0.1), "sasrec")
    v2 = reg.publish(_ckpt(2, 0.2), "sasrec")

    assert v1.version < v2.version
    assert reg.versions("sasrec") == [v1.version, v2.version]
    assert reg.latest("sasrec") == v2
    assert (tmp_path / "reg" / "sasrec" / LATEST).read_text().strip() == v2.version
    assert (
        v2.path
        == reg.path("sasrec", v2.version)
        == tmp_path / "reg" / "sasrec" / f"{v2.version}.pt"
    )
    assert before_ms <= v1.ts <= v2.ts <= time.time_ns() // 1_000_000
    assert torch.equal(reg.load("sasrec").state_dict["w"], _ckpt(2, 0).state_dict["w"])
    assert reg.load("sasrec", v1.version).metrics == {"hr@10": 0.1}
    assert reg.names() == ["sasrec"]

    back = reg.rollback("sasrec")
    assert back == v1 and reg.latest("sasrec") == v1
    assert torch.equal(reg.load("sasrec").state_dict["w"], _ckpt(1, 0).state_dict["w"])
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback("sasrec")

    # A publish after a rollback becomes LATEST again and sorts after everything.
    v3 = reg.publish(_ckpt(3, 0.3), "sasrec")
    assert reg.latest("sasrec") == v3
    assert reg.versions("sasrec") == [v1.version, v2.version, v3.version]


def test_record_matches_the_model_update_schema(tmp_path: Path) -> None:
    version = Registry(tmp_path).publish(_ckpt(1, 0.5), "m")
    record = version.to_record()
    assert record == {
        "name": "m",
        "version": version.version,
        "uri": version.path.resolve().as_uri(),
        "metrics": {"hr@10": 0.5},
        "ts": version_ms(version.version),
    }
    assert record["uri"].startswith("file:///")
    codec = Codec()
    assert codec.decode("ModelUpdate", codec.encode("ModelUpdate", record)) == record


def test_unfinished_publish_never_shows_as_a_version(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    v1 = reg.publish(_ckpt(1, 0.1), "m")
    # A crash after writing the temp file and before the rename leaves exactly this.
    data = _ckpt(2, 0.2).to_bytes()
    (tmp_path / "m" / ".tmpab12cd.partial").write_bytes(data)
    (tmp_path / "m" / ".tmpab12cd.partial").with_suffix(".pt.partial").write_bytes(data[:100])
    assert reg.versions("m") == [v1.version]
    assert reg.latest("m") == v1
    v2 = reg.publish(_ckpt(3, 0.3), "m")
    assert reg.versions("m") == [v1.version, v2.version]


def test_tampered_file_and_bad_names(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    v1 = reg.publish(_ckpt(1, 0.1), "m")
    v1.path.write_bytes(_ckpt(9, 0.9).to_bytes())
    with pytest.raises(CheckpointError, match="does not match version"):
        reg.load("m")
    with pytest.raises(RegistryError, match="model name"):
        reg.publish(_ckpt(1, 0.1), "../escape")
    with pytest.raises(RegistryError, match="not a version id"):
        reg.path("m", "latest")
    with pytest.raises(RegistryError, match="no published version of 'other'"):
        reg.latest("other")
    with pytest.raises(RegistryError, match="has no version"):
        reg.load("m", "20200101T000000.000000Z-00000000")


PUBLISHER = """
import sys, time
from models.checkpoint import load_checkpoint
from models.registry import Registry
reg, ckpt = Registry(sys.argv[1]), load_checkpoint(sys.argv[2])
while time.time() < float(sys.argv[3]):
    time.sleep(0.001)
for _ in range(int(sys.argv[4])):
    print(reg.publish(ckpt, "m").version, flush=True)
"""


def test_concurrent_publishers_get_distinct_versions(tmp_path: Path) -> None:
    source = tmp_path / "src.pt"
    _ckpt(1, 0.1).save(source)  # the same content from both: only the time can tell them apart
    each = 8
    start = time.time() + 4  # both processes have imported torch by then, usually
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                PUBLISHER,
                str(tmp_path / "reg"),
                str(source),
                str(start),
                str(each),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    printed = [v for out, _ in outputs for v in out.split()]
    reg = Registry(tmp_path / "reg")
    assert len(set(printed)) == 2 * each
    assert reg.versions("m") == sorted(printed)
    assert reg.latest("m").version == max(printed)
    for version in printed:
        assert reg.load("m", version).metrics == {"hr@10": 0.1}
