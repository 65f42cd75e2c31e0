"""pg_dump -> zstd -> age, and back: OS pipes between the tools, Python only at the ends.

The bytes between the tools never enter Python; the encrypted stream is read in bounded chunks
and handed to the target as it comes, so peak memory is about one chunk (plus an S3 part) no
matter how large the schema is. Nothing here blocks the event loop.
"""

import asyncio
import contextlib
import hashlib
import hmac
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from adapters.age_keys import IdentityPipe
from adapters.processes import StderrTail, child_env, kill_and_reap
from adapters.trace_context import traced
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


#: DSN parameters (URL parts and query keys) and the libpq variables that carry them
_LIBPQ_VARS = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "dbname": "PGDATABASE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcompression": "PGSSLCOMPRESSION",
    "requiressl": "PGREQUIRESSL",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "service": "PGSERVICE",
}


def libpq_env(dsn: str) -> dict[str, str]:
    """The DSN as libpq variables for a child's environment, so nothing of it is in argv.

    A command line is readable by every local user (/proc/<pid>/cmdline, ps); a process's
    environment only by its own user. Query parameters go the same way (a password may be one
    of them); one libpq has no variable for is refused by name rather than put in argv.
    """
    parts = urlsplit(dsn)
    values = {
        "host": parts.hostname,
        "port": str(parts.port) if parts.port else None,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "dbname": unquote(parts.path.lstrip("/")) or None,
    }
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _LIBPQ_VARS:
            raise PermanentError("unsupported_dsn", f"DSN parameter {key!r} has no libpq variable")
        values[key] = value
    return {_LIBPQ_VARS[k]: v for k, v in values.items() if v}


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
            env=child_env(env),
            **kw,  # type: ignore[arg-type]
        )
    except FileNotFoundError as e:
        raise PermanentError("tool_missing", f"{args[0]} is not installed") from e


Running = list[tuple[str, asyncio.subprocess.Process, StderrTail]]


@dataclass(frozen=True)
class _Stage:
    name: str
    args: list[str]
    stdin: int
    stdout: int
    env: dict[str, str] = field(default_factory=dict)
    pass_fds: tuple[int, ...] = ()


async def _start_chain(stages: list[_Stage]) -> Running:
    """Spawn the stages in order; if one cannot start, those already running are reaped."""
    procs: Running = []
    try:
        for st in stages:
            proc = await _spawn(
                *st.args, stdin=st.stdin, stdout=st.stdout, env=st.env, pass_fds=st.pass_fds
            )
            procs.append((st.name, proc, StderrTail(proc.stderr)))
    except BaseException:
        await kill_and_reap(p for _, p, _ in procs)
        raise
    return procs


async def _check(procs: Running) -> None:
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


@traced("dump_pipeline.backup")
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
    env = libpq_env(dsn)  # the connection, password included, never in argv
    dump_args = ["pg_dump", "--format=custom", "--compress=0", f'--schema="{schema}"']
    if snapshot:
        dump_args.insert(1, f"--snapshot={snapshot}")
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    zstd = ["zstd", "-q", "-c", f"-{zstd_level}", f"-T{zstd_threads}"]
    age_args = ["age", *(a for r in recipients for a in ("-r", r))]
    try:
        procs = await _start_chain(
            [
                _Stage("pg_dump", dump_args, asyncio.subprocess.DEVNULL, w1, env),
                _Stage("zstd", zstd, r1, w2),
                _Stage("age", age_args, r2, asyncio.subprocess.PIPE),
            ]
        )
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
        await kill_and_reap(p for _, p, _ in procs)
        raise
    await _check(procs)
    return StreamStats(total, digest.hexdigest())


@contextlib.asynccontextmanager
async def verified_spool(
    chunks: AsyncIterator[bytes], sha256: str, directory: Path | None = None
) -> AsyncIterator[Path]:
    """Copy the still-encrypted artifact to a private file while hashing it; yield the file only
    if its sha256 is ``sha256``. The file is removed on every path.

    Nothing of an artifact may reach PostgreSQL before it is known to be the catalogued one:
    anyone who can write to the target can encrypt a dump to the tenant's public recipient.
    """
    fd, name = tempfile.mkstemp(prefix="restore-", suffix=".age", dir=directory)  # mode 0600
    path = Path(name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as spool:
            async for chunk in chunks:
                digest.update(chunk)
                await asyncio.to_thread(spool.write, chunk)
            await asyncio.to_thread(spool.flush)
        if not hmac.compare_digest(digest.hexdigest(), sha256):
            raise PermanentError("checksum_mismatch", f"artifact sha256 {digest.hexdigest()}")
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def dsn_password(dsn: str) -> str:
    """The DSN's password, decoded ("" when it has none)."""
    return unquote(urlsplit(dsn).password or "")


def with_login(dsn: str, user: str, password: str, application_name: str) -> str:
    """The same server and database, another login (the password still never reaches argv),
    its session tagged with ``application_name``."""
    parts = urlsplit(dsn)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    query = "&".join(q for q in (parts.query, f"application_name={quote(application_name)}") if q)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@traced("dump_pipeline.restore")
async def restore_sql(
    spool: Path,
    identity: str,
    run_sql: Callable[[AsyncIterator[bytes]], Awaitable[None]],
) -> None:
    """Decrypt and decompress a verified spool file and feed pg_restore's script to ``run_sql``.

    ``--no-owner --no-privileges``: the script runs as the restore role, which may not give
    objects away or touch default privileges; ownership and grants are set by the swap.
    """
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    key = IdentityPipe(identity)
    source = os.open(spool, os.O_RDONLY)
    try:
        procs = await _start_chain(
            [
                _Stage("age", ["age", "-d", "-i", key.path], source, w1, pass_fds=(key.fd,)),
                _Stage("zstd", ["zstd", "-q", "-d", "-c"], r1, w2),
                _Stage(
                    "pg_restore",
                    ["pg_restore", "--no-owner", "--no-privileges", "-f", "-"],
                    r2,
                    asyncio.subprocess.PIPE,
                ),
            ]
        )
    finally:
        for fd in (r1, w1, r2, w2, source):
            os.close(fd)
        key.close()
    restore = procs[-1][1]
    assert restore.stdout is not None

    async def script() -> AsyncIterator[bytes]:
        while data := await restore.stdout.read(1 << 16):  # type: ignore[union-attr]
            yield data

    try:
        await run_sql(script())
    except BaseException:
        await kill_and_reap(p for _, p, _ in procs)
        raise
    await _check(procs)
