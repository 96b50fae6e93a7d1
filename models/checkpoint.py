"""Self-describing model checkpoints, and the map from model kind to the class that loads one.

A checkpoint file is ``torch.save`` of plain types only (dicts, lists, str, int, float,
tensors), so it is read back with ``torch.load(weights_only=True)``: loading a file
never unpickles an arbitrary object, whoever wrote it.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol, Self

import torch

from schemas.errors import RecommenderError

__all__ = [
    "MODEL_KINDS",
    "SCHEMA_VERSION",
    "Checkpoint",
    "CheckpointError",
    "Checkpointable",
    "build_model",
    "load_checkpoint",
    "model_class",
    "register_kind",
]

# Bump when the file layout changes; load() then names the versions it can read.
SCHEMA_VERSION = 1
FORMAT = "reco-checkpoint"
REQUIRED_KEYS = (
    "format",
    "schema_version",
    "kind",
    "config",
    "state_dict",
    "item_ids",
    "metrics",
    "created_ms",
    "extras",
)

# Strings, not classes, so that importing this module imports no model.
MODEL_KINDS: dict[str, str] = {
    "sasrec": "models.sasrec:SASRec",
    "bert4rec": "models.bert4rec:BERT4Rec",
}


class CheckpointError(RecommenderError):
    """A checkpoint is unreadable, malformed, of an unknown version or kind."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def json_plain(value: Any, what: str = "config") -> Any:
    """``value`` as JSON types (tuples become lists); raises on anything JSON lacks.

    >>> json_plain({"dims": (64, 2), "name": "x", "drop": 0.1})
    {'dims': [64, 2], 'name': 'x', 'drop': 0.1}
    """
    try:
        return json.loads(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{what} must hold JSON types only: {exc}") from exc


def _tensors(values: Mapping[str, Any], what: str) -> dict[str, torch.Tensor]:
    if not isinstance(values, Mapping):
        raise CheckpointError(f"{what} must be a mapping of str to tensor, got {type(values)}")
    out: dict[str, torch.Tensor] = {}
    for key, tensor in values.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"{what} must map str to tensor; {key!r} holds {type(tensor).__name__}"
            )
        tensor = tensor.detach().cpu()
        # torch.save writes a view's whole storage; a small slice must not drag it along.
        if tensor.untyped_storage().nbytes() != tensor.nbytes:
            tensor = tensor.clone()
        out[key] = tensor
    return out


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """Everything needed to rebuild and judge a trained model, and nothing else.

    Item number ``i`` (1-based, 0 is padding) is ``item_ids[i - 1]``.
    """

    kind: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    item_ids: Sequence[str] = field(repr=False)
    metrics: dict[str, float] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    created_ms: int = field(default_factory=_now_ms)

    schema_version: ClassVar[int] = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise CheckpointError(f"kind must be a non-empty str, got {self.kind!r}")
        if not isinstance(self.config, Mapping):
            raise CheckpointError(f"config must be a dict, got {type(self.config).__name__}")
        if isinstance(self.item_ids, str) or not isinstance(self.item_ids, Sequence):
            raise CheckpointError(f"item_ids must be a list of str, got {type(self.item_ids)}")
        bad = next((i for i in self.item_ids if not isinstance(i, str)), None)
        if bad is not None:
            raise CheckpointError(f"item_ids must be str, found {bad!r}")
        if len(set(self.item_ids)) != len(self.item_ids):
            raise CheckpointError("item_ids holds duplicates; each item needs one number")
        if not isinstance(self.metrics, Mapping):
            raise CheckpointError(f"metrics must be a dict, got {type(self.metrics).__name__}")
        metrics: dict[str, float] = {}
        for name, value in self.metrics.items():
            if not isinstance(name, str) or isinstance(value, bool):
                raise CheckpointError(f"metric {name!r} must be a str name with a float value")
            try:
                metrics[name] = float(value)
            except (TypeError, ValueError) as exc:
                raise CheckpointError(f"metric {name!r} is not a number: {value!r}") from exc
        if not isinstance(self.created_ms, int) or isinstance(self.created_ms, bool):
            raise CheckpointError(f"created_ms must be int epoch ms, got {self.created_ms!r}")
        set_ = object.__setattr__  # normalising a frozen instance once, at construction
        set_(self, "config", json_plain(dict(self.config)))
        set_(self, "item_ids", list(self.item_ids))
        set_(self, "metrics", metrics)
        set_(self, "state_dict", _tensors(self.state_dict, "state_dict"))
        set_(self, "extras", _tensors(self.extras, "extras"))

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def payload(self) -> dict[str, Any]:
        """The plain dict that is written to disk."""
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "config": self.config,
            "state_dict": dict(self.state_dict),
            "item_ids": list(self.item_ids),
            "metrics": dict(self.metrics),
            "created_ms": self.created_ms,
            "extras": dict(self.extras),
        }

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.save(buf)
        return buf.getvalue()

    def save(self, target: str | os.PathLike[str] | IO[bytes]) -> None:
        """Write to a path or a binary file object."""
        torch.save(self.payload(), target)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> Checkpoint:
        return load_checkpoint(path, mmap=mmap)

    def build(self) -> Checkpointable:
        """The model this checkpoint describes (see ``build_model``)."""
        return build_model(self)


