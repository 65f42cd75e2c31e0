"""CatalogUpkeep on a fake catalogue store and a fake lock: it vacuums what the rule says, stands
down once when the role may not vacuum, honours stop; and the provisioner role runs it."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from domain.catalog_upkeep import CatalogStats
from producers.catalog_upkeep import CatalogUpkeep
from runtime.bootstrap import Resources
from runtime.roles import provisioner_role
from runtime.settings import Settings
from tests.support.resources import unconnected_resources
from tests.support.waiting import wait_until

DSN = "postgresql://u:p@127.0.0.1:1/db"


class FakeCatalogStore:
    """pg_catalog as the statistics see it; a VACUUM empties a catalogue's dead rows."""

    def __init__(self, stats: list[CatalogStats], *, permitted: bool = True) -> None:
        self.catalogs = {s.name: s for s in stats}
        self.permitted = permitted
        self.asked = self.looks = 0
        self.vacuums: list[str] = []
        self.skip: dict[str, str] = {}  # catalogue -> the server's warning
        self.on_vacuum: list[Any] = []  # callbacks, after each vacuum

    async def may_vacuum(self, conn: Any) -> bool:
        self.asked += 1
        return self.permitted

    async def stats(self, conn: Any) -> list[CatalogStats]:
        self.looks += 1
        return list(self.catalogs.values())

    async def vacuum(self, conn: Any, catalog: str) -> str | None:
        assert self.permitted, "vacuumed without the owner's privileges"
        if catalog in self.skip:
            return self.skip[catalog]
        self.vacuums.append(catalog)
        s = self.catalogs[catalog]
        self.catalogs[catalog] = CatalogStats(s.name, s.live, 0, s.shared)
        for callback in self.on_vacuum:
            callback()
        return None

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator["FakeCatalogStore"]:
        yield self


class FakeLeaderLock:
    def __init__(self) -> None:
        self.held = False

    async def acquire(self) -> bool:
        self.held = True
        return True

    async def holds(self) -> bool:
        return self.held

    async def release(self) -> None:
        self.held = False


def churned() -> list[CatalogStats]:
    return [
        CatalogStats("pg_attribute", live=20_000, dead=70_000),
        CatalogStats("pg_depend", live=0, dead=44_000),
        CatalogStats("pg_class", live=5_000, dead=9_000),  # under the count
        CatalogStats("pg_type", live=1_000_000, dead=20_000),  # under 5% of live
        CatalogStats("pg_shdepend", live=0, dead=90_000, shared=True),
    ]


def upkeep(store: FakeCatalogStore, **settings: Any) -> CatalogUpkeep:
    s = Settings(pg_dsn=DSN, catalog_upkeep_interval_s=0.01, **settings)  # type: ignore[arg-type]
    job = CatalogUpkeep(s, cast(Any, store), store)
    job.election.lock = FakeLeaderLock()  # type: ignore[assignment]
    return job


def _vacuums_counted(catalog: str) -> float:
    value = REGISTRY.get_sample_value("tenant_catalog_vacuums_total", {"catalog": catalog})
    return value or 0.0


async def test_the_due_catalogues_are_vacuumed_worst_first_and_counted() -> None:
    store = FakeCatalogStore(churned())
    job = upkeep(store)
    before = _vacuums_counted("pg_attribute")
    with capture_logs() as logs:
        assert await job.upkeep_once() == ["pg_attribute", "pg_depend"]
    # Neither the small one, the large one under its fraction, nor the shared one.
    assert store.vacuums == ["pg_attribute", "pg_depend"]
    assert _vacuums_counted("pg_attribute") == before + 1
    lines = [entry for entry in logs if entry["event"] == "catalog_vacuumed"]
    assert [(e["catalog"], e["dead_rows"]) for e in lines] == [
        ("pg_attribute", 70_000),
        ("pg_depend", 44_000),
    ]
    assert all(e["seconds"] >= 0 for e in lines)
    assert await job.upkeep_once() == []  # vacuumed: nothing is due any more


