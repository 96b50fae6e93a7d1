"""Every Redis key the system writes, built in one place.

Per-user keys carry the pseudonym in a ``{hash tag}`` so that on Redis Cluster all keys
of one user live in one slot and the per-user Lua step stays single-slot.

>>> user_keys("ab12")[:3]
('u:{ab12}:seq', 'u:{ab12}:edge', 'u:{ab12}:prefs')
>>> seq("ab12"), item_meta("85123A"), cooc(17)
('u:{ab12}:seq', 'item:85123A', 'co:17')
"""

from __future__ import annotations

# Item vocabulary: external item id <-> dense integer, shared by all workers.
ITEM_INDEX = "items:idx"  # hash item_id -> int
ITEM_IDS = "items:id"  # hash int -> item_id
ITEM_NEXT = "items:next"  # counter for the next integer
POPULARITY = "pop"  # zset item int -> interactions
APPLIED_OFFSETS = "applied"  # hash "topic:partition" -> highest applied offset
STATS = "stats"  # hash of global counters (events applied, duplicates, ...)
USERS_SEEN = "users:hll"  # HyperLogLog of pseudonyms with at least one applied event
TRENDING = "trend"  # zset item int -> time-decayed popularity (see apply_interactions.lua)
TRENDING_EPOCH = "trend:t0"  # unix seconds the trending weights are relative to
CATALOG_VERSION = "catalog:version"  # counter of applied catalog changes
CATALOG_CHANGES = "catalog:changes"  # zset item id -> version of its latest change
CATALOG_FLOOR = "catalog:floor"  # highest version trimmed from the change log
CONSENT_WITHDRAWN = "consent:withdrawn"  # set of pseudonyms whose latest choice withdrew consent
SEGMENT_MODEL = "seg:model"  # JSON: version, centroids, counts, scaler (models.segments.online)
SEGMENT_WARM = "seg:warm"  # list of raw profiles (JSON, no user ids) until the model is seeded
SEGMENT_SIZES = "seg:sizes"  # hash segment -> users currently assigned to it
# unix seconds the per-segment trending weights are relative to
SEGMENT_TREND_EPOCH = "seg:trend:t0"
EVALUATION = "eval"  # hash "<version|segment|arm>:<value>:<n|hits|rr>": online evaluation
EXPOSURE = "exposure"  # zset item id -> times shown in a recommendation
DRIFT_ALERTS = "drift:alerts"  # list of recent DriftAlert records (JSON), newest first
TRAIN_REQUESTED = "train:requested"  # set by a drift alert; the trainer runs and deletes it
WORKERS = "workers"  # hash worker id -> JSON heartbeat (rate, versions, partitions, time)


def seq(uid: str) -> str:
    """Packed recent-item sequence of a user (see streams.state.sequence)."""
    return f"u:{{{uid}}}:seq"


def prefs(uid: str) -> str:
    """Hash of consent flags and their timestamps."""
    return f"u:{{{uid}}}:prefs"


def wishlist(uid: str) -> str:
    return f"u:{{{uid}}}:wish"


def subscriptions(uid: str) -> str:
    return f"u:{{{uid}}}:subs"


def segment(uid: str) -> str:
    return f"u:{{{uid}}}:seg"


def segment_trending(seg: int) -> str:
    """Zset of item indices by time-decayed popularity among users of a segment.

    >>> segment_trending(3)
    'seg:3:trend'
    """
    return f"seg:{seg}:trend"


def last_recommendation(uid: str) -> str:
    """The last recommendation shown to a user, kept for the attribution window."""
    return f"u:{{{uid}}}:rec"


def evaluation_hour(start_s: int) -> str:
    """Online evaluation counts of the hour (event time) starting at ``start_s``.

    >>> evaluation_hour(7200)
    'eval:h:7200'
    """
    return f"eval:h:{start_s}"


def drift_cooldown(monitor: str) -> str:
    """Set while a monitor's alert is being debounced, so that workers alert once."""
    return f"drift:cooldown:{monitor}"


def edge(uid: str) -> str:
    """Hashes of evicted events in the second of the oldest kept one (see the Lua step)."""
    return f"u:{{{uid}}}:edge"


def segment_move(uid: str) -> str:
    """The segment a user last left and the event that moved them: ``"<old>|<event>"``.

    Kept a day, so that a redelivered event re-announces a move whose SegmentChange
    may not have been delivered (the segment itself was already written).
    """
    return f"u:{{{uid}}}:segmv"


def user_keys(uid: str) -> tuple[str, ...]:
    """All keys that hold data of one user: what an erasure deletes."""
    return (
        seq(uid),
        edge(uid),
        prefs(uid),
        wishlist(uid),
        subscriptions(uid),
        segment(uid),
        segment_move(uid),
        last_recommendation(uid),
    )


def item_meta(item_id: str) -> str:
    """Hash of catalog fields of an item."""
    return f"item:{item_id}"


def new_in_category(category: str) -> str:
    """Zset of item ids by when they first appeared in this top-level category."""
    return f"cat:new:{category}"


def cooc(item_index: int) -> str:
    """Zset of items bought near this one (by integer index), with counts."""
    return f"co:{item_index}"
