"""Backup targets: the ``BackupTarget`` port and its local-folder, S3 and SFTP adapters.

The adapters are imported on first use, so a process that stores backups in a local folder
does not load aiobotocore or asyncssh.
"""

from typing import Any

from adapters.backup_targets.base import ArtifactWriter, BackupTarget, validate_key

__all__ = [
    "ArtifactWriter",
    "BackupTarget",
    "LocalFolderTarget",
    "S3BackupTarget",
    "SftpBackupTarget",
    "validate_key",
]

_ADAPTERS = {
    "LocalFolderTarget": "adapters.backup_targets.local",
    "S3BackupTarget": "adapters.backup_targets.s3",
    "SftpBackupTarget": "adapters.backup_targets.sftp",
}


def __getattr__(name: str) -> Any:
    if name in _ADAPTERS:
        import importlib

        return getattr(importlib.import_module(_ADAPTERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
