"""BackupTaker on fakes (a FakeDump for pg_dump | zstd | age, the local folder target): a backup
is catalogued with its checksum, size and row counts and answered once; a failing pipeline leaves
no artifact, no catalogue row and no BackupCompleted; estimated row counts are kept apart; an
earlier attempt's manifest is reused only for a tenant still there; retention drops only what
the plan no longer keeps; an erasing tenant gets no backup but its erase's operators-only archive.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

import service.backups
from adapters.backup_targets.local import LocalFolderTarget
from domain import backups as rules
from domain.errors import PermanentError, TransientError
from domain.jobs import Job
from domain.lifecycle import TenantStatus
from service.backups import BackupTaker
from tests.unit.fakes import FakeJobLeases, FakeStores, catalogued, tenant
from tests.unit.fakes.backups import FakeDump, FakeKeyring, FakeSnapshots
from tests.unit.test_job_attempts import _runner

OPERATORS = ("age1operator",)


@dataclass
class Setup:
    stores: FakeStores
    target: LocalFolderTarget
    root: Path
    snapshots: FakeSnapshots
    dump: FakeDump
    taker: BackupTaker

    def manifest(self, backup_id: str, tenant_id: str = "acme") -> dict[str, object]:
        path = self.root / rules.manifest_key(tenant_id, backup_id)
        return dict(json.loads(path.read_bytes()))

    def files(self) -> list[str]:
        """Every file under the target's root, partials included."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    stores, snapshots = FakeStores(), FakeSnapshots(exact={"users": 2, "orders": 5})
    stores.state.tenants["acme"] = tenant("acme", plan="basic", version=3)
    dump = FakeDump(snapshots)

    async def pg_dump_version(argv: list[str]) -> bytes:
        return b"pg_dump (PostgreSQL) 15.0\n"

    monkeypatch.setattr(service.backups, "dump", dump)
    monkeypatch.setattr(service.backups, "run", pg_dump_version)
    root = tmp_path / "backups"
    root.mkdir()  # as LocalFolderTarget.start() does at a worker's start
    target = LocalFolderTarget(root)
    taker = BackupTaker(
        dsn="postgresql://svc:pw@db/tenants", uows=stores, keyring=FakeKeyring(),
        snapshots=snapshots, target=target, archive_recipients=OPERATORS,
        retention={"basic": rules.RetentionPolicy(last=2)}, zstd_level=3, zstd_threads=0,
        chunk_bytes=1 << 16, rate_limit=0,
    )
    return Setup(stores, target, root, snapshots, dump, taker)


async def _run_backup(s: Setup, *, riders: int = 0) -> None:
    async with s.stores("queue") as uow:
        assert await uow.jobs.add_backup("b-1", "acme", "cause-1", "corr-1") == "b-1"
        for n in range(riders):
            await uow.jobs.add_backup(f"b-{n + 2}", "acme", f"rider-{n}", f"corr-r{n}")
    runner = _runner(s.stores, work=s.taker)
    job = await FakeJobLeases(s.stores).claim(runner.owner, ["backup"], 30.0, 3)
    assert job is not None
    await runner.run_job(job)


def _job(backup_id: str = "b-1", tenant_id: str = "acme") -> Job:
    return Job(backup_id, "backup", tenant_id, "cause-1", "corr-1", None, 1)


# ---- a backup, end to end through the job runner ------------------------------------------------


async def test_a_backup_is_catalogued_with_its_checksum_size_and_counts_and_answered_once(
    setup: Setup,
) -> None:
    s = setup
    await _run_backup(s, riders=1)

    row = s.stores.state.catalogue["b-1"]
    artifact = (s.root / rules.artifact_key("acme", "b-1")).read_bytes()
    assert artifact == s.dump.data  # the artifact is exactly what the pipeline streamed
    assert (row.bytes, row.sha256) == (len(s.dump.data), hashlib.sha256(s.dump.data).hexdigest())
    assert (row.tenant_id, row.schema_version, row.target) == ("acme", 3, "local")
    assert row.uri == s.target.uri(rules.artifact_key("acme", "b-1"))
    manifest = s.manifest("b-1")
    assert (manifest["sha256"], manifest["bytes"]) == (row.sha256, row.bytes)
    assert manifest["row_counts"] == {"users": 2, "orders": 5}
    assert manifest["row_counts_estimated"] == {}
    assert manifest["recipients"] == ["age1acme"]  # the tenant's key alone: crypto-shredding
    # pg_dump attached to the snapshot the counts were taken in, while it was held.
    (call,) = s.dump.calls
    assert (call["snapshot"], call["in_snapshot"], call["schema"]) == ("snap-1", True, "tenant_acme")

    results = s.stores.results
    assert sorted(str(e.causationid) for e in results) == ["cause-1", "rider-0"]
    assert {(e.type, e.data["sha256"], e.data["bytes"]) for e in results} == {
        ("BackupCompleted", row.sha256, row.bytes)
    }
    assert s.stores.state.jobs["b-1"]["status"] == "succeeded"
    assert await FakeJobLeases(s.stores).claim("other", ["backup"], 30.0, 3) is None


