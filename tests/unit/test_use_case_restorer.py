"""Restorer through the job runner, on fakes: an artifact that is not the catalogued one is
refused (RestoreFailed{checksum_mismatch}) before psql starts, so nothing is swapped or run."""

from pathlib import Path

import pytest

import service.restores
from adapters.backup_targets.local import LocalFolderTarget
from domain.migrations import Migration
from service.job_runner import JobRunner
from service.restores import Restorer
from tests.unit.fakes import FakeJobLeases, FakeStores, catalogued, tenant
from tests.unit.fakes.backups import FakeKeyring, FakeRestoreDatabase


class NoPsql:
    """Stands in for adapters.psql.PsqlTransaction: a restore that reaches it fails the test."""

    started: list[str] = []

    def __init__(self, dsn: str) -> None:
        NoPsql.started.append(dsn)
        raise AssertionError("psql started for an artifact that was never verified")


async def test_a_checksum_mismatch_fails_the_restore_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = FakeStores()
    stores.state.tenants["acme"] = before = tenant("acme", version=2)
    row = catalogued("acme", "b-1")  # its sha256 is 0…0: not the artifact's
    stores.state.catalogue["b-1"] = row
    target = LocalFolderTarget(tmp_path / "backups")
    await target.start()
    await target.put(row.artifact_key, b"someone else's dump, encrypted to acme's recipient")
    spool = tmp_path / "spool"
    spool.mkdir()
    NoPsql.started = []
    monkeypatch.setattr(service.restores, "PsqlTransaction", NoPsql)
    database = FakeRestoreDatabase()
    restorer = Restorer(
        dsn="postgresql://svc:pw@db/tenants", uows=stores, keyring=FakeKeyring(),
        database=database, target=target, migrations=[Migration(2, "m2", "-- 2")],
        grace_s=60, chunk_bytes=1 << 16, control_schema="tenant_service",
        migration_lock_timeout_ms=1000, migration_statement_timeout_ms=1000, spool_dir=spool,
    )
    runner = JobRunner(
        uows=stores, leases=FakeJobLeases(stores), taker=None,  # type: ignore[arg-type]
        restorer=restorer, eraser=None,  # type: ignore[arg-type]
        lease_s=30.0, poll_s=1.0, max_attempts=3, retry_base_s=0.1, retry_max_s=1.0,
        source="urn:tests",
    )
    async with stores("queue") as uow:
        await uow.jobs.add("r-1", "restore", "acme", "cause-1", "corr-1", backup_id="b-1")
    job = await FakeJobLeases(stores).claim(runner.owner, ["restore"], 30.0, 3)
    assert job is not None

    await runner.run_job(job)

    assert [(e.type, e.data["reason"], e.data["backup_id"]) for e in stores.results] == [
        ("RestoreFailed", "checksum_mismatch", "b-1")
    ]
    assert NoPsql.started == []  # no byte of it reached PostgreSQL
    assert stores.state.jobs["r-1"]["status"] == "failed"
    assert stores.state.jobs["r-1"]["swapped"] is None and stores.state.replaced == {}
    assert stores.state.tenants["acme"] == before  # not migrated, not touched
    assert database.terminated == [] and list(spool.iterdir()) == []  # the spool went too
