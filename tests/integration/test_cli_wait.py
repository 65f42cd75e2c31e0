"""``--wait`` on a request that was dead-lettered says so at once and names the entry."""

from pathlib import Path

import pytest

from tests.support.cli import tenantctl
from tests.support.stack import SessionWorker, TenantIds
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack


async def test_wait_names_the_dead_letter_of_its_request(
    session_worker: SessionWorker, tenants: TenantIds, log_dir: Path
) -> None:
    # A backup worker that finds every event too old: the request is dead-lettered
    # (time_out_of_range) and no result will ever come.
    worker = WorkerProcess(
        ("backup",), log_dir / "cli-wait-backup.log", env={"TENANT_EVENT_MAX_AGE_S": "0.001"}
    )
    await worker.start()
    try:
        ran = await tenantctl(
            "backup", "create", tenants.new(), "--wait", "--timeout", "150", limit_s=200
        )
    finally:
        await worker.terminate(60)
    assert ran.code == 1, str(ran)  # 3 would mean it waited for the timeout
    letter = ran.json()
    assert letter["reason"] == "time_out_of_range", letter
    assert "Traceback" not in ran.err, str(ran)
    line = ran.err.strip().splitlines()[-1]
    assert "dead-lettered" in line and letter["id"] in line, line
