"""The project's exception hierarchy: one root, one subclass per kind of failure.

Library errors (fastavro, redis, aiokafka, ...) are caught at the boundary and
re-raised as one of these with ``from exc``, so callers handle our types only.
"""

from __future__ import annotations


class RecommenderError(Exception):
    """Root of every exception this project raises on purpose."""


class SchemaError(RecommenderError):
    """A schema could not be loaded, or a record could not be encoded or decoded."""


class InvalidEventError(RecommenderError):
    """A well-formed event breaks a domain rule (empty id, negative quantity, ...).

    ``reason`` is a short, stable string meant for dead-letter records and metrics.

    >>> err = InvalidEventError("quantity must be > 0 (got -3)")
    >>> err.reason
    'quantity must be > 0 (got -3)'
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(RecommenderError):
    """Settings are missing, malformed or contradict each other."""


class ServiceError(RecommenderError):
    """A broker, Redis or a bundled binary could not be reached or started."""
