"""SIGTERM stops a worker cleanly (exit code 0), stopping before it stopped. The grace period
itself is enforced in code (tests/unit/test_bounded_shutdown.py); a wall-clock bound here would
only measure how loaded the machine is."""

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

    code = await worker.terminate(settings.shutdown_grace_s + 60)  # a limit on waiting only

    assert code == 0, worker.log_tail()
    log = worker.log_text()
    assert '"event": "worker_stopping"' in log, worker.log_tail()
    assert log.index('"event": "worker_stopping"') < log.index('"event": "worker_stopped"')
    with pytest.raises(OSError):
        await http_get(worker.port, "/healthz", limit_s=2)