async def test_the_thresholds_come_from_the_settings() -> None:
    store = FakeCatalogStore(churned())
    job = upkeep(store, catalog_vacuum_dead_rows=5_000, catalog_vacuum_dead_fraction=0)
    assert await job.upkeep_once() == ["pg_attribute", "pg_depend", "pg_type", "pg_class"]


async def test_a_catalogue_the_server_skipped_is_logged_not_counted() -> None:
    store = FakeCatalogStore(churned())
    store.skip["pg_attribute"] = 'skipping vacuum of "pg_attribute" --- lock not available'
    job = upkeep(store)
    with capture_logs() as logs:
        assert await job.upkeep_once() == ["pg_depend"]
    assert "pg_attribute" not in job.vacuumed
    skipped = [e for e in logs if e["event"] == "catalog_vacuum_skipped"]
    assert [e["catalog"] for e in skipped] == ["pg_attribute"]


async def test_the_leader_looks_again_every_interval() -> None:
    store = FakeCatalogStore(churned())
    job = upkeep(store)
    task = asyncio.create_task(job.run())
    try:
        await wait_until(lambda: store.looks >= 3, 5, what="three looks")
        assert store.vacuums == ["pg_attribute", "pg_depend"]  # once each: then not due
        assert store.asked == 1  # the permission is asked once
    finally:
        job.stop()
        await asyncio.wait_for(task, 5)


async def test_a_role_that_may_not_vacuum_warns_once_and_stands_down() -> None:
    store = FakeCatalogStore(churned(), permitted=False)
    job = upkeep(store)
    with capture_logs() as logs:
        task = asyncio.create_task(job.run())
        try:
            await wait_until(lambda: job.permitted is False, 5, what="the permission asked")
            await wait_until(lambda: job.election.is_leader, 5, what="leading")
            # Further rounds (as a loop that spun would run) ask nothing, warn no more.
            assert await job.upkeep_once() == [] and await job.upkeep_once() == []
            assert not task.done(), "standing down must not end the loop (the worker would die)"
        finally:
            job.stop()
            await asyncio.wait_for(task, 5)
    warnings = [e for e in logs if e["event"] == "catalog_upkeep_not_permitted"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    assert (store.asked, store.looks, store.vacuums) == (1, 0, [])


async def test_stop_is_honoured_between_catalogues() -> None:
    store = FakeCatalogStore(churned())
    job = upkeep(store)
    store.on_vacuum.append(job.stop)  # a stop request arrives during the first VACUUM
    assert await job.upkeep_once() == ["pg_attribute"]
    assert store.vacuums == ["pg_attribute"]


async def test_the_provisioner_role_runs_the_upkeep_unless_it_is_off() -> None:
    def resources(interval_s: float) -> Resources:
        s = Settings(pg_dsn=DSN, catalog_upkeep_interval_s=interval_s)  # type: ignore[arg-type]
        return unconnected_resources(s)

    on = await provisioner_role(resources(30))
    off = await provisioner_role(resources(0))
    assert sum(isinstance(b, CatalogUpkeep) for b in on.background) == 1
    assert not any(isinstance(b, CatalogUpkeep) for b in off.background)


def test_the_upkeep_lock_is_its_own() -> None:
    names = Settings(pg_dsn=DSN).names  # type: ignore[arg-type]
    others = {names.outbox_lock_id, names.scheduler_lock_id, names.retention_lock_id}
    assert names.catalog_upkeep_lock_id not in others | {names.warm_pool_lock_id}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("catalog_upkeep_interval_s", -1),
        ("catalog_vacuum_dead_rows", 0),
        ("catalog_vacuum_dead_fraction", -0.1),
    ],
)
def test_settings_out_of_bounds_are_refused(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        Settings(pg_dsn=DSN, **{name: value})  # type: ignore[arg-type]
