"""Fakes of the job side: the Jobs store a unit of work hands out (queued jobs, riders and the
backup catalogue) and the JobLeases port (claims and renewals, outside any unit of work), both on
the same FakeStores."""

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from domain.backups import attempts_spent
from domain.errors import PermanentError
from domain.jobs import CatalogRow, Job, Rider

if TYPE_CHECKING:
    from tests.unit.fakes.stores import FakeStores


class FakeJobs:
    def __init__(self, stores: "FakeStores") -> None:
        self._s = stores

    async def add(
        self,
        job_id: str,
        kind: str,
        tenant_id: str,
        cause_id: str,
        correlation_id: str,
        *,
        backup_id: str | None = None,
        archive: bool = False,
    ) -> None:
        self._s.state.jobs.setdefault(
            job_id,
            {"job_id": job_id, "kind": kind, "tenant_id": tenant_id, "cause_id": cause_id,
             "correlation_id": correlation_id, "backup_id": backup_id, "archive": archive,
             "status": "pending", "owner": None, "lease_until": None, "not_before": 0.0,
             "attempts": 0, "last_error": None, "swapped": None},
        )

    async def add_backup(
        self, job_id: str, tenant_id: str, cause_id: str, correlation_id: str
    ) -> str:
        host = next(
            (j["job_id"] for j in self._s.state.jobs.values()
             if j["tenant_id"] == tenant_id and j["kind"] == "backup"
             and j["status"] == "pending" and j["job_id"] != job_id),
            None,
        )
        if host is None:
            await self.add(job_id, "backup", tenant_id, cause_id, correlation_id)
            return job_id
        self._s.state.riders.setdefault(cause_id, host)
        self._s.state.rider_rows.setdefault(cause_id, Rider(cause_id, correlation_id))
        return str(host)

    async def has_backup(self, tenant_id: str, backup_id: str) -> bool:
        rows = await self.backups(tenant_id)
        return any(backup_id in ("latest", r.backup_id) for r in rows)

    async def backups(self, tenant_id: str) -> list[CatalogRow]:
        rows = [r for r in self._s.state.catalogue.values() if r.tenant_id == tenant_id]
        return sorted(rows, key=lambda r: r.finished_at, reverse=True)

    async def catalogue(self, row: CatalogRow) -> None:
        if row.backup_id in self._s.state.catalogue:  # the primary key
            raise PermanentError("database_error", f"catalogue {row.backup_id}: exists")
        self._s.state.catalogue[row.backup_id] = row

    async def forget(self, backup_ids: Sequence[str]) -> None:
        for backup_id in backup_ids:
            self._s.state.catalogue.pop(backup_id, None)

    async def replaced_of(self, tenant_id: str) -> list[str]:
        return [schema for schema, t in self._s.state.replaced.items() if t == tenant_id]

    async def drop_replaced(self, schema: str) -> None:
        self._s.state.replaced.pop(schema, None)

    async def expired_replaced(self) -> list[str]:
        return [s for s in self._s.state.replaced if s in self._s.expired_schemas]

    async def backup(self, tenant_id: str, backup_id: str) -> CatalogRow | None:
        rows = await self.backups(tenant_id)
        return next((r for r in rows if backup_id in ("latest", r.backup_id)), None)

    async def record_drill(self, backup_id: str, tenant_id: str, ok: bool, report: str) -> None:
        self._s.state.drills.append((backup_id, ok))
        row = self._s.state.catalogue.get(backup_id)
        if row is not None:  # as PostgreSQL, the backup's row shows its last drill
            self._s.state.catalogue[backup_id] = dataclasses.replace(
                row, last_drill_at=datetime.now(UTC), last_drill_ok=ok
            )

    def _held(self, job_id: str, owner: str) -> dict[str, Any] | None:
        job = self._s.state.jobs.get(job_id)
        if job is None or job["owner"] != owner or job["status"] != "running":
            return None
        return job if job["lease_until"] is not None and job["lease_until"] >= self._s.now else None

    async def finish(
        self, job_id: str, owner: str, status: str, error: str | None = None
    ) -> bool:
        job = self._held(job_id, owner)
        if job is None:
            return False
        job.update(status=status, last_error=error, owner=None, lease_until=None)
        return True

    async def retry_later(self, job_id: str, owner: str, delay_s: float, error: str) -> bool:
        job = self._held(job_id, owner)
        if job is None:
            return False
        job.update(status="pending", last_error=error, owner=None, lease_until=None,
                   not_before=self._s.now + delay_s)
        return True

    async def riders_of(self, job_id: str) -> list[Rider]:
        return [self._s.state.rider_rows[c] for c, host in self._s.state.riders.items()
                if host == job_id]

    async def swap_of(self, job_id: str) -> tuple[str, str] | None:
        job = self._s.state.jobs.get(job_id)
        return None if job is None else job["swapped"]


class FakeJobLeases:
    """See service.ports.JobLeases: claims and renewals on the same FakeStores, committed at
    once (each is its own transaction)."""

    def __init__(self, stores: "FakeStores") -> None:
        self._s = stores
        self.renew_fault: BaseException | None = None
        self.renewals = 0

    async def claim(
        self, owner: str, kinds: Sequence[str], lease_s: float, max_attempts: int
    ) -> Job | None:
        now, jobs = self._s.now, self._s.state.jobs.values()
        busy = {j["tenant_id"] for j in jobs if j["status"] == "running"
                and j["lease_until"] is not None and j["lease_until"] >= now}
        ready = [j for j in jobs if j["status"] in ("pending", "running") and j["kind"] in kinds
                 and j["not_before"] <= now and j["tenant_id"] not in busy
                 and (j["lease_until"] is None or j["lease_until"] < now)]
        if not ready:
            return None
        j = min(ready, key=lambda j: j["not_before"])  # stable: the oldest of equals first
        j.update(status="running", owner=owner, lease_until=now + lease_s,
                 attempts=j["attempts"] + 1)
        return Job(j["job_id"], j["kind"], j["tenant_id"], j["cause_id"], j["correlation_id"],
                   j["backup_id"], j["attempts"], j["archive"],
                   attempts_spent(j["attempts"], max_attempts))

    async def renew(self, job_id: str, owner: str, lease_s: float, progress_bytes: int) -> bool:
        self.renewals += 1
        if self.renew_fault is not None:
            raise self.renew_fault
        job = FakeJobs(self._s)._held(job_id, owner)  # noqa: SLF001
        if job is None:
            return False
        job.update(lease_until=self._s.now + lease_s, progress_bytes=progress_bytes)
        return True
