"""A model registry on a file system: immutable versions, atomic publish, a LATEST pointer.

Layout: ``<root>/<name>/<version>.pt`` per version and ``<root>/<name>/LATEST`` holding
the version that serves. Every file appears by rename of a fully written, fsynced temp
file in the same directory, so a reader (or a crash) never sees half a checkpoint or a
pointer to one. Versions sort by publish time: ``20240101T120000.123456Z-1a2b3c4d`` is
the UTC time to the microsecond plus the first 8 hex digits of the file's SHA-256.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from schemas.errors import RecommenderError

__all__ = ["LATEST", "ModelVersion", "Registry", "RegistryError", "version_id", "version_ms"]

LATEST = "LATEST"
SUFFIX = ".pt"
_LOCK = ".lock"
_HASH_LEN = 8
_TIME_FORMAT = "%Y%m%dT%H%M%S"
VERSION_RE = re.compile(r"^(\d{8}T\d{6})\.(\d{6})Z-([0-9a-f]{8})$")  # 8 = _HASH_LEN
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistryError(RecommenderError):
    """A model name or version is malformed, unknown, or has nothing to roll back to."""


def version_id(epoch_us: int, digest: str) -> str:
    """The version id of a file published at ``epoch_us`` whose SHA-256 is ``digest``.

    >>> version_id(1_700_000_000_123_456, "abcdef0123456789")
    '20231114T221320.123456Z-abcdef01'
    """
    seconds, micros = divmod(epoch_us, 1_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime(_TIME_FORMAT)
    return f"{stamp}.{micros:06d}Z-{digest[:_HASH_LEN]}"


def _epoch_us(version: str) -> int:
    match = VERSION_RE.match(version)
    if match is None:
        raise RegistryError(
            f"{version!r} is not a version id (e.g. 20240101T120000.000000Z-1a2b3c4d)"
        )
    stamp = datetime.strptime(match.group(1), _TIME_FORMAT).replace(tzinfo=UTC)
    return int(stamp.timestamp()) * 1_000_000 + int(match.group(2))


def version_ms(version: str) -> int:
    """Publish time of a version, in epoch milliseconds.

    >>> version_ms("20231114T221320.123456Z-abcdef01")
    1700000000123
    """
    return _epoch_us(version) // 1000


@dataclass(frozen=True)
class ModelVersion:
    """One published version of a model."""

    name: str
    version: str
    path: Path
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ts(self) -> int:
        """Publish time, epoch ms."""
        return version_ms(self.version)

    @property
    def uri(self) -> str:
        return self.path.resolve().as_uri()

    def to_record(self) -> dict[str, Any]:
        """The ModelUpdate record (``schemas/model_update.avsc``) announcing this version."""
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "ts": self.ts,
        }


def _fsync_dir(directory: Path) -> None:
    # A rename is durable only once the directory entry itself reaches the disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(directory: Path, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".partial")
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide versions from workers run as another user
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(tmp)


class Registry:
    """Publish, list, load and roll back model versions under one root directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    def names(self) -> list[str]:
        """Models with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(
            d.name for d in self.root.iterdir() if NAME_RE.match(d.name) and self.versions(d.name)
        )

    def _dir(self, name: str) -> Path:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise RegistryError(
                f"model name {name!r} must be 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return self.root / name

    def path(self, name: str, version: str) -> Path:
        """Where a version's checkpoint lives (whether or not it exists)."""
        _epoch_us(version)
        return self._dir(name) / f"{version}{SUFFIX}"

    def versions(self, name: str) -> list[str]:
        """Published versions, oldest first; temp files of unfinished publishes never show."""
        directory = self._dir(name)
        if not directory.is_dir():
            return []
        found = (p.name.removesuffix(SUFFIX) for p in directory.glob(f"*{SUFFIX}"))
        return sorted(v for v in found if VERSION_RE.match(v))

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        # Serialises version allocation and pointer moves across processes; the slow part
        # (writing the checkpoint) happens outside the lock.
        directory = self._dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / _LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield directory
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def publish(self, checkpoint: Checkpoint, name: str) -> ModelVersion:
        """Write ``checkpoint`` as a new version of ``name`` and point LATEST at it."""
        data = checkpoint.to_bytes()
        digest = hashlib.sha256(data).hexdigest()
        directory = self._dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = _write_temp(directory, data)
        try:
            with self._locked(name):
                existing = self.versions(name)
                now_us = time.time_ns() // 1000
                # Strictly after every existing version, even if the clock stepped back.
                if existing:
                    now_us = max(now_us, _epoch_us(existing[-1]) + 1)
                version = version_id(now_us, digest)
                target = directory / f"{version}{SUFFIX}"
                os.replace(tmp, target)
                _fsync_dir(directory)
                self._point(directory, version)
        finally:
            tmp.unlink(missing_ok=True)
        return ModelVersion(name, version, target, dict(checkpoint.metrics))

    def _point(self, directory: Path, version: str) -> None:
        tmp = _write_temp(directory, f"{version}\n".encode())
        try:
            os.replace(tmp, directory / LATEST)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(directory)

    def latest_version(self, name: str) -> str:
        """The version LATEST points at."""
        pointer = self._dir(name) / LATEST
        try:
            version = pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise RegistryError(f"no published version of {name!r} in {self.root}") from None
        if not VERSION_RE.match(version) or not self.path(name, version).is_file():
            raise RegistryError(f"{pointer} names {version!r}, which is not a published version")
        return version

    def describe(self, name: str, version: str) -> ModelVersion:
        """A published version with its metrics (read without loading the weights)."""
        path = self.path(name, version)
        if not path.is_file():
            raise RegistryError(f"{name!r} has no version {version!r} in {self.root}")
        return ModelVersion(name, version, path, load_checkpoint(path, mmap=True).metrics)

    def latest(self, name: str) -> ModelVersion:
        return self.describe(name, self.latest_version(name))

    def load(self, name: str, version: str | None = None) -> Checkpoint:
        """Load a version (LATEST by default), checking the file against its version's hash."""
        version = version or self.latest_version(name)
        path = self.path(name, version)
        if not path.is_file():
            raise RegistryError(f"{name!r} has no version {version!r} in {self.root}")
        expected = VERSION_RE.match(version).group(3)  # type: ignore[union-attr]
        with path.open("rb") as handle:
            actual = hashlib.file_digest(handle, "sha256").hexdigest()[:_HASH_LEN]
        if actual != expected:
            raise CheckpointError(
                f"{path}: content hash {actual} does not match version {version} (corrupt copy?)"
            )
        return load_checkpoint(path)

    def rollback(self, name: str) -> ModelVersion:
        """Point LATEST at the version published before the current one."""
        with self._locked(name) as directory:
            current = self.latest_version(name)
            older = [v for v in self.versions(name) if v < current]
            if not older:
                raise RegistryError(f"{name!r}: nothing to roll back to before {current}")
            self._point(directory, older[-1])
        return self.describe(name, older[-1])
