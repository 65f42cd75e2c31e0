"""SIGTERM stops a worker cleanly (exit code 0) within its grace period."""

import time
from pathlib import Path

import pytest

from runtime.settings import Settings
from tests.support.workers import WorkerProcess, http_get

pytestmark = pytest.mark.stack


@pytest.mark.parametrize("roles", [["provisioner", "relay"], ["relay"]], ids=["all", "relay"])
async def test_sigterm_exits_zero_within_grace(
    roles: list[str], settings: Settings, log_dir: Path
) -> None:
    worker = WorkerProcess(roles, log_dir / f"shutdown-{'-'.join(roles)}.log")
    await worker.start()

    started = time.monotonic()
    code = await worker.terminate(settings.shutdown_grace_s)  # fails if it overruns the grace

    assert code == 0, worker.log_tail()
    assert time.monotonic() - started < settings.shutdown_grace_s
    assert '"event": "worker_stopped"' in worker.log_text()
    with pytest.raises(OSError):
        await http_get(worker.port, "/healthz", limit_s=2)
