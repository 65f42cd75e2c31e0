"""The backup target port: where encrypted backup artifacts and their manifests are stored.

Contract shared by every adapter (and checked by tests/integration/test_backup_targets.py):
  * keys are relative, ``/``-separated, made of ``[A-Za-z0-9._/-]`` (no ``..``, no leading ``/``,
    no empty segment, not ending in ``.partial``); anything else raises ``ValueError``;
  * an artifact is streamed through an ``ArtifactWriter`` and becomes visible at its key only on
    ``commit()``, atomically; before that ``exists()``/``list()``/``read()`` do not see it;
  * ``commit()`` never replaces an object: if the key already exists it raises
    ``PermanentError("already_exists")`` (keys derive from event ids, so an existing object is
    the work of an earlier attempt: check the manifest's ``exists()`` before redoing a backup);
  * ``abort()`` removes any partial data, is idempotent and safe after any failure;
  * ``discard_partials(key)`` removes what writers of ``key`` left behind without an abort (a
    worker SIGKILLed mid-upload); call it only while no live writer of ``key`` can exist (the
    backup job's lease is held), since it cannot tell a dead writer's partial from a live one's;
  * reading a missing key raises ``PermanentError("not_found")``; ``delete()`` of a missing key
    is a no-op;
  * library errors surface only as ``TransientError`` (retry later) or ``PermanentError``.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator
from typing import Protocol

from domain.errors import PermanentError

__all__ = [
    "PARTIAL_SUFFIX",
    "already_exists",
    "not_found",
    "ArtifactWriter",
    "BackupTarget",
    "is_partial_of",
    "partial_name",
    "put_with_writer",
    "validate_key",
    "validate_prefix",
]

#: In-progress uploads of file-like targets end in this suffix; they are never listed as keys.
PARTIAL_SUFFIX = ".partial"
_KEY_CHARS = re.compile(r"[A-Za-z0-9._/-]+")


class ArtifactWriter(Protocol):
    """One in-progress object; ``commit()`` or ``abort()`` ends it."""

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk`` (typically ~1 MiB); nothing is visible until ``commit()``."""

    async def commit(self) -> None:
        """Make the object visible at its key atomically (never replacing an existing one)."""

    async def abort(self) -> None:
        """Remove any partial data; idempotent and safe after failures."""


class BackupTarget(Protocol):
    """A place that stores backup artifacts by key (local folder, S3 bucket, SFTP server)."""

    kind: str

    async def start(self) -> None:
        """At worker start-up only: connect, and make the root folder (or bucket) if missing.
        Nothing else ever makes the root: a volume or folder away later is waited for."""

    def uri(self, key: str) -> str:
        """Where ``key`` lives, for humans and manifests (``file://``, ``s3://``, ``sftp://``)."""

    async def open_writer(self, key: str) -> ArtifactWriter:
        """Start streaming a new object to ``key``."""

    async def put(self, key: str, data: bytes) -> None:
        """Store a small object (a manifest) with the same atomicity as a writer."""

    def read(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream the object at ``key`` in chunks of at most ``chunk_size`` bytes."""

    async def exists(self, key: str) -> bool:
        """Whether a committed object is at ``key``."""

    async def delete(self, key: str) -> None:
        """Remove the object at ``key``; a missing object is fine."""

    async def discard_partials(self, key: str) -> int:
        """Remove uploads of ``key`` that were never committed nor aborted; how many."""

    async def list(self, prefix: str) -> list[str]:
        """Sorted committed keys (relative to the target root) that start with ``prefix``."""

    async def close(self) -> None:
        """Release connections; the target may not be used afterwards."""


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid object key, else raise ``ValueError``."""
    if not key or not _KEY_CHARS.fullmatch(key) or key.startswith("/") or key.endswith("/"):
        raise ValueError(f"invalid backup key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")) or key.endswith(PARTIAL_SUFFIX):
        raise ValueError(f"invalid backup key {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Like ``validate_key`` but allows ``""`` and a trailing ``/`` (``"tenant-1/"``)."""
    if prefix:
        validate_key(prefix.removesuffix("/"))
    return prefix


def partial_name(key: str) -> str:
    """A per-writer partial name beside ``key``, so two writers of one key never mix bytes."""
    return f"{key}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}"


def is_partial_of(name: str, final_name: str) -> bool:
    """Whether file ``name`` is a ``partial_name`` of ``final_name`` (same directory)."""
    head, _, token = name.removesuffix(PARTIAL_SUFFIX).rpartition(".")
    return (
        name.endswith(PARTIAL_SUFFIX)
        and head == final_name
        and len(token) == 16
        and all(c in "0123456789abcdef" for c in token)
    )


async def put_with_writer(target: BackupTarget, key: str, data: bytes) -> None:
    """``put`` for targets whose writer already does the atomic work."""
    writer = await target.open_writer(key)
    try:
        await writer.write(data)
        await writer.commit()
    except BaseException:
        with contextlib.suppress(Exception):  # the original error is the one worth reporting
            await writer.abort()
        raise


def already_exists(uri: str) -> PermanentError:
    return PermanentError("already_exists", f"{uri} exists; backup objects are never replaced")


def not_found(uri: str) -> PermanentError:
    return PermanentError("not_found", uri)
