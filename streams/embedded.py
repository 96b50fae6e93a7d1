"""A local Kafka-protocol broker (Tansu) and Redis on free loopback ports, for dev, demo and tests.

Both run as child processes logging to files; nothing is written outside a temp dir.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from schemas.errors import ServiceError
from streams.probes import port_is_open as port_is_open  # re-exported for callers
from streams.services import (
    STARTUP_TIMEOUT_S,
    RedisHandle,
    ServiceHandle,
    TansuHandle,
    start_redis,
    start_tansu,
    tansu_binary,
)

__all__ = [
    "STARTUP_TIMEOUT_S",
    "EmbeddedStack",
    "RedisHandle",
    "ServiceHandle",
    "TansuHandle",
    "port_is_open",
    "start_redis",
    "start_tansu",
    "tansu_binary",
]


class EmbeddedStack:
    """Kafka and Redis for dev and tests: uses the configured ones, starts the rest locally.

    >>> with EmbeddedStack("kafka:9092", "redis://redis:6379/0") as stack:
    ...     stack.bootstrap_servers, stack.redis_url
    ('kafka:9092', 'redis://redis:6379/0')

    Usable as ``with`` or ``async with``; children stop at exit, on errors and on
    KeyboardInterrupt, and at interpreter exit if ``stop()`` was never reached.
    """

    def __init__(
        self,
        kafka_bootstrap_servers: str | None = None,
        redis_url: str | None = None,
        *,
        log_dir: str | Path | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_S,
    ) -> None:
        self._kafka = kafka_bootstrap_servers
        self._redis = redis_url
        self._given_log_dir = Path(log_dir) if log_dir else None
        self._log_dir: Path | None = None
        self._timeout = startup_timeout
        self.tansu: TansuHandle | None = None
        self.redis: RedisHandle | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.tansu is not None:
            return self.tansu.bootstrap_servers
        if self._kafka is None:
            raise ServiceError("EmbeddedStack is not started")
        return self._kafka

    @property
    def redis_url(self) -> str:
        if self.redis is not None:
            return self.redis.url
        if self._redis is None:
            raise ServiceError("EmbeddedStack is not started")
        return self._redis

    @property
    def log_dir(self) -> Path | None:
        return self._log_dir

    def start(self) -> Self:
        if self._kafka is not None and self._redis is not None:
            return self
        if self._log_dir is None:
            self._log_dir = self._given_log_dir or Path(tempfile.mkdtemp(prefix="reco-embedded-"))
            self._log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            if self._redis is None and self.redis is None:
                self.redis = start_redis(self._log_dir, timeout=self._timeout)
            if self._kafka is None and self.tansu is None:
                self.tansu = start_tansu(self._log_dir, timeout=self._timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for handle in (self.tansu, self.redis):
            if handle is not None:
                handle.stop()
        self.tansu = self.redis = None
        atexit.unregister(self.stop)
        if self._log_dir is not None and self._given_log_dir is None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
        self._log_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # Start-up blocks the loop for a fraction of a second; doing it in a thread instead
        # would leave children running if the awaiting task were cancelled mid-start.
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
