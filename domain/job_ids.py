"""Job and backup ids: the one place they are built and taken apart. Pure.

An id is a kind letter, a dash and a token: ``b-<token>`` a backup (and its job), ``r-<token>``
a restore job, ``e-<token>`` an erase job, ``a-<token>`` the archive backup an erase takes. The
token derives from the requesting event's id, so a redelivered request names the same job and
the same backup, and is never taken twice. An erase and its archive share the erase's token.

(Control migration 0007 rebuilt archive ids from erase job ids in SQL by the same rule: it is
history, applied once, and left as written.)
"""

import re
import uuid
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "IdKind",
    "JobId",
    "archive_id_for",
    "backup_id_for",
    "erase_job_id",
    "parse_job_id",
    "restore_job_id",
]

# Changing it would rename every job and backup a request leads to: a redelivered request
# would then start a second one.
_NAMESPACE = uuid.UUID("1f0b7b8e-6a1c-4a43-93c5-2b7d9a0e5c11")
_TOKEN_HEX = 20


class IdKind(StrEnum):
    """What an id names; the value is its letter."""

    BACKUP = "b"
    RESTORE = "r"
    ERASE = "e"
    ARCHIVE = "a"


# Ids we make have a 20-hex token; parsing accepts any lowercase hex token, as old rows and
# tests' hand-made jobs may carry other lengths.
_ID = re.compile(r"([brea])-([0-9a-f]{1,64})")


@dataclass(frozen=True)
class JobId:
    """A parsed id: its kind and its token; ``str()`` gives the id back."""

    kind: IdKind
    token: str

    def __str__(self) -> str:
        return f"{self.kind.value}-{self.token}"


def _token(event_id: str) -> str:
    return uuid.uuid5(_NAMESPACE, event_id).hex[:_TOKEN_HEX]


def _id(kind: IdKind, event_id: str) -> str:
    return str(JobId(kind, _token(event_id)))


def backup_id_for(event_id: str) -> str:
    """The backup (and job) a BackupDue leads to: the same event always names the same one."""
    return _id(IdKind.BACKUP, event_id)


def restore_job_id(event_id: str) -> str:
    """The restore job a RestoreRequested leads to."""
    return _id(IdKind.RESTORE, event_id)


def erase_job_id(event_id: str) -> str:
    """The erase job a TenantEraseRequested leads to."""
    return _id(IdKind.ERASE, event_id)


def archive_id_for(erase_job: str) -> str:
    """The archive backup's id: derived from the FIRST erase's job, recorded on the registry."""
    parsed = parse_job_id(erase_job)
    if parsed.kind != IdKind.ERASE:
        raise ValueError(f"not an erase job id: {erase_job!r}")
    return str(JobId(IdKind.ARCHIVE, parsed.token))


def parse_job_id(text: str) -> JobId:
    """The kind and token of an id; ValueError for text that is not one."""
    match = _ID.fullmatch(text)
    if match is None:
        raise ValueError(f"not a job or backup id: {text!r}")
    return JobId(IdKind(match[1]), match[2])
