"""pg_dump -> zstd -> age, and back: OS pipes between the tools, Python only at the ends.

The bytes between the tools never enter Python; the encrypted stream is read in bounded chunks
and handed to the target as it comes, so peak memory is about one chunk (plus an S3 part) no
matter how large the schema is. Nothing here blocks the event loop.
"""

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from adapters.age_keys import IdentityPipe
from adapters.processes import StderrTail
from domain.errors import PermanentError, TransientError

_TRANSIENT_HINTS = (
    "could not connect",
    "connection",
    "timeout",
    "terminating",
    "shutting down",
    "starting up",
    "server closed",
    "could not receive",
    "not accepting",
    "recovery mode",
)


def libpq_target(dsn: str) -> tuple[str, dict[str, str]]:
    """Split the password off a DSN: it goes to the child's environment, never its argv."""
    parts = urlsplit(dsn)
    env = {"PGPASSWORD": parts.password} if parts.password else {}
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), env


@dataclass(frozen=True)
class StreamStats:
    bytes: int
    sha256: str


class Throttle:
    """Caps throughput (bytes/s) so a backup can't starve tenant I/O; 0 = unlimited."""

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._start = time.monotonic()
        self._sent = 0

    async def account(self, n: int) -> None:
        if self._rate <= 0:
            return
        self._sent += n
        ahead = self._sent / self._rate - (time.monotonic() - self._start)
        if ahead > 0:
            await asyncio.sleep(ahead)


async def _spawn(
    *args: str, stdin: int, stdout: int, env: dict[str, str], **kw: object
) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *args,
            stdin=stdin,
            stdout=stdout,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
            **kw,  # type: ignore[arg-type]
        )
    except FileNotFoundError as e:
        raise PermanentError("tool_missing", f"{args[0]} is not installed") from e


async def _check(procs: list[tuple[str, asyncio.subprocess.Process, StderrTail]]) -> None:
    failures = []
    for name, proc, tail in procs:
        code = await proc.wait()
        if code != 0:
            failures.append(f"{name} exited {code}: {(await tail.text())[-300:]}")
        else:
            await tail.text()
    if failures:
        detail = "; ".join(failures)
        if any(h in detail.lower() for h in _TRANSIENT_HINTS):
            raise TransientError(detail)
        raise PermanentError("pipeline_failed", detail)


async def dump(
    dsn: str,
    schema: str,
    recipients: list[str],
    sink: Callable[[bytes], Awaitable[None]],
    *,
    snapshot: str | None = None,
    zstd_level: int = 3,
    zstd_threads: int = 0,
    chunk_size: int = 1 << 20,
    rate_limit: int = 0,
) -> StreamStats:
    """Stream ``schema`` as an encrypted, compressed custom-format dump into ``sink``."""
    url, env = libpq_target(dsn)
    dump_args = ["pg_dump", "--format=custom", "--compress=0", f'--schema="{schema}"', "-d", url]
    if snapshot:
        dump_args.insert(1, f"--snapshot={snapshot}")
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    procs: list[tuple[str, asyncio.subprocess.Process, StderrTail]] = []
    try:
        for name, args, stdin, stdout in (
            ("pg_dump", dump_args, asyncio.subprocess.DEVNULL, w1),
            ("zstd", ["zstd", "-q", "-c", f"-{zstd_level}", f"-T{zstd_threads}"], r1, w2),
            (
                "age",
                ["age", *(a for r in recipients for a in ("-r", r))],
                r2,
                asyncio.subprocess.PIPE,
            ),
        ):
            proc = await _spawn(
                *args, stdin=stdin, stdout=stdout, env=env if name == "pg_dump" else {}
            )
            procs.append((name, proc, StderrTail(proc.stderr)))
    except BaseException:
        for _, proc, _ in procs:
            proc.kill()
        raise
    finally:
        for fd in (r1, w1, r2, w2):  # the children hold their own copies
            os.close(fd)
    age = procs[-1][1]
    assert age.stdout is not None
    digest, total, throttle = hashlib.sha256(), 0, Throttle(rate_limit)
    buffer = bytearray()
    try:
        while data := await age.stdout.read(chunk_size):
            buffer += data
            if len(buffer) >= chunk_size:
                digest.update(buffer)
                await sink(bytes(buffer))
                total += len(buffer)
                await throttle.account(len(buffer))
                buffer.clear()
        if buffer:
            digest.update(buffer)
            await sink(bytes(buffer))
            total += len(buffer)
    except BaseException:
        for _, proc, _ in procs:
            if proc.returncode is None:
                proc.kill()
        for _, proc, _ in procs:
            await proc.wait()
        raise
    await _check(procs)
    return StreamStats(total, digest.hexdigest())


async def restore_sql(
    chunks: AsyncIterator[bytes],
    identity: str,
    run_sql: Callable[[AsyncIterator[bytes]], Awaitable[None]],
) -> StreamStats:
    """Decrypt and decompress an artifact and feed pg_restore's SQL script to ``run_sql``.

    ``run_sql`` consumes the script stream (e.g. into psql inside a transaction); the returned
    sha256 is of the artifact as read, for the caller to compare before it commits.
    """
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    key = IdentityPipe(identity)
    procs: list[tuple[str, asyncio.subprocess.Process, StderrTail]] = []
    try:
        for name, args, stdin, stdout, fds in (
            ("age", ["age", "-d", "-i", key.path], asyncio.subprocess.PIPE, w1, (key.fd,)),
            ("zstd", ["zstd", "-q", "-d", "-c"], r1, w2, ()),
            ("pg_restore", ["pg_restore", "-f", "-"], r2, asyncio.subprocess.PIPE, ()),
        ):
            proc = await _spawn(*args, stdin=stdin, stdout=stdout, env={}, pass_fds=fds)
            procs.append((name, proc, StderrTail(proc.stderr)))
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)
        key.close()
    age, restore = procs[0][1], procs[-1][1]
    assert age.stdin is not None and restore.stdout is not None
    digest, total = hashlib.sha256(), 0

    async def feed() -> None:
        nonlocal total
        try:
            async for chunk in chunks:
                digest.update(chunk)
                total += len(chunk)
                age.stdin.write(chunk)  # type: ignore[union-attr]
                await age.stdin.drain()  # type: ignore[union-attr]
        finally:
            age.stdin.close()  # type: ignore[union-attr]

    async def script() -> AsyncIterator[bytes]:
        while data := await restore.stdout.read(1 << 16):  # type: ignore[union-attr]
            yield data

    try:
        await asyncio.gather(feed(), run_sql(script()))
    except BaseException:
        for _, proc, _ in procs:
            if proc.returncode is None:
                proc.kill()
        for _, proc, _ in procs:
            await proc.wait()
        raise
    await _check(procs)
    return StreamStats(total, digest.hexdigest())
