"""Chooses the backup target adapter from settings, and starts it."""

import structlog

from adapters.backup_targets.base import BackupTarget
from adapters.backup_targets.local import LocalFolderTarget
from domain.errors import PermanentError, TransientError
from runtime.settings import Settings, SettingsError

log = structlog.get_logger(__name__)


async def backup_target(settings: Settings) -> BackupTarget:
    if settings.backup_target == "s3":
        from adapters.backup_targets.s3 import S3BackupTarget

        assert settings.s3_access_key_id and settings.s3_secret_access_key
        s3 = S3BackupTarget(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id.get_secret_value(),
            secret_access_key=settings.s3_secret_access_key.get_secret_value(),
            part_size=settings.s3_part_bytes,
            create_bucket=settings.s3_create_bucket,
        )
        return await started(s3, remote=True)
    if settings.backup_target == "sftp":
        from adapters.backup_targets.sftp import SftpBackupTarget

        assert settings.sftp_key_file and settings.sftp_known_hosts
        sftp = SftpBackupTarget(
            host=settings.sftp_host,
            port=settings.sftp_port,
            username=settings.sftp_user,
            client_key_path=settings.sftp_key_file,
            known_hosts_path=settings.sftp_known_hosts,
            root_dir=settings.sftp_dir,
        )
        return await started(sftp, remote=True)
    return await started(LocalFolderTarget(settings.backup_local_dir), remote=False)


async def started(target: BackupTarget, *, remote: bool) -> BackupTarget:
    """``target`` started, on one rule for every kind.

    Away (transient: a server down, a volume unmounted): the worker starts and logs
    ``backup_target_unreachable``; its backups wait, as they would for an outage later.

    Refused (permanent):
    - a remote target (a host key, a login or a bucket refused) is logged as
      ``backup_target_refused`` and the worker starts: each backup answers ``BackupFailed``
      with the reason, since the server's side can be mended without restarting the worker,
      and its other roles go on;
    - a local folder that cannot be made stops start-up, naming the setting: only start-up
      makes the root, so every backup would otherwise wait for a folder nobody makes."""
    try:
        await target.start()
    except TransientError as e:
        log.warning("backup_target_unreachable", target=target.kind, error=str(e))
    except PermanentError as e:
        if not remote:
            raise SettingsError(
                f"invalid settings:\n  TENANT_BACKUP_LOCAL_DIR: cannot make the folder ({e})"
            ) from e
        log.error("backup_target_refused", target=target.kind, reason=e.reason, error=str(e))
    return target
