"""Chooses the backup target adapter from settings."""

import structlog

from adapters.backup_targets.base import BackupTarget
from adapters.backup_targets.local import LocalFolderTarget
from domain.errors import PermanentError, TransientError
from runtime.settings import Settings

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
        try:
            await s3.start()
        except TransientError as e:  # not reachable yet: the client is made again on first use
            log.warning("backup_target_unreachable", target="s3", error=str(e))
        return s3
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
        try:
            await sftp.start()
        except TransientError as e:  # the server or its folder is away at start-up: it waits
            log.warning("backup_target_unreachable", target="sftp", error=str(e))
        except PermanentError as e:  # a host key or login refused: each backup fails with it
            log.error("backup_target_refused", target="sftp", reason=e.reason, error=str(e))
        return sftp
    local = LocalFolderTarget(settings.backup_local_dir)
    try:
        await local.start()
    except TransientError as e:  # away at start-up (a worker restarted mid-outage): it waits
        log.warning("backup_target_unreachable", target="local", error=str(e))
    return local
