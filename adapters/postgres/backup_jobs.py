"""Backup/restore jobs with leases, and the backup catalog.

A job is claimed with a lease that its runner renews; a runner that dies simply stops renewing
and the job becomes claimable again. Every claim counts an attempt, so a job that kills its
runner each time (OOM) is not claimed for ever: its claim past the limit comes back ``spent``,
for the claimer to fail it. Every write by a holder (renew, finish, retry) is fenced on the
lease owner AND a live lease: once the lease has lapsed, another job of the tenant may have
started (the claim rule only counts live leases), so a late holder can never renew, catalogue
or report anything.
"""

from typing import Any

import asyncpg

from adapters.trace_context import current_trace
from domain.backups import attempts_spent
from domain.jobs import CatalogRow, Job, Rider
from domain.tenant_ids import quote_ident

__all__ = ["CatalogRow", "Job", "PostgresBackupJobs", "Rider"]

_CLAIM_LOCK = 7_311_002
#: the fence of every holder's write: still ours, and the lease has not lapsed
_HELD = "job_id = $1 AND lease_owner = $2 AND status = 'running' AND lease_until >= now()"


class PostgresBackupJobs:
    def __init__(self, control_schema: str) -> None:
        s = quote_ident(control_schema)
        self.jobs, self.catalog = f"{s}.backup_jobs", f"{s}.backups"
        self.replaced, self.drills = f"{s}.replaced_schemas", f"{s}.restore_drills"
        self.riders = f"{s}.backup_job_riders"

    async def add(
        self,
        conn: asyncpg.Connection,
        job_id: str,
        kind: str,
        tenant_id: str,
        cause_id: str,
        correlation_id: str,
        backup_id: str | None = None,
        archive: bool = False,
    ) -> None:
        """Queue a job; it keeps the current span's trace context (the accepting request's)."""
        traceparent, tracestate = current_trace()
        await conn.execute(
            f"INSERT INTO {self.jobs} (job_id, kind, tenant_id, cause_id, correlation_id,"
            " backup_id, archive, traceparent, tracestate)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (job_id) DO NOTHING",
            job_id,
            kind,
            tenant_id,
            cause_id,
            correlation_id,
            backup_id,
            archive,
            traceparent,
            tracestate,
        )

    async def add_backup(
        self,
        conn: asyncpg.Connection,
        job_id: str,
        tenant_id: str,
        cause_id: str,
        correlation_id: str,
    ) -> str:
        """Queue a backup of the tenant; returns the id of the job that will answer it.

        If the tenant already has a backup job that no runner has started yet, this request
        rides on it: that backup starts after now, so it is as fresh as the one asked for.
        The row lock makes it exact against a claim: a claim that got there first has set the
        job running, the re-checked row no longer qualifies, and a new job is queued instead;
        a claim that comes second skips the locked row until we commit (SKIP LOCKED).
        """
        host = await conn.fetchval(
            f"SELECT job_id FROM {self.jobs} WHERE tenant_id = $1 AND kind = 'backup'"
            " AND status = 'pending' AND attempts = 0 AND not_before <= now() AND job_id <> $2"
            " ORDER BY created_at LIMIT 1 FOR UPDATE",
            tenant_id,
            job_id,
        )
        if host is None:
            await self.add(conn, job_id, "backup", tenant_id, cause_id, correlation_id)
            return job_id
        traceparent, tracestate = current_trace()
        await conn.execute(
            f"INSERT INTO {self.riders} (cause_id, job_id, correlation_id, traceparent,"
            " tracestate) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (cause_id) DO NOTHING",
            cause_id,
            host,
            correlation_id,
            traceparent,
            tracestate,
        )
        return str(host)

    async def riders_of(self, conn: asyncpg.Connection, job_id: str) -> list[Rider]:
        """The requests riding on the job, oldest first."""
        rows = await conn.fetch(
            f"SELECT cause_id, correlation_id, traceparent, tracestate FROM {self.riders}"
            " WHERE job_id = $1 ORDER BY created_at, cause_id",
            job_id,
        )
        return [
            Rider(r["cause_id"], r["correlation_id"], r["traceparent"], r["tracestate"])
            for r in rows
        ]

    async def job_answering(self, conn: asyncpg.Connection, cause_id: str) -> str | None:
        """The job that answers the request ``cause_id``, if it rides on another's."""
        host = await conn.fetchval(
            f"SELECT job_id FROM {self.riders} WHERE cause_id = $1", cause_id
        )
        return None if host is None else str(host)

    async def claim(
        self, pool: asyncpg.Pool, owner: str, kinds: list[str], lease_s: float, max_attempts: int
    ) -> Job | None:
        """Lease the oldest ready job whose tenant has no other job running under a live lease.

        The claim counts an attempt; a job claimed more than ``max_attempts`` times (its earlier
        holders died without a word) comes back with ``spent`` set: still leased to ``owner``,
        so exactly one claimer answers it, through the same fenced finish as any failure.
        """
        async with pool.acquire() as conn, conn.transaction():
            # Claims are short and rare: serialising them makes "one job per tenant" exact.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _CLAIM_LOCK)
            row = await conn.fetchrow(
                f"UPDATE {self.jobs} SET status = 'running', lease_owner = $1,"
                " lease_until = now() + make_interval(secs => $2), attempts = attempts + 1,"
                " updated_at = now()"
                f" WHERE job_id = (SELECT c.job_id FROM {self.jobs} c"
                "  WHERE c.status IN ('pending', 'running') AND c.kind = ANY($3::text[])"
                "  AND c.not_before <= now() AND (c.lease_until IS NULL OR c.lease_until < now())"
                f"  AND NOT EXISTS (SELECT 1 FROM {self.jobs} o WHERE o.tenant_id = c.tenant_id"
                "   AND o.job_id <> c.job_id AND o.status = 'running' AND o.lease_until >= now())"
                "  ORDER BY c.not_before, c.created_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " RETURNING *",
                owner,
                lease_s,
                kinds,
            )
        if row is None:
            return None
        return Job(
            row["job_id"],
            row["kind"],
            row["tenant_id"],
            row["cause_id"],
            row["correlation_id"],
            row["backup_id"],
            row["attempts"],
            row["archive"],
            attempts_spent(row["attempts"], max_attempts),
            row["traceparent"],
            row["tracestate"],
        )

    async def renew(
        self, conn: asyncpg.Connection, job_id: str, owner: str, lease_s: float, progress_bytes: int
    ) -> bool:
        status = await conn.execute(
            f"UPDATE {self.jobs} SET lease_until = now() + make_interval(secs => $3),"
            f" progress_bytes = $4, updated_at = now() WHERE {_HELD}",
            job_id,
            owner,
            lease_s,
            progress_bytes,
        )
        return bool(status != "UPDATE 0")

    async def finish(
        self,
        conn: asyncpg.Connection,
        job_id: str,
        owner: str,
        status: str,
        error: str | None = None,
    ) -> bool:
        """Fenced: False when our lease has lapsed or another runner holds the job now."""
        result = await conn.execute(
            f"UPDATE {self.jobs} SET status = $3, last_error = $4, lease_owner = NULL,"
            f" lease_until = NULL, updated_at = now() WHERE {_HELD}",
            job_id,
            owner,
            status,
            error,
        )
        return bool(result != "UPDATE 0")

    async def retry_later(
        self, conn: asyncpg.Connection, job_id: str, owner: str, delay_s: float, error: str
    ) -> bool:
        result = await conn.execute(
            f"UPDATE {self.jobs} SET status = 'pending', last_error = $4, lease_owner = NULL,"
            " lease_until = NULL, not_before = now() + make_interval(secs => $3), updated_at = now()"
            f" WHERE {_HELD}",
            job_id,
            owner,
            delay_s,
            error,
        )
        return bool(result != "UPDATE 0")

    async def swap_of(self, conn: asyncpg.Connection, job_id: str) -> tuple[str, str] | None:
        """(restored backup id, replaced schema) once the restore's swap has committed.

        The record is written by the swap's own transaction (adapters/postgres/restore_swap.py),
        fenced on the lease owner, so it exists exactly when the swap does.
        """
        row = await conn.fetchrow(
            f"SELECT restored_backup_id, replaced_schema FROM {self.jobs}"
            " WHERE job_id = $1 AND swapped_at IS NOT NULL",
            job_id,
        )
        return None if row is None else (row["restored_backup_id"], row["replaced_schema"])

    async def job(self, conn: asyncpg.Connection, job_id: str) -> dict[str, Any] | None:
        row = await conn.fetchrow(f"SELECT * FROM {self.jobs} WHERE job_id = $1", job_id)
        return dict(row) if row else None

    # ---- catalog ---------------------------------------------------------------------------

    async def catalogue(self, conn: asyncpg.Connection, row: CatalogRow) -> None:
        await conn.execute(
            f"INSERT INTO {self.catalog} (backup_id, tenant_id, target, uri, artifact_key,"
            " manifest_key, bytes, sha256, schema_version, started_at, finished_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            row.backup_id,
            row.tenant_id,
            row.target,
            row.uri,
            row.artifact_key,
            row.manifest_key,
            row.bytes,
            row.sha256,
            row.schema_version,
            row.started_at,
            row.finished_at,
        )

    async def backups(self, conn: asyncpg.Connection, tenant_id: str) -> list[CatalogRow]:
        rows = await conn.fetch(
            f"SELECT * FROM {self.catalog} WHERE tenant_id = $1 ORDER BY finished_at DESC",
            tenant_id,
        )
        return [CatalogRow(**dict(r)) for r in rows]

    async def backup(
        self, conn: asyncpg.Connection, tenant_id: str, backup_id: str
    ) -> CatalogRow | None:
        if backup_id == "latest":
            rows = await self.backups(conn, tenant_id)
            return rows[0] if rows else None
        row = await conn.fetchrow(
            f"SELECT * FROM {self.catalog} WHERE tenant_id = $1 AND backup_id = $2",
            tenant_id,
            backup_id,
        )
        return CatalogRow(**dict(row)) if row else None

    async def forget(self, conn: asyncpg.Connection, backup_ids: list[str]) -> None:
        await conn.execute(
            f"DELETE FROM {self.catalog} WHERE backup_id = ANY($1::text[])", backup_ids
        )

    async def record_drill(
        self, conn: asyncpg.Connection, backup_id: str, tenant_id: str, ok: bool, report: str
    ) -> None:
        await conn.execute(
            f"INSERT INTO {self.drills} (backup_id, tenant_id, ok, report) VALUES ($1, $2, $3, $4)",
            backup_id,
            tenant_id,
            ok,
            report,
        )
        await conn.execute(
            f"UPDATE {self.catalog} SET last_drill_at = now(), last_drill_ok = $2"
            " WHERE backup_id = $1",
            backup_id,
            ok,
        )

    # ---- schemas replaced by restores -------------------------------------------------------

    async def expired_replaced(self, conn: asyncpg.Connection) -> list[str]:
        rows = await conn.fetch(f"SELECT schema_name FROM {self.replaced} WHERE drop_after < now()")
        return [r["schema_name"] for r in rows]

    async def replaced_of(self, conn: asyncpg.Connection, tenant_id: str) -> list[str]:
        rows = await conn.fetch(
            f"SELECT schema_name FROM {self.replaced} WHERE tenant_id = $1", tenant_id
        )
        return [r["schema_name"] for r in rows]

    async def drop_replaced(self, conn: asyncpg.Connection, schema: str) -> None:
        """Drop a schema a restore replaced, and forget it (the caller's transaction)."""
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await self.forget_replaced(conn, schema)

    async def forget_replaced(self, conn: asyncpg.Connection, schema: str) -> None:
        await conn.execute(f"DELETE FROM {self.replaced} WHERE schema_name = $1", schema)
