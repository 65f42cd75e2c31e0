"""LocalFolderTarget when its folder goes away (an unmounted volume, a folder moved aside): every
call fails transiently, nothing is written beside the mount point, and no artifact is reported
missing (not_found is permanent) while only the target is away. On the real file system."""

import os
from pathlib import Path

import pytest

from adapters.backup_targets.local import LocalFolderTarget
from domain.errors import PermanentError, TransientError
from runtime.backup_target import backup_target
from runtime.settings import SettingsError, load_settings
from tests.support.target_away import assert_every_call_waits

KEY = "acme/b-1.dump.zst.age"


async def _started(tmp_path: Path) -> tuple[LocalFolderTarget, Path]:
    root = tmp_path / "mnt" / "backups"
    target = LocalFolderTarget(root)
    await target.start()
    await target.put(KEY, b"artifact")
    return target, root


async def test_start_makes_the_folder_private(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    await LocalFolderTarget(root).start()
    assert root.is_dir() and (root.stat().st_mode & 0o777) == 0o700


async def test_a_folder_moved_away_is_a_target_that_is_down(tmp_path: Path) -> None:
    target, root = await _started(tmp_path)
    os.rename(root, tmp_path / "away")
    await assert_every_call_waits(target, KEY)
    assert not root.exists()  # nothing made beside the mount point

    os.rename(tmp_path / "away", root)  # back: everything as before
    assert b"".join([c async for c in target.read(KEY)]) == b"artifact"
    assert await target.exists(KEY)
    await target.put("acme/b-2.dump.zst.age", b"y")
    assert await target.list("acme/") == [KEY, "acme/b-2.dump.zst.age"]


async def test_a_folder_replaced_by_a_file_is_a_target_that_is_down(tmp_path: Path) -> None:
    target, root = await _started(tmp_path)
    os.rename(root, tmp_path / "away")
    root.write_text("not a folder")
    with pytest.raises(TransientError):
        await target.put("acme/b-2.dump.zst.age", b"y")
    with pytest.raises(TransientError):
        async for _ in target.read(KEY):
            pass
    assert root.is_file()


async def test_a_missing_key_in_a_folder_that_is_there_is_not_found(tmp_path: Path) -> None:
    target, _ = await _started(tmp_path)
    with pytest.raises(PermanentError) as e:
        async for _ in target.read("acme/b-9.dump.zst.age"):
            pass
    assert e.value.reason == "not_found"
    os.remove(tmp_path / "mnt" / "backups" / KEY)
    with pytest.raises(PermanentError):
        async for _ in target.read(KEY):
            pass


async def test_a_worker_starting_while_the_folder_is_away_starts_and_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "backups"
    root.write_text("the volume is away")  # as in the chaos run's outage
    monkeypatch.setenv("TENANT_BACKUP_LOCAL_DIR", str(root))
    target = await backup_target(load_settings())  # start-up goes on
    with pytest.raises(TransientError):
        await target.put(KEY, b"x")
    root.unlink()
    root.mkdir()  # back
    await target.put(KEY, b"x")
    assert (root / KEY).read_bytes() == b"x"


async def test_a_folder_that_cannot_be_made_stops_start_up_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # /sys refuses a new folder even to root (EPERM): permanent, and only start-up makes the root.
    monkeypatch.setenv("TENANT_BACKUP_LOCAL_DIR", "/sys/tenant-backups-test")
    with pytest.raises(SettingsError) as e:
        await backup_target(load_settings())
    assert "TENANT_BACKUP_LOCAL_DIR" in str(e.value.code)
