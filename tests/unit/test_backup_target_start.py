"""How a worker starts its backup target (runtime.backup_target.started), on fakes: away means
start and wait; refused stops start-up only for a local folder (nothing else would make it)."""

import pytest
import structlog

from domain.errors import PermanentError, TransientError
from runtime.backup_target import started
from runtime.settings import SettingsError


class _Target:
    def __init__(self, kind: str, error: Exception | None) -> None:
        self.kind, self._error, self.starts = kind, error, 0

    async def start(self) -> None:
        self.starts += 1
        if self._error is not None:
            raise self._error


@pytest.mark.parametrize("kind", ["s3", "sftp", "local"])
async def test_a_target_away_at_start_up_starts_and_says_so(kind: str) -> None:
    target = _Target(kind, TransientError("connection refused"))
    with structlog.testing.capture_logs() as logs:
        assert await started(target, remote=kind != "local") is target  # type: ignore[arg-type]
    assert [(e["event"], e["target"]) for e in logs] == [("backup_target_unreachable", kind)]


@pytest.mark.parametrize("kind", ["s3", "sftp"])
async def test_a_remote_target_refused_at_start_up_is_logged_and_the_worker_starts(
    kind: str,
) -> None:
    target = _Target(kind, PermanentError("access_denied", "host key not trusted"))
    with structlog.testing.capture_logs() as logs:
        assert await started(target, remote=True) is target  # type: ignore[arg-type]
    assert [(e["event"], e["target"], e["reason"]) for e in logs] == [
        ("backup_target_refused", kind, "access_denied")
    ]


async def test_a_local_folder_refused_at_start_up_stops_it_naming_the_setting() -> None:
    target = _Target("local", PermanentError("access_denied", "mkdir /srv/backups: denied"))
    with pytest.raises(SettingsError) as e:
        await started(target, remote=False)  # type: ignore[arg-type]
    assert "TENANT_BACKUP_LOCAL_DIR" in str(e.value.code) and "denied" in str(e.value.code)


async def test_a_target_that_starts_is_started_once_and_logs_nothing() -> None:
    target = _Target("s3", None)
    with structlog.testing.capture_logs() as logs:
        await started(target, remote=True)  # type: ignore[arg-type]
    assert target.starts == 1 and logs == []
