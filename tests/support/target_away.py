"""What every call of a backup target must do while its folder is away: fail transiently."""

import pytest

from adapters.backup_targets.base import BackupTarget
from domain.errors import TransientError


async def assert_every_call_waits(target: BackupTarget, key: str) -> None:
    """``key`` was stored before the folder went away; ``acme/`` is its tenant's prefix."""
    with pytest.raises(TransientError, match="missing"):
        await target.open_writer("acme/b-2.dump.zst.age")
    with pytest.raises(TransientError):
        await target.put("other/b-3.dump.zst.age", b"x")
    with pytest.raises(TransientError):  # not not_found: the artifact is on the volume away
        async for _ in target.read(key):
            pass
    with pytest.raises(TransientError):  # not False: an erasure checks its archive with it
        await target.exists(key)
    with pytest.raises(TransientError):  # an erasure's delete must not look done
        await target.delete(key)
    with pytest.raises(TransientError):
        await target.list("acme/")
    with pytest.raises(TransientError):
        await target.discard_partials(key)
