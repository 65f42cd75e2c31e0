"""Runs an SQL script stream through psql inside one explicit transaction.

Used by restores: pg_restore's script (of an artifact whose sha256 was verified before a byte of
it was decrypted) is wrapped in BEGIN ... COMMIT that we write ourselves; the fenced swap
functions run inside the same transaction, so a failing fence rolls everything back.
"""

import asyncio
from collections.abc import AsyncIterator

from adapters.dump_pipeline import libpq_env
from adapters.processes import StderrTail, child_env, kill_and_reap
from domain.errors import LEASE_LOST, PermanentError, TransientError


class PsqlTransaction:
    def __init__(self, dsn: str) -> None:
        self._env = libpq_env(dsn)  # the connection goes in the environment, never argv
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: StderrTail | None = None

    async def start(self, prelude: str) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(self._env),
        )
        self._stderr = StderrTail(self._proc.stderr)
        await self.write(f"BEGIN;\n{prelude}\n".encode())

    async def write(self, data: bytes) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
            await self._proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as e:
            raise await self._failure() from e

    async def stream(self, script: AsyncIterator[bytes]) -> None:
        async for chunk in script:
            await self.write(chunk)

    async def finish(self, commit: bool, postlude: str = "") -> None:
        """COMMIT (after ``postlude``) or ROLLBACK, then wait for psql to exit."""
        assert self._proc is not None and self._proc.stdin is not None
        tail = f"\n{postlude}\nCOMMIT;\n" if commit else "\nROLLBACK;\n"
        try:
            self._proc.stdin.write(tail.encode())
            await self._proc.stdin.drain()
            self._proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass
        if await self._proc.wait() != 0:
            raise await self._failure()

    async def kill(self) -> None:
        """Abandon: the server rolls back the open transaction when the session ends."""
        if self._proc is not None:
            await kill_and_reap([self._proc])

    async def _failure(self) -> Exception:
        assert self._proc is not None and self._stderr is not None
        await self._proc.wait()
        text = (await self._stderr.text())[-500:]
        if f"ERROR:  {LEASE_LOST}" in text:  # raised by the fenced swap functions
            return PermanentError(LEASE_LOST, "the job's lease is no longer this runner's")
        if any(h in text.lower() for h in ("could not connect", "connection", "terminating")):
            return TransientError(f"psql: {text}")
        return PermanentError("restore_failed", f"psql: {text}")
