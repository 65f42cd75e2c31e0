"""Async subprocess helpers: no pipe is ever read or written from a blocking call."""

import asyncio
import os
from collections.abc import Mapping, Sequence

from domain.errors import PermanentError, TransientError


async def run(
    args: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    timeout: float = 60.0,
) -> bytes:
    """Run a short command, return its stdout; a non-zero exit is a PermanentError."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
            pass_fds=pass_fds,
        )
    except FileNotFoundError as e:
        raise PermanentError("tool_missing", f"{args[0]} is not installed") from e
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError as e:
        proc.kill()
        await proc.wait()
        raise TransientError(f"{args[0]} timed out after {timeout}s") from e
    if proc.returncode != 0:
        raise PermanentError(
            f"{os.path.basename(args[0])}_failed", err.decode(errors="replace")[-500:]
        )
    return out


class StderrTail:
    """Drains a process's stderr (so it can never fill and block the process), keeping the tail."""

    def __init__(self, stream: asyncio.StreamReader | None, keep: int = 4096) -> None:
        self._buffer = b""
        self._keep = keep
        self._task = asyncio.create_task(self._drain(stream)) if stream else None

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._buffer = (self._buffer + chunk)[-self._keep :]

    async def text(self) -> str:
        if self._task is not None:
            await self._task
        return self._buffer.decode(errors="replace").strip()
