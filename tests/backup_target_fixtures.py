"""Fixtures for the backup target contract: each real target with a unique root, plus a way to
see raw leftovers (partial files, unfinished multipart uploads) that ``list()`` hides.

Imported explicitly by tests/integration/test_backup_targets.py. Connection values come from the
repo's ``.env`` as written by ``scripts/stack up`` (services ``sshd`` and ``s3``).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from dotenv import dotenv_values

from adapters.backup_targets.base import BackupTarget
from adapters.backup_targets.local import LocalFolderTarget
from adapters.backup_targets.s3 import S3BackupTarget
from adapters.backup_targets.sftp import SftpBackupTarget

__all__ = ["StackEnv", "TargetUnderTest", "stack_env", "target_under_test"]

ENV_FILE = Path(__file__).resolve().parents[1] / ".env"
_NEEDED = (
    "TENANT_S3_ENDPOINT_URL", "TENANT_S3_ACCESS_KEY_ID", "TENANT_S3_SECRET_ACCESS_KEY",
    "TENANT_S3_BUCKET", "TENANT_SFTP_HOST", "TENANT_SFTP_PORT", "TENANT_SFTP_USER",
    "TENANT_SFTP_KEY_FILE", "TENANT_SFTP_KNOWN_HOSTS", "TENANT_SFTP_DIR",
)


class StackEnv(dict[str, str]):
    """The TENANT_* values of ``.env`` (the process environment wins, as for Settings)."""

    def s3(self, prefix: str, **kwargs: object) -> S3BackupTarget:
        return S3BackupTarget(
            bucket=self["TENANT_S3_BUCKET"], prefix=prefix,
            endpoint_url=self["TENANT_S3_ENDPOINT_URL"], region="us-east-1",
            access_key_id=self["TENANT_S3_ACCESS_KEY_ID"],
            secret_access_key=self["TENANT_S3_SECRET_ACCESS_KEY"],
            create_bucket=True, **kwargs,  # type: ignore[arg-type]
        )

    def sftp(self, root_dir: str, known_hosts: Path | str | None = None) -> SftpBackupTarget:
        return SftpBackupTarget(
            host=self["TENANT_SFTP_HOST"], port=int(self["TENANT_SFTP_PORT"]),
            username=self["TENANT_SFTP_USER"], client_key_path=self["TENANT_SFTP_KEY_FILE"],
            known_hosts_path=(
                self["TENANT_SFTP_KNOWN_HOSTS"] if known_hosts is None else known_hosts
            ),
            root_dir=root_dir,
        )


@pytest.fixture(scope="session")
def stack_env() -> StackEnv:
    values = {k: v for k, v in dotenv_values(ENV_FILE).items() if v is not None}
    values.update({k: v for k, v in os.environ.items() if k.startswith("TENANT_")})
    missing = [name for name in _NEEDED if not values.get(name)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing from {ENV_FILE}: run scripts/stack up")
    return StackEnv(values)


@dataclass
class TargetUnderTest:
    target: BackupTarget
    #: every stored name under the target's root, including what ``list()`` must hide
    raw_names: Callable[[], Awaitable[list[str]]]


async def _local(tmp_path: Path) -> AsyncIterator[TargetUnderTest]:
    root = tmp_path / "backups"

    async def raw() -> list[str]:
        return sorted(
            str(Path(d, f).relative_to(root)) for d, _, files in os.walk(root) for f in files
        )

    target = LocalFolderTarget(root)
    await target.start()
    yield TargetUnderTest(target, raw)
    await target.close()


async def _s3(env: StackEnv) -> AsyncIterator[TargetUnderTest]:
    prefix = f"contract-{secrets.token_hex(4)}"
    target = env.s3(prefix)
    await target.start()
    client = await target._get_client()  # the test peeks below the port on purpose
    bucket = env["TENANT_S3_BUCKET"]

    async def raw() -> list[str]:
        objects = await client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
        uploads = await client.list_multipart_uploads(Bucket=bucket, Prefix=f"{prefix}/")
        return sorted(
            [o["Key"] for o in objects.get("Contents", [])]
            + [f"upload:{u['Key']}" for u in uploads.get("Uploads", [])]
        )

    yield TargetUnderTest(target, raw)
    for key in await target.list(""):
        await target.delete(key)
    await target.close()


async def _sftp(env: StackEnv) -> AsyncIterator[TargetUnderTest]:
    root = f"{env['TENANT_SFTP_DIR']}/contract-{secrets.token_hex(4)}"
    target = env.sftp(root)
    await target.start()

    async def raw() -> list[str]:
        sftp = await target._client()  # the test peeks below the port on purpose
        if not await sftp.isdir(root):
            return []
        names, pending = [], [root]
        while pending:
            directory = pending.pop()
            for entry in await sftp.readdir(directory):
                name = str(entry.filename)
                if name in (".", ".."):
                    continue
                full = f"{directory}/{name}"
                if stat.S_ISDIR(entry.attrs.permissions or 0):
                    pending.append(full)
                else:
                    names.append(full[len(root) + 1:])
        return sorted(names)

    yield TargetUnderTest(target, raw)
    sftp = await target._client()
    if await sftp.isdir(root):
        await sftp.rmtree(root)
    await target.close()


@pytest.fixture(params=["local", "s3", "sftp"])
async def target_under_test(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[TargetUnderTest]:
    if request.param == "local":
        gen = _local(tmp_path)
    else:
        env: StackEnv = request.getfixturevalue("stack_env")
        gen = _s3(env) if request.param == "s3" else _sftp(env)
    async for under_test in gen:
        yield under_test
