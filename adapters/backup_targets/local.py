"""``LocalFolderTarget``: backups as files under a root directory (dev, or a mounted volume).

The root is made once, by ``start()`` when the worker starts, and never again: a root that is
missing later is a target that is down (an unmounted volume, a folder moved away), and every call
fails transiently until it is back. Made again on first write, backups would land beside the
volume's mount point and vanish when it came back, and an artifact read from it would be
reported ``not_found`` (permanent) when only the target is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

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

__all__ = ["LocalFolderTarget"]

_DIR_MODE = 0o700
_FILE_MODE = 0o600


def _os_error(e: OSError, what: str) -> Exception:
    if isinstance(e, PermissionError):
        return PermanentError("access_denied", f"{what}: {e}")
    return TransientError(f"{what}: {e}")  # disk full, I/O error: may pass after cleanup


class _LocalWriter:
    def __init__(self, final: Path, partial: Path, uri: str) -> None:
        self._final, self._partial, self._uri = final, partial, uri
        self._file: BinaryIO | None = None
        self._done = False

    async def _open(self) -> None:
        def open_partial() -> BinaryIO:
            fd = os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            return os.fdopen(fd, "wb")

        try:
            self._file = await asyncio.to_thread(open_partial)
        except OSError as e:
            raise _os_error(e, f"open {self._partial}") from e

    async def write(self, chunk: bytes) -> None:
        if self._file is None or self._done:
            raise RuntimeError("writer is closed")
        try:
            await asyncio.to_thread(self._file.write, chunk)
        except OSError as e:
            raise _os_error(e, f"write {self._partial}") from e

    async def commit(self) -> None:
        if self._file is None or self._done:
            raise RuntimeError("writer is closed")
        file = self._file

        def publish() -> None:
            file.flush()
            os.fsync(file.fileno())
            file.close()
            # link() fails if the final name exists: an atomic publish that never replaces
            os.link(self._partial, self._final)
            os.unlink(self._partial)
            dir_fd = os.open(self._final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # make the new name itself durable
            finally:
                os.close(dir_fd)

        try:
            await asyncio.to_thread(publish)
        except FileExistsError as e:
            raise already_exists(self._uri) from e
        except OSError as e:
            raise _os_error(e, f"commit {self._final}") from e
        self._done = True

    async def abort(self) -> None:
        file, self._file, self._done = self._file, None, True

        def discard() -> None:
            if file is not None:
                with contextlib.suppress(OSError):
                    file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._partial)

        try:
            await asyncio.to_thread(discard)
        except OSError as e:
            raise _os_error(e, f"remove {self._partial}") from e


class LocalFolderTarget:
    """Stores each key as a file under ``root`` (dirs 0700, files 0600), published atomically."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self._root = Path(root).absolute()

    async def start(self) -> None:
        """Make the root (and its parents) if missing: at start-up only."""

        def make() -> None:
            self._root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)

        try:
            await asyncio.to_thread(make)
        except OSError as e:
            raise _os_error(e, f"mkdir {self._root}") from e

    def _root_is_there(self) -> None:
        if not self._root.is_dir():
            raise TransientError(f"backup folder {self._root} is missing or not a folder")

    def _path(self, key: str) -> Path:
        return self._root / validate_key(key)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def _makedirs(self, directory: Path) -> None:
        missing: list[Path] = []
        while not directory.is_dir():
            if directory == self._root:  # never made again after start(): the target is away
                self._root_is_there()
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, _DIR_MODE)  # explicit per level: makedirs applies mode to the leaf only

    async def open_writer(self, key: str) -> _LocalWriter:
        final = self._path(key)
        try:
            await asyncio.to_thread(self._makedirs, final.parent)
        except OSError as e:
            raise _os_error(e, f"mkdir {final.parent}") from e
        writer = _LocalWriter(final, final.with_name(partial_name(final.name)), final.as_uri())
        await writer._open()
        return writer

    async def put(self, key: str, data: bytes) -> None:
        await put_with_writer(self, key, data)

    def read(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        return self._read(self._path(key), chunk_size)

    async def _read(self, path: Path, chunk_size: int) -> AsyncIterator[bytes]:
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError as e:
            await asyncio.to_thread(self._root_is_there)  # no root: the target is away, not the key
            raise not_found(path.as_uri()) from e
        except OSError as e:
            raise _os_error(e, f"open {path}") from e
        try:
            while chunk := await asyncio.to_thread(file.read, chunk_size):
                yield chunk
        except OSError as e:
            raise _os_error(e, f"read {path}") from e
        finally:
            await asyncio.to_thread(file.close)

    async def exists(self, key: str) -> bool:
        def look() -> bool:
            self._root_is_there()  # an absent root would answer "no" for everything
            return self._path(key).is_file()

        return await asyncio.to_thread(look)

    async def delete(self, key: str) -> None:
        path = self._path(key)

        def unlink() -> None:
            # An absent root would make every delete a no-op that looks done (an erasure's
            # included), while the files wait on the volume that is away.
            self._root_is_there()
            path.unlink(missing_ok=True)

        try:
            await asyncio.to_thread(unlink)
        except OSError as e:
            raise _os_error(e, f"delete {path}") from e

    async def discard_partials(self, key: str) -> int:
        final = self._path(key)

        def sweep() -> int:
            self._root_is_there()
            try:
                names = os.listdir(final.parent)
            except FileNotFoundError:
                return 0
            stale = [n for n in names if is_partial_of(n, final.name)]
            for name in stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(final.parent / name)
            return len(stale)

        try:
            return await asyncio.to_thread(sweep)
        except OSError as e:
            raise _os_error(e, f"sweep {final.parent}") from e

    async def list(self, prefix: str) -> list[str]:
        validate_prefix(prefix)
        # only walk the directory the prefix points into, not the whole root
        start = self._root / prefix.rpartition("/")[0]

        def walk() -> list[str]:
            self._root_is_there()  # an absent root would list as empty
            keys = []
            for dirpath, _dirs, files in os.walk(start):
                rel = Path(dirpath).relative_to(self._root).as_posix()
                for name in files:
                    key = name if rel == "." else f"{rel}/{name}"
                    if key.startswith(prefix) and not name.endswith(PARTIAL_SUFFIX):
                        keys.append(key)
            return sorted(keys)

        try:
            return await asyncio.to_thread(walk)
        except OSError as e:
            raise _os_error(e, f"list {start}") from e

    async def close(self) -> None:
        return None
