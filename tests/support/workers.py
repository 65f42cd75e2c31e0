"""Worker processes (``tenantctl run ...``) started and stopped by the tests themselves."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from tests.support.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def http_get(port: int, path: str, limit_s: float = 10.0) -> tuple[int, bytes]:
    """(status, body) of a GET on the worker's health server."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), limit_s)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), limit_s)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class WorkerProcess:
    """One ``tenantctl run <roles>`` subprocess with its own HTTP port and log file."""

    def __init__(
        self, roles: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.roles = list(roles)
        self.log_path = log_path
        self.port = free_port()
        self._env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        """Spawn the process and return once its /readyz answers 200."""
        self._log = self.log_path.open("ab")
        # One group member per process, so tests can tell their workers from foreign ones by
        # counting members; the concurrent path (3 per process) runs in the chaos suite.
        env = {
            **os.environ,
            "TENANT_CONSUMER_CONCURRENCY": "1",
            **self._env,
            "TENANT_HTTP_PORT": str(self.port),
        }
        # Popen returns at once; a plain handle outlives any event loop (fixtures span tests).
        self._proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "tenantctl.cli", "run", *self.roles],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        await wait_until(self._ready, READY_TIMEOUT_S, what=f"{self.roles} worker /readyz")

    async def _ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise AssertionError(f"worker exited with {self._proc.returncode}:\n{self.log_tail()}")
        try:
            status, _ = await http_get(self.port, "/readyz")
        except OSError:
            return False
        return status == 200

    async def terminate(self, limit_s: float) -> int:
        """SIGTERM, then wait for the exit code (raises if it does not exit within ``limit_s``)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)
        return await self._wait(limit_s)

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` without waiting (see ``exited``)."""
        assert self._proc is not None
        self._proc.send_signal(sig)

    async def exited(self, limit_s: float) -> int:
        """The exit code once the process ends (raises if it does not within ``limit_s``)."""
        return await self._wait(limit_s)

    async def kill(self) -> int:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        return await self._wait(10.0)

    async def _wait(self, limit_s: float) -> int:
        assert self._proc is not None
        try:
            code = await asyncio.to_thread(self._proc.wait, limit_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            await asyncio.to_thread(self._proc.wait, 10.0)
            raise AssertionError(f"worker {self.roles} did not exit within {limit_s}s") from None
        finally:
            if self._log is not None:
                self._log.close()
        return int(code)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_text(self, since: int = 0) -> str:
        with self.log_path.open("rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
