"""Async subprocess helpers: no pipe is ever read or written from a blocking call.

Children get a minimal environment (``child_env``), never the service's own: that holds the
DSN, the S3 secret and the Redis URL, none of which pg_dump, zstd, age or psql need.
"""

import asyncio
import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence

from domain.errors import PermanentError, TransientError

#: what a tool may take from the service's environment: where programs are, locale, time zone,
#: home and temp dirs. Connection settings (PG*) come only from ``extra``, from our own DSN.
_INHERITED = ("PATH", "LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR")


def child_env(
    extra: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a child: the harmless parts of ``base`` (our own) plus ``extra``."""
    parent = os.environ if base is None else base
    env = {k: v for k, v in parent.items() if k in _INHERITED or k.startswith("LC_")}
    return {**env, **(extra or {})}


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
            env=child_env(env),
            pass_fds=pass_fds,
        )
    except FileNotFoundError as e:
        raise PermanentError("tool_missing", f"{args[0]} is not installed") from e
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError as e:
        await kill_and_reap([proc], drain_stderr=True)  # communicate() no longer reads either
        raise TransientError(f"{args[0]} timed out after {timeout}s") from e
    if proc.returncode != 0:
        raise PermanentError(
            f"{os.path.basename(args[0])}_failed", err.decode(errors="replace")[-500:]
        )
    return out


async def kill_and_reap(
    procs: Iterable[asyncio.subprocess.Process], *, drain_stderr: bool = False
) -> None:
    """Kill whichever of ``procs`` still run and wait for every one to be gone.

    asyncio's ``Process.wait()``, called before the exit has been seen, returns only once the
    process's pipes are closed as well. A stdout we stopped reading mid-stream (an aborted
    backup) has its transport paused at the buffer limit and would never see EOF, so wait()
    would hang for ever: drain it first (after the kill that is at most one pipe buffer).
    ``drain_stderr``: stderr too, when nobody else reads it (a StderrTail does in pipelines).
    """
    procs = list(procs)
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    for proc in procs:
        for stream in (proc.stdout, proc.stderr if drain_stderr else None):
            if stream is not None:
                with contextlib.suppress(Exception):  # e.g. a reader left by a cancelled task
                    while await stream.read(1 << 16):
                        pass
        await proc.wait()


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
