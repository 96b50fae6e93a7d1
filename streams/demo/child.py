"""The demo's worker: `reco worker` as a child process in a session of its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from streams.settings import Settings

WORKER_STOP_S = 10.0


class Worker:
    """`reco worker` as a child in a session of its own.

    A terminal's Ctrl-C then reaches only the demo, which stops the worker itself
    and can still read the worker's final figures.
    """

    def __init__(self, settings: Settings, log_path: Path, loglevel: str) -> None:
        self.settings, self.log_path, self.loglevel = settings, log_path, loglevel
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "--loglevel", self.loglevel, "worker"],
            env=self.settings.as_env(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, timeout: float = WORKER_STOP_S) -> None:
        if self.proc is not None and self.alive():
            self.proc.terminate()
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if self.alive():
                print(
                    f"reco demo: the worker ignored SIGTERM for {timeout:.0f}s; killing it",
                    file=sys.stderr,
                )
                self.proc.kill()
        self.close()

    def close(self) -> None:
        """Synchronous last resort: SIGTERM, SIGKILL after a timeout; idempotent."""
        if self.proc is not None and self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(WORKER_STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