async def test_a_transient_pipeline_failure_leaves_no_artifact_no_row_and_no_result(
    setup: Setup,
) -> None:
    s = setup
    s.dump.fault = TransientError("pg_dump: server closed the connection")
    await _run_backup(s)

    assert s.files() == []  # the half-written artifact (a partial) was aborted
    assert s.stores.state.catalogue == {}
    assert s.stores.results == []  # retried later: no answer yet
    job = s.stores.state.jobs["b-1"]
    assert job["status"] == "pending" and job["last_error"].startswith("TransientError")


async def test_a_permanent_pipeline_failure_answers_backup_failed_and_catalogues_nothing(
    setup: Setup,
) -> None:
    s = setup
    s.dump.fault = PermanentError("pipeline_failed", "age: bad recipient")
    await _run_backup(s)

    assert s.files() == []
    assert s.stores.state.catalogue == {}
    assert [(e.type, e.data["reason"]) for e in s.stores.results] == [
        ("BackupFailed", "pipeline_failed")
    ]


async def test_estimated_row_counts_are_listed_apart_from_the_exact_ones(setup: Setup) -> None:
    s = setup
    s.snapshots.exact, s.snapshots.estimated = {"users": 2}, {"events": 1_000_000}
    await s.taker.take(_job(), lambda n: None)
    manifest = s.manifest("b-1")
    assert manifest["row_counts"] == {"users": 2}  # what a restore drill compares: exact only
    assert manifest["row_counts_estimated"] == {"events": 1_000_000}


# ---- a retried backup ---------------------------------------------------------------------------


async def test_a_manifest_left_by_an_earlier_attempt_is_answered_without_a_second_dump(
    setup: Setup,
) -> None:
    s = setup
    first, first_row = await s.taker.take(_job(), lambda n: None)
    again, row = await s.taker.take(_job(), lambda n: None)
    assert len(s.dump.calls) == 1
    assert (again, row) == (first, first_row)


async def test_an_artifact_without_its_manifest_is_taken_again(setup: Setup) -> None:
    s = setup
    akey = rules.artifact_key("acme", "b-1")
    await s.target.put(akey, b"incomplete")
    _, row = await s.taker.take(_job(), lambda n: None)
    assert (s.root / akey).read_bytes() == s.dump.data and row.bytes == len(s.dump.data)


@pytest.mark.parametrize("status", [TenantStatus.ERASED, TenantStatus.ERASING])
async def test_a_manifest_left_by_an_earlier_attempt_answers_nothing_once_the_tenant_is_erased(
    setup: Setup, status: TenantStatus
) -> None:
    """The request still waiting when the erase ran is answered BackupFailed, not a backup of
    data the erase removed (and no catalogue row outlives the erase)."""
    s = setup
    await s.taker.take(_job(), lambda n: None)  # the attempt that wrote its manifest, then died
    s.stores.state.tenants["acme"] = tenant("acme", status=status)
    with pytest.raises(PermanentError) as refused:
        await s.taker.take(_job(), lambda n: None)
    assert refused.value.reason == ("unknown_tenant" if status == TenantStatus.ERASED else "erasing")


# ---- an erasing tenant --------------------------------------------------------------------------


async def test_an_erasing_tenant_is_refused_a_backup_before_anything_is_written(
    setup: Setup,
) -> None:
    s = setup
    s.stores.state.tenants["acme"] = tenant("acme", status=TenantStatus.ERASING, archive="a-1")
    await _run_backup(s)
    assert [(e.type, e.data["reason"]) for e in s.stores.results] == [("BackupFailed", "erasing")]
    assert s.dump.calls == [] and s.snapshots.taken == [] and s.files() == []
    assert s.stores.state.catalogue == {}


async def test_the_erase_archive_is_taken_for_an_erasing_tenant_to_the_operators_alone(
    setup: Setup,
) -> None:
    s = setup
    s.stores.state.tenants["acme"] = tenant("acme", status=TenantStatus.ERASING, archive="a-1")
    _, row = await s.taker.take(_job("a-1"), lambda n: None, operators_only=True)
    assert [c["recipients"] for c in s.dump.calls] == [list(OPERATORS)]
    assert s.manifest("a-1")["recipients"] == list(OPERATORS)
    assert row.backup_id == "a-1"


