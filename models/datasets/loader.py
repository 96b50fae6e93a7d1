"""Load a data set by name or by file path, and list the ones present."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from models.datasets.base import Dataset, truncate
from models.datasets.eventlog import is_eventlog, read_eventlog
from models.datasets.movielens import load_movielens
from models.datasets.online_retail import load_online_retail
from models.datasets.sequences import attributes_beside, load_amazon, load_pairs, load_sequences
from models.datasets.synthetic import generate

# The repository sits beside shared/, so the data lives at <repo>/../shared/data.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# name -> files it needs, relative to the data directory
FILES: dict[str, tuple[str, ...]] = {
    "online_retail": ("online_retail/customer_raw.parquet",),
    "toys": ("amazon/Toys_and_Games.txt", "amazon/Toys_and_Games_item2attributes.json"),
    "sports": (
        "amazon/Sports_and_Outdoors.txt",
        "amazon/Sports_and_Outdoors_item2attributes.json",
    ),
    "video_games": ("video_games/Video.txt",),
    "ml-100k": ("ml-100k/u.data", "ml-100k/u.item", "ml-100k/u.genre"),
}
SYNTHETIC = "synthetic"
NAMES = (*FILES, SYNTHETIC)

_LOADERS: dict[str, Callable[[Path], Dataset]] = {
    "online_retail": lambda d: load_online_retail(d / FILES["online_retail"][0]),
    "toys": lambda d: load_amazon(d, "Toys_and_Games", "toys"),
    "sports": lambda d: load_amazon(d, "Sports_and_Outdoors", "sports"),
    "video_games": lambda d: load_pairs(d / FILES["video_games"][0], "video_games"),
    "ml-100k": lambda d: load_movielens(d / "ml-100k"),
    SYNTHETIC: lambda d: generate(),
}

# A known file loaded by path keeps its set's name, so its event ids match load(name).
_NAME_OF_FILE = {Path(files[0]).name: name for name, files in FILES.items()}
_SNIFF_LINES = 1000


def available(data_dir: Path | str = DEFAULT_DATA_DIR) -> list[str]:
    """Names of the sets whose files are all present (``synthetic`` always is)."""
    root = Path(data_dir)
    present = [name for name, files in FILES.items() if all((root / f).is_file() for f in files)]
    return [*present, SYNTHETIC]


def load(
    name_or_path: str | Path,
    data_dir: Path | str = DEFAULT_DATA_DIR,
    limit: int | None = None,
) -> Dataset:
    """Load a named set from ``data_dir``, or any file whose format is recognised.

    Names: ``online_retail``, ``toys``, ``sports``, ``video_games``, ``ml-100k`` and
    ``synthetic`` (``generate()`` with its defaults). A path is read by its format:
    an event-log snapshot (``reco snapshot``, JSON lines, optionally gzipped),
    ``.parquet`` as Online Retail invoices, a MovieLens ``u.data`` (or its directory),
    ``user item item ...`` sequence lines (with a ``<stem>_item2attributes.json``
    beside it when present), or ``user item`` pairs. ``limit`` keeps the first N
    events in time order and the products of their items.
    """
    loader = _LOADERS.get(str(name_or_path))
    dataset = loader(Path(data_dir)) if loader else _load_path(Path(name_or_path))
    return truncate(dataset, limit)


def _load_path(path: Path) -> Dataset:
    if not path.exists():
        raise FileNotFoundError(
            f"no data set named {str(path)!r} (known: {', '.join(NAMES)}) and no file at {path}"
        )
    if path.is_dir():
        if (path / "u.data").is_file():
            return load_movielens(path, _NAME_OF_FILE["u.data"])
        raise ValueError(f"{path} is a directory without a MovieLens u.data file")
    # A .jsonl file that is not an event log gets the event-log reader's error, not a guess.
    if is_eventlog(path) or path.name.endswith((".jsonl", ".jsonl.gz")):
        return read_eventlog(path)
    name = _NAME_OF_FILE.get(path.name, path.stem)
    if path.suffix == ".parquet":
        return load_online_retail(path, name)
    first, widest = _sniff(path)
    if path.name == "u.data" or len(first.split("\t")) == 4:
        return load_movielens(path.parent, name)
    if widest > 2:
        return load_sequences(path, name, attributes_beside(path))
    if widest == 2:
        return load_pairs(path, name)
    raise ValueError(f"{path}: unrecognised format (expected 'user item ...' lines)")


def _sniff(path: Path) -> tuple[str, int]:
    """The first non-empty line and the most whitespace-separated fields on early lines."""
    first, widest = "", 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for n, line in enumerate(handle):
            if n >= _SNIFF_LINES:
                break
            if line.strip():
                first = first or line.strip()
                widest = max(widest, len(line.split()))
    return first, widest