def load_checkpoint(path: str | os.PathLike[str], *, mmap: bool = False) -> Checkpoint:
    """Read and validate a checkpoint file; ``mmap`` maps tensors instead of reading them.

    Raises ``CheckpointError`` naming the file and what is wrong with it.
    """
    file = Path(path)
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{file}: no such checkpoint file") from exc
    except OSError as exc:
        raise CheckpointError(f"{file}: cannot read checkpoint: {exc}") from exc
    except EOFError as exc:
        raise CheckpointError(f"{file}: not a readable checkpoint (empty or cut short)") from exc
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
        reason = (
            f"it holds {found.group(1)}, not only plain types and tensors; refusing to unpickle"
            if found
            else "corrupt pickle data"
        )
        raise CheckpointError(f"{file}: not a readable checkpoint ({reason})") from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, IndexError, ...
        raise CheckpointError(f"{file}: not a readable checkpoint ({_first_line(exc)})") from exc
    try:
        return _from_payload(raw)
    except CheckpointError as exc:
        raise CheckpointError(f"{file}: {exc}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _from_payload(raw: Any) -> Checkpoint:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"not a {FORMAT} file (no format marker)")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise CheckpointError(
            f"schema version {version!r} is not one this code reads ({SCHEMA_VERSION})"
        )
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise CheckpointError(f"missing key(s): {', '.join(missing)}")
    for key, kind in (("config", dict), ("metrics", dict), ("item_ids", list)):
        if not isinstance(raw[key], kind):
            raise CheckpointError(f"{key} must be a {kind.__name__}, got {type(raw[key])}")
    return Checkpoint(
        kind=raw["kind"],
        config=raw["config"],
        state_dict=raw["state_dict"],
        item_ids=raw["item_ids"],
        metrics=raw["metrics"],
        extras=raw["extras"],
        created_ms=raw["created_ms"],
    )


class Checkpointable(Protocol):
    """A model that writes itself to a checkpoint and is rebuilt from one alone."""

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> Self: ...

    def to_checkpoint(self, metrics: Mapping[str, float] | None = None) -> Checkpoint: ...


def register_kind(kind: str, target: str) -> None:
    """Map ``kind`` to ``"package.module:Class"``; the module is imported when first needed.

    >>> register_kind("demo", "collections:OrderedDict")
    >>> MODEL_KINDS["demo"]
    'collections:OrderedDict'
    >>> del MODEL_KINDS["demo"]
    """
    module, sep, name = target.partition(":")
    if not kind or not sep or not module or not name:
        raise CheckpointError(f"model kind {kind!r}: target must be 'module:Class', got {target!r}")
    MODEL_KINDS[kind] = target


def model_class(kind: str) -> type[Checkpointable]:
    """Import the class registered for ``kind``."""
    target = MODEL_KINDS.get(kind)
    if target is None:
        known = ", ".join(sorted(MODEL_KINDS)) or "none"
        raise CheckpointError(f"unknown model kind {kind!r} (known: {known})")
    module_name, _, name = target.partition(":")
    try:
        cls: type[Checkpointable] = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"model kind {kind!r}: cannot import {target}: {exc}") from exc
    if not callable(getattr(cls, "from_checkpoint", None)):
        raise CheckpointError(f"model kind {kind!r}: {target} has no from_checkpoint()")
    return cls


def build_model(ckpt: Checkpoint) -> Checkpointable:
    """Rebuild the model a checkpoint describes, from the checkpoint alone.

    Errors of the model's own loading code (a weight of the wrong shape, a config key
    it does not know) become ``CheckpointError`` naming the kind.
    """
    cls = model_class(ckpt.kind)
    try:
        return cls.from_checkpoint(ckpt)
    except RecommenderError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot build a {ckpt.kind!r} model: {exc!r}") from exc
