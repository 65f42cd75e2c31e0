"""Eraser on fakes: the same erase whatever job runs it, every step idempotent."""

from typing import Any

import pytest

from domain.errors import PermanentError, TransientError
from domain.jobs import CatalogRow, Job
from domain.lifecycle import TenantStatus
from service.erasure import Eraser
from tests.unit.fakes import FakeKeyspace, FakeStores, catalogued, tenant


class FakeTaker:
    """The archive step's BackupTaker: records what it was asked, catalogues nothing itself."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, bool]] = []
        self.deleted: list[str] = []

    async def take(
        self, job: Job, progress: Any, *, operators_only: bool = False
    ) -> tuple[object, CatalogRow]:
        self.taken.append((job.job_id, operators_only))
        return object(), catalogued(job.tenant_id, job.job_id, day=9)

    async def delete_artifacts(self, rows: list[CatalogRow]) -> None:
        self.deleted += [r.backup_id for r in rows]


def erasing(archive: str | None = "a-1", tables: int = 5) -> FakeStores:
    stores = FakeStores()
    stores.state.tenants["acme"] = tenant("acme", status=TenantStatus.ERASING, archive=archive)
    stores.state.tables["acme"] = [f"t{n}" for n in range(tables)]
    stores.state.access["acme"] = False
    stores.state.backup_keys.add("acme")
    stores.state.catalogue["b-old"] = catalogued("acme", "b-old")
    stores.state.catalogue["b-other"] = catalogued("other", "b-other")
    stores.state.replaced["tenant_acme_old"] = "acme"
    return stores


def eraser(stores: FakeStores, keyspace: FakeKeyspace, taker: FakeTaker) -> Eraser:
    return Eraser(uows=stores, keyspace=keyspace, taker=taker, drop_batch=2)  # type: ignore[arg-type]


def job(job_id: str = "e-1") -> Job:
    return Job(job_id, "erase", "acme", "ev-1", "corr-1", None, 1)


async def test_an_erase_archives_then_removes_everything_and_leaves_a_tombstone() -> None:
    stores, taker = erasing(), FakeTaker()
    keyspace = FakeKeyspace({"tenant:acme:a", "tenant:acme:b", "tenant:other:a"})
    result = await eraser(stores, keyspace, taker).erase(job(), True, None)
    assert result.archive_backup_id == "a-1"
    assert result.erased == [
        "archived", "schema", "role", "replaced_schemas:1", "redis_keys:2", "backup_key",
        "backups:1",
    ]
    assert taker.taken == [("a-1", True)]  # encrypted to the operators only
    assert set(stores.state.catalogue) == {"a-1", "b-other"}  # the archive stays
    assert taker.deleted == ["b-old"]
    assert stores.dropped_batches == [["t0", "t1"], ["t2", "t3"], ["t4"]]  # bounded locks
    assert keyspace.keys == {"tenant:other:a"}
    assert stores.state.replaced == {} and stores.state.backup_keys == set()
    assert stores.state.tenants["acme"].status == TenantStatus.ERASED
    assert all(u.committed for u in stores.units)


async def test_a_second_erase_job_finishes_the_same_erase_without_a_second_archive() -> None:
    stores, taker = erasing(), FakeTaker()
    await eraser(stores, FakeKeyspace(), taker).erase(job("e-1"), True, None)
    again = await eraser(stores, FakeKeyspace(), taker).erase(job("e-2"), False, None)
    assert again.archive_backup_id == "a-1"
    assert again.erased == ["archived"]  # catalogued already; nothing else was left
    assert taker.taken == [("a-1", True)]


async def test_an_erase_without_archive_deletes_every_backup() -> None:
    stores, taker = erasing(archive=None), FakeTaker()
    result = await eraser(stores, FakeKeyspace(), taker).erase(job(), True, None)
    assert result.archive_backup_id is None and taker.taken == []
    assert "acme" not in {r.tenant_id for r in stores.state.catalogue.values()}


async def test_an_unknown_tenant_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentError) as e:
        await eraser(FakeStores(), FakeKeyspace(), FakeTaker()).erase(job(), False, None)
    assert e.value.reason == "unknown_tenant"


async def test_redis_unreachable_is_transient_and_the_retry_finishes_the_erase() -> None:
    stores, keyspace = erasing(), FakeKeyspace({"tenant:acme:a"})
    keyspace.fault = TransientError("redis: down")
    with pytest.raises(TransientError):
        await eraser(stores, keyspace, FakeTaker()).erase(job(), True, None)
    before = stores.state.tenants["acme"].status
    assert before == TenantStatus.ERASING and "acme" in stores.state.backup_keys  # no tombstone
    keyspace.fault = None
    result = await eraser(stores, keyspace, FakeTaker()).erase(job(), True, None)
    assert "redis_keys:1" in result.erased
    assert stores.state.tenants["acme"].status == TenantStatus.ERASED
