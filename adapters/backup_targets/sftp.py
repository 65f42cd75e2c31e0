"""``SftpBackupTarget``: backups on an SFTP server (OpenSSH), host key always verified.

The root folder is made once, by ``start()`` when the worker starts, and never again: a root that
is missing later is a target that is down (a NAS volume unmounted, a folder moved away), and every
call fails transiently until it is back. Made again on first write, backups would land beside the
volume's mount point and vanish when it came back; an artifact read, checked or deleted there
would be reported ``not_found`` (permanent), absent or gone when only the folder is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar, cast

import asyncssh

from adapters.backup_targets.base import (
    PARTIAL_SUFFIX,
    already_exists,
    is_partial_of,
    not_found,
    partial_name,
    put_with_writer,
    validate_key,
    validate_prefix,
)
from domain.errors import PermanentError, TransientError

__all__ = ["SftpBackupTarget"]

T = TypeVar("T")
_DIR_ATTRS = asyncssh.SFTPAttrs(permissions=0o700)
_FILE_ATTRS = asyncssh.SFTPAttrs(permissions=0o600)
# the connection is gone: reconnecting (and retrying an idempotent operation) may succeed
_CONNECTION_LOST = (
    asyncssh.SFTPConnectionLost,
    asyncssh.SFTPNoConnection,
    asyncssh.ConnectionLost,
    BrokenPipeError,
    ConnectionResetError,
)
_PERMANENT_DISCONNECTS = (
    asyncssh.KeyExchangeFailed,
    asyncssh.ProtocolNotSupported,
    asyncssh.ProtocolError,
)


def _translate(e: BaseException, what: str) -> Exception:
    """Map an asyncssh/OS error to TransientError or PermanentError."""
    if isinstance(e, asyncssh.HostKeyNotVerifiable):
        return PermanentError("host_key_mismatch", f"{what}: {e}")
    if isinstance(e, asyncssh.PermissionDenied):
        return PermanentError("auth_failed", f"{what}: {e}")
    if isinstance(e, _PERMANENT_DISCONNECTS):
        return PermanentError("ssh_protocol", f"{what}: {e}")
    if isinstance(e, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
        return not_found(what)
    if isinstance(e, asyncssh.SFTPPermissionDenied | asyncssh.SFTPWriteProtect):
        return PermanentError("access_denied", f"{what}: {e}")
    if isinstance(e, asyncssh.SFTPFileAlreadyExists):
        return already_exists(what)
    # other SFTP failures (disk full is a generic failure in SFTPv3), timeouts, refused, reset
    return TransientError(f"{what}: {e}")


_LIBRARY_ERRORS = (asyncssh.Error, asyncssh.SFTPError, OSError, asyncio.TimeoutError)
_MISSING = (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath)


def _folder_gone(what: str, e: BaseException) -> TransientError:
    """A file being written vanished with its folder: the target went away, retry later."""
    return TransientError(f"{what}: its folder went away: {e}")


class _SftpWriter:
    def __init__(
        self, target: SftpBackupTarget, key: str, file: asyncssh.SFTPClientFile, partial: str
    ) -> None:
        self._t, self._key, self._file, self._partial = target, key, file, partial
        self._final = target._path(key)
        self._done = False

    async def write(self, chunk: bytes) -> None:
        if self._done:
            raise RuntimeError("writer is closed")
        try:
            await self._file.write(chunk)
        except _MISSING as e:
            raise _folder_gone(self._t.uri(self._key), e) from e
        except _LIBRARY_ERRORS as e:
            raise _translate(e, self._t.uri(self._key)) from e

    async def commit(self) -> None:
        if self._done:
            raise RuntimeError("writer is closed")
        uri = self._t.uri(self._key)
        try:
            with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                await self._file.fsync()  # fsync@openssh.com, where the server has it
            await self._file.close()
            sftp = await self._t._client()
            try:
                # a plain SFTPv3 rename never replaces; OpenSSH does it as link()+unlink(), atomic
                await sftp.rename(self._partial, self._final)
            except asyncssh.SFTPFailure as e:
                if await sftp.exists(self._final):
                    raise already_exists(uri) from e
                raise
        except _MISSING as e:  # the partial's folder went away under it: not a permanent failure
            raise _folder_gone(uri, e) from e
        except _LIBRARY_ERRORS as e:
            raise _translate(e, uri) from e
        self._done = True

    async def abort(self) -> None:
        self._done = True
        with contextlib.suppress(*_LIBRARY_ERRORS):
            await self._file.close()

        async def remove(sftp: asyncssh.SFTPClient) -> None:
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await sftp.remove(self._partial)

        await self._t._idempotent(self._t.uri(self._key), remove)


class SftpBackupTarget:
    """Stores each key under ``root_dir`` on an SFTP server, published by an atomic rename.

    The server's host key is always checked against ``known_hosts_path``; there is no way to
    skip the check. The connection is opened lazily and reopened after it drops.
    """

    kind = "sftp"

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        client_key_path: Path | str,
        known_hosts_path: Path | str,
        root_dir: str,
        *,
        connect_timeout: float = 15.0,
    ) -> None:
        if not known_hosts_path:
            raise ValueError("known_hosts_path is required: the SFTP host key is always verified")
        if not root_dir.startswith("/"):
            raise ValueError(f"root_dir must be absolute, got {root_dir!r}")
        self._host, self._port, self._username = host, port, username
        self._client_key_path = Path(client_key_path)
        self._known_hosts_path = Path(known_hosts_path)
        self._root = posixpath.normpath(root_dir)
        self._connect_timeout = connect_timeout
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()

    def _path(self, key: str) -> str:
        return f"{self._root}/{validate_key(key)}"

    def uri(self, key: str) -> str:
        return f"sftp://{self._username}@{self._host}:{self._port}{self._path(key)}"

    async def _client(self) -> asyncssh.SFTPClient:
        async with self._lock:
            if self._sftp is None or self._conn is None or self._conn.is_closed():
                await self._drop_locked()
                self._conn, self._sftp = await self._connect()
            return self._sftp

    async def _connect(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        where = f"sftp://{self._username}@{self._host}:{self._port}"
        try:  # read both files off the event loop; they are re-read on every reconnect
            known_hosts = await asyncio.to_thread(
                asyncssh.read_known_hosts, str(self._known_hosts_path)
            )
        except (OSError, ValueError) as e:
            raise PermanentError("host_key_unverifiable", f"{self._known_hosts_path}: {e}") from e
        try:
            key = await asyncio.to_thread(asyncssh.read_private_key, str(self._client_key_path))
        except (OSError, ValueError) as e:
            raise PermanentError("auth_failed", f"client key {self._client_key_path}: {e}") from e
        conn = None
        try:
            conn = await asyncssh.connect(
                self._host,
                self._port,
                username=self._username,
                known_hosts=known_hosts,
                client_keys=[key],
                config=[],
                agent_path=None,
                password=None,
                kbdint_auth=False,
                x509_trusted_certs=None,
                connect_timeout=self._connect_timeout,
            )
            return conn, await conn.start_sftp_client()
        except _LIBRARY_ERRORS as e:
            if conn is not None:
                conn.close()
            raise _translate(e, where) from e

    async def _drop_locked(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(*_LIBRARY_ERRORS):
                await conn.wait_closed()

    async def _idempotent(self, what: str, op: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        """Run ``op``; if the connection turns out to be gone, reconnect and run it once more."""
        for attempt in (1, 2):
            sftp = await self._client()
            try:
                return await op(sftp)
            except _CONNECTION_LOST as e:
                async with self._lock:
                    if self._sftp is sftp:
                        await self._drop_locked()
                if attempt == 2:
                    raise TransientError(f"{what}: {e}") from e
            except _LIBRARY_ERRORS as e:
                raise _translate(e, what) from e
        raise AssertionError("unreachable")

    async def start(self) -> None:
        """Make the root folder (and its parents) if missing: at start-up only."""
        await self._idempotent(
            f"sftp://{self._username}@{self._host}:{self._port}{self._root}",
            lambda sftp: sftp.makedirs(self._root, attrs=_DIR_ATTRS, exist_ok=True),
        )

    async def _root_is_there(self, sftp: asyncssh.SFTPClient) -> None:
        if not await sftp.isdir(self._root):
            raise TransientError(
                f"backup folder {self._root} on {self._host}:{self._port} is missing or not a folder"
            )

    async def _makedirs(self, sftp: asyncssh.SFTPClient, directory: str) -> None:
        """The folders from the root down to ``directory``, each 0700; never the root itself."""
        missing: list[str] = []
        while not await sftp.isdir(directory):
            if directory == self._root:  # never made again after start(): the target is away
                await self._root_is_there(sftp)
            missing.append(directory)
            directory = posixpath.dirname(directory)
        for d in reversed(missing):
            try:
                await sftp.mkdir(d, attrs=_DIR_ATTRS)
            except asyncssh.SFTPError:
                if not await sftp.isdir(d):  # not made by a racing writer: its parent went away
                    await self._root_is_there(sftp)
                    raise

    async def open_writer(self, key: str) -> _SftpWriter:
        final = self._path(key)
        partial = posixpath.join(posixpath.dirname(final), partial_name(posixpath.basename(final)))
        uri = self.uri(key)

        async def start(sftp: asyncssh.SFTPClient) -> asyncssh.SFTPClientFile:
            await self._makedirs(sftp, posixpath.dirname(final))
            try:
                return await sftp.open(partial, "xb", attrs=_FILE_ATTRS)
            except _MISSING as e:  # the folder just made went away
                raise _folder_gone(uri, e) from e

        file = await self._idempotent(uri, start)
        return _SftpWriter(self, key, file, partial)

    async def put(self, key: str, data: bytes) -> None:
        await put_with_writer(self, key, data)

    def read(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        return self._read(key, self._path(key), chunk_size)

    async def _read(self, key: str, path: str, chunk_size: int) -> AsyncIterator[bytes]:
        uri = self.uri(key)

        async def open_file(sftp: asyncssh.SFTPClient) -> asyncssh.SFTPClientFile:
            try:
                return await sftp.open(path, "rb", encoding=None)
            except _MISSING:
                await self._root_is_there(sftp)  # away: transient; else not_found (translated)
                raise

        file = await self._idempotent(uri, open_file)
        try:
            while chunk := cast(bytes, await file.read(chunk_size)):  # binary mode: bytes
                yield chunk
        except _LIBRARY_ERRORS as e:
            raise _translate(e, uri) from e
        finally:
            with contextlib.suppress(*_LIBRARY_ERRORS):
                await file.close()

    async def exists(self, key: str) -> bool:
        path = self._path(key)

        async def check(sftp: asyncssh.SFTPClient) -> bool:
            if await sftp.isfile(path):
                return True
            await self._root_is_there(sftp)  # absent from a folder that is away: unknown
            return False

        return await self._idempotent(self.uri(key), check)

    async def delete(self, key: str) -> None:
        path = self._path(key)

        async def remove(sftp: asyncssh.SFTPClient) -> None:
            try:
                await sftp.remove(path)
            except asyncssh.SFTPNoSuchFile:
                await self._root_is_there(sftp)  # gone only if its folder is there

        await self._idempotent(self.uri(key), remove)

    async def discard_partials(self, key: str) -> int:
        final = self._path(key)
        directory, name = posixpath.split(final)

        async def sweep(sftp: asyncssh.SFTPClient) -> int:
            try:
                names = [str(n) for n in await sftp.listdir(directory)]
            except asyncssh.SFTPNoSuchFile:
                await self._root_is_there(sftp)
                return 0
            stale = [n for n in names if is_partial_of(n, name)]
            for n in stale:
                with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                    await sftp.remove(f"{directory}/{n}")
            return len(stale)

        return await self._idempotent(self.uri(key), sweep)

    async def list(self, prefix: str) -> list[str]:
        validate_prefix(prefix)
        start = posixpath.join(self._root, prefix.rpartition("/")[0]).rstrip("/")

        async def walk(sftp: asyncssh.SFTPClient) -> list[str]:
            keys: list[str] = []
            pending = [start]
            while pending:
                directory = pending.pop()
                try:
                    entries = await sftp.readdir(directory)
                except asyncssh.SFTPNoSuchFile:
                    await self._root_is_there(sftp)
                    continue
                for entry in entries:
                    name = str(entry.filename)
                    if name in (".", ".."):
                        continue
                    full = f"{directory}/{name}"
                    mode = entry.attrs.permissions or 0
                    if stat.S_ISDIR(mode):
                        pending.append(full)
                    elif stat.S_ISREG(mode) and not name.endswith(PARTIAL_SUFFIX):
                        key = full[len(self._root) + 1 :]
                        if key.startswith(prefix):
                            keys.append(key)
            return sorted(keys)

        return await self._idempotent(f"sftp://{self._host}:{self._port}{start}", walk)

    async def close(self) -> None:
        async with self._lock:
            await self._drop_locked()
