"""SftpBackupTarget when its folder on the server goes away (a NAS volume unmounted, a folder moved
aside): every call fails transiently, nothing is written beside the mount point, and no artifact
is reported missing (not_found is permanent) while only the folder is away. On the real sshd;
the folder is moved through SFTP itself, as an operator on the NAS would move it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from adapters.backup_targets.sftp import SftpBackupTarget
from domain.errors import PermanentError, TransientError
from runtime.backup_target import backup_target
from runtime.settings import load_settings
from tests.backup_target_fixtures import StackEnv, stack_env  # noqa: F401  (fixture, by name)
from tests.support.target_away import assert_every_call_waits

pytestmark = pytest.mark.stack

KEY = "acme/b-1.dump.zst.age"


@pytest.fixture
async def started(stack_env: StackEnv) -> AsyncIterator[tuple[SftpBackupTarget, str]]:  # noqa: F811
    root = f"{stack_env['TENANT_SFTP_DIR']}/away-{secrets.token_hex(4)}/backups"
    target = stack_env.sftp(root)
    await target.start()
    await target.put(KEY, b"artifact")
    yield target, root
    sftp = await target._client()
    for path in (root, f"{root}.away"):
        if await sftp.exists(path):
            await sftp.rmtree(path)
    await sftp.rmtree(root.rpartition("/")[0])
    await target.close()


async def _read(target: SftpBackupTarget, key: str) -> bytes:
    return b"".join([chunk async for chunk in target.read(key)])


async def test_start_makes_the_folder_private(stack_env: StackEnv) -> None:  # noqa: F811
    parent = f"{stack_env['TENANT_SFTP_DIR']}/start-{secrets.token_hex(4)}"
    target = stack_env.sftp(f"{parent}/a/b")
    await target.start()
    sftp = await target._client()
    attrs = await sftp.stat(f"{parent}/a/b")
    assert attrs.permissions is not None and attrs.permissions & 0o777 == 0o700
    await sftp.rmtree(parent)
    await target.close()


async def test_a_folder_moved_away_is_a_target_that_is_down(
    started: tuple[SftpBackupTarget, str],
) -> None:
    target, root = started
    sftp = await target._client()
    await sftp.rename(root, f"{root}.away")
    await assert_every_call_waits(target, KEY)
    assert not await sftp.exists(root)  # nothing made beside the mount point

    await sftp.rename(f"{root}.away", root)  # back: everything as before
    assert await _read(target, KEY) == b"artifact"
    assert await target.exists(KEY)
    await target.put("acme/b-2.dump.zst.age", b"y")
    assert await target.list("acme/") == [KEY, "acme/b-2.dump.zst.age"]


async def test_a_write_whose_folder_goes_away_fails_transiently(
    started: tuple[SftpBackupTarget, str],
) -> None:
    target, root = started
    writer = await target.open_writer("acme/b-2.dump.zst.age")
    await writer.write(b"part")
    sftp = await target._client()
    await sftp.rename(root, f"{root}.away")
    with pytest.raises(TransientError):  # the rename finds no folder: not a permanent failure
        await writer.commit()
    await writer.abort()
    assert not await sftp.exists(root)


async def test_a_worker_starting_while_the_server_is_away_starts_and_waits(
    stack_env: StackEnv,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TENANT_BACKUP_TARGET", "sftp")
    monkeypatch.setenv("TENANT_SFTP_PORT", "1")  # nothing listens: refused
    with capture_logs() as logs:
        target = await backup_target(load_settings())  # start-up goes on
    assert [e["target"] for e in logs if e["event"] == "backup_target_unreachable"] == ["sftp"]
    with pytest.raises(TransientError):
        await target.put(KEY, b"x")
    await target.close()


async def test_a_missing_key_in_a_folder_that_is_there_is_not_found(
    started: tuple[SftpBackupTarget, str],
) -> None:
    target, root = started
    with pytest.raises(PermanentError) as e:
        await _read(target, "acme/b-9.dump.zst.age")
    assert e.value.reason == "not_found"
    assert not await target.exists("acme/b-9.dump.zst.age")
    await target.delete("acme/b-9.dump.zst.age")  # deleting what is not there is done
    assert await target.list("nobody/") == []