async def test_an_archive_without_operator_recipients_is_refused(setup: Setup) -> None:
    s = setup
    s.taker._operators = ()  # noqa: SLF001 - a worker without TENANT_ERASE_ARCHIVE_RECIPIENTS
    with pytest.raises(PermanentError) as refused:
        await s.taker.take(_job("a-1"), lambda n: None, operators_only=True)
    assert refused.value.reason == "archive_unavailable"
    assert s.dump.calls == [] and s.files() == []


# ---- retention ----------------------------------------------------------------------------------


async def test_retention_drops_only_what_the_plan_no_longer_keeps_and_their_artifacts(
    setup: Setup,
) -> None:
    s = setup
    old = [catalogued("acme", f"b-old{d}", day=d) for d in (1, 2, 3, 4)]
    other = catalogued("other", "b-other", day=1)
    for row in [*old, other]:
        s.stores.state.catalogue[row.backup_id] = row
        await s.target.put(row.artifact_key, b"x")
        await s.target.put(row.manifest_key, b"{}")

    async with s.stores("expire") as uow:
        gone = await s.taker.expire(uow, "acme", "basic")  # keep the last 2
    await s.taker.delete_artifacts(gone)

    assert sorted(r.backup_id for r in gone) == ["b-old1", "b-old2"]
    assert sorted(s.stores.state.catalogue) == ["b-old3", "b-old4", "b-other"]
    assert s.files() == sorted(
        k for r in (old[2], old[3], other) for k in (r.artifact_key, r.manifest_key)
    )


async def test_a_plan_without_retention_expires_nothing(setup: Setup) -> None:
    s = setup
    for d in (1, 2, 3):
        s.stores.state.catalogue[f"b-{d}"] = catalogued("acme", f"b-{d}", day=d)
    async with s.stores("expire") as uow:
        assert await s.taker.expire(uow, "acme", "enterprise") == []
    assert len(s.stores.state.catalogue) == 3


async def test_the_erase_archive_being_the_newest_backup_survives_retention(
    setup: Setup,
) -> None:
    """Retention knows nothing of archives: it keeps one because it is the tenant's newest
    (no backup of an erasing tenant can be newer, as the taker refuses them)."""
    s = setup
    s.stores.state.tenants["acme"] = tenant("acme", status=TenantStatus.ERASING, archive="a-1")
    for d in (1, 2, 3):
        s.stores.state.catalogue[f"b-{d}"] = catalogued("acme", f"b-{d}", day=d)
    s.stores.state.catalogue["a-1"] = catalogued("acme", "a-1", day=9)
    s.taker._retention = {"basic": rules.RetentionPolicy(last=1)}  # noqa: SLF001
    async with s.stores("expire") as uow:
        gone = await s.taker.expire(uow, "acme", "basic")
    assert sorted(r.backup_id for r in gone) == ["b-1", "b-2", "b-3"]
    assert list(s.stores.state.catalogue) == ["a-1"]


# ---- what a writer killed mid-upload left behind -----------------------------------------------


def _dead_writers_partial(s: Setup, key: str) -> Path:
    """A partial as a writer SIGKILLed mid-upload leaves it (it never ran its abort)."""
    from adapters.backup_targets.base import partial_name

    path = s.root / partial_name(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half an artifact")
    return path


async def test_a_dead_writers_partial_is_swept_when_the_manifest_is_already_there(
    setup: Setup,
) -> None:
    """An attempt that lost its lease finished; another, killed mid-upload, left a partial: the
    retry answers from the manifest and must still sweep it."""
    s = setup
    await s.taker.take(_job(), lambda n: None)
    partial = _dead_writers_partial(s, rules.artifact_key("acme", "b-1"))
    await s.taker.take(_job(), lambda n: None)
    assert not partial.exists()


@pytest.mark.parametrize("status", [TenantStatus.ERASED, TenantStatus.ERASING])
async def test_a_dead_writers_partial_is_swept_when_the_tenant_is_gone_meanwhile(
    setup: Setup, status: TenantStatus
) -> None:
    s = setup
    partial = _dead_writers_partial(s, rules.artifact_key("acme", "b-1"))
    s.stores.state.tenants["acme"] = tenant("acme", status=status)
    with pytest.raises(PermanentError):
        await s.taker.take(_job(), lambda n: None)
    assert not partial.exists()
