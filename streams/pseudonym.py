"""Keyed pseudonyms for user ids: what Redis, logs and training data hold instead."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymiser:
    """HMAC-SHA256 of the user id under a secret key, truncated to 64 bits (hex).

    64 bits keep collisions negligible for billions of users while keeping Redis keys
    short; without the key a pseudonym cannot be linked back to the id.

    >>> p = Pseudonymiser(b"k")
    >>> p("alice") == p("alice"), p("alice") != p("bob"), len(p("alice"))
    (True, True, 16)
    >>> repr(Pseudonymiser(b"s3cret"))
    'Pseudonymiser(<key hidden>)'
    """

    __slots__ = ("_cache", "_cache_size", "_key")

    def __init__(self, key: bytes, cache_size: int = 100_000) -> None:
        if not key:
            raise ValueError("pseudonym key must not be empty")
        self._key = key
        # Ids repeat heavily in a stream; a bounded cache saves an HMAC per event.
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size

    def __call__(self, user_id: str) -> str:
        cached = self._cache.get(user_id)
        if cached is not None:
            return cached
        digest = hmac.new(self._key, user_id.encode(), hashlib.sha256).hexdigest()[:16]
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[user_id] = digest
        return digest

    def __repr__(self) -> str:
        return "Pseudonymiser(<key hidden>)"
