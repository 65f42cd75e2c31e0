"""BackupDue / RestoreRequested: accepted as jobs in the consumer, taken by a job runner.

Accepting is a short transaction (inbox row + job row), well inside Kafka's poll interval; the
backup itself runs under a lease outside the poll loop, so a long backup never causes a
rebalance, and the lease plus the claim rule keep one job per tenant running at a time.
"""

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from adapters.backup_targets.base import BackupTarget
from adapters.dump_pipeline import dump
from adapters.processes import run
from contracts.codec import Decoded
from contracts.events import (
    BackupCompleted,
    BackupDue,
    BackupFailed,
    RestoreFailed,
    RestoreRequested,
)
from domain import backups as rules
from domain.errors import PermanentError
from domain.job_ids import backup_id_for, restore_job_id
from domain.jobs import CatalogRow, Job
from domain.lifecycle import TenantStatus
from service.event_transaction import Accepted, EventTransaction
from service.ports import BackupKeyring, BackupSnapshots
from service.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)


class BackupRequests:
    """The Kafka side: turns requests into jobs (or into an immediate *Failed result)."""

    def __init__(self, transaction: EventTransaction[UnitOfWork], source: str) -> None:
        self._transaction, self._source = transaction, source

    async def backup_due(self, decoded: Decoded[BackupDue]) -> Accepted | BackupFailed | None:
        """Queue a backup of the tenant (or ride on one not started yet)."""
        env, event = decoded.envelope, decoded.event

        async def effect(uow: UnitOfWork) -> BackupFailed | Accepted:
            record = await uow.tenants.get(event.tenant_id)
            if record is None or record.status == TenantStatus.ERASED:
                return BackupFailed(tenant_id=event.tenant_id, reason="unknown_tenant", attempts=0)
            job_id = await uow.jobs.add_backup(
                backup_id_for(env.id), event.tenant_id, env.id, env.correlationid
            )
            return Accepted(job_id)

        return await self._transaction.run(env, effect, source=self._source)

    async def restore_requested(
        self, decoded: Decoded[RestoreRequested]
    ) -> Accepted | RestoreFailed | None:
        """Queue a restore of a catalogued backup of the tenant."""
        env, event = decoded.envelope, decoded.event

        async def effect(uow: UnitOfWork) -> RestoreFailed | Accepted:
            record = await uow.tenants.get(event.tenant_id)
            if record is None or record.status == TenantStatus.ERASED:
                return RestoreFailed(
                    tenant_id=event.tenant_id, backup_id=event.backup_id, reason="unknown_tenant"
                )
            if not await uow.jobs.has_backup(event.tenant_id, event.backup_id):
                return RestoreFailed(
                    tenant_id=event.tenant_id, backup_id=event.backup_id, reason="backup_not_found"
                )
            job_id = restore_job_id(env.id)
            await uow.jobs.add(
                job_id,
                "restore",
                event.tenant_id,
                env.id,
                env.correlationid,
                backup_id=event.backup_id,
            )
            return Accepted(job_id)

        return await self._transaction.run(env, effect, source=self._source)


class BackupTaker:
    """Takes one backup: pg_dump | zstd | age streamed to the target, manifest, catalog row."""

    def __init__(
        self,
        *,
        dsn: str,
        uows: UnitOfWorkFactory,
        keyring: BackupKeyring,
        snapshots: BackupSnapshots,
        target: BackupTarget,
        archive_recipients: tuple[str, ...],
        retention: dict[str, rules.RetentionPolicy],
        zstd_level: int,
        zstd_threads: int,
        chunk_bytes: int,
        rate_limit: int,
    ) -> None:
        self._dsn, self._uows, self._keyring = dsn, uows, keyring
        self._snapshots, self._target = snapshots, target
        self._operators = archive_recipients
        self._retention = retention
        self._zstd = (zstd_level, zstd_threads)
        self._chunk, self._rate = chunk_bytes, rate_limit
        self._pg_dump_version: str | None = None

    async def take(
        self, job: Job, progress: Callable[[int], None], *, operators_only: bool = False
    ) -> tuple[BackupCompleted, CatalogRow]:
        """Write the artifact and manifest; returns what the runner commits (fenced).

        ``operators_only``: encrypt to the operator recipients alone (an erase's archive must
        outlive the tenant's key).
        """
        backup_id, tenant_id = job.job_id, job.tenant_id
        akey, mkey = (
            rules.artifact_key(tenant_id, backup_id),
            rules.manifest_key(tenant_id, backup_id),
        )
        # An earlier attempt killed mid-upload (SIGKILL, OOM) never ran its abort: its partial
        # is ours to remove, as we hold the job's lease and no other writer of these keys lives.
        # First of all: every way out below (a tenant erased meanwhile, a manifest an attempt
        # that lost its lease wrote) would otherwise leave it behind for good.
        swept = await self._target.discard_partials(akey) + await self._target.discard_partials(
            mkey
        )
        if swept:
            log.info("stale_partials_discarded", count=swept)
        # The tenant first, even for a retry whose earlier attempt wrote everything: an erase
        # may have run since, and its requests must not be answered with a backup of its data.
        async with self._uows(f"backup {tenant_id}") as uow:
            record = await uow.tenants.get(tenant_id)
        if record is None or record.status == TenantStatus.ERASED:
            raise PermanentError("unknown_tenant", tenant_id)
        if record.status == TenantStatus.ERASING and not operators_only:
            # Its data and key are about to go; only the erase's own archive is taken.
            raise PermanentError("erasing", tenant_id)
        if await self._target.exists(mkey):  # an earlier attempt finished but lost its lease
            return await self._from_manifest(mkey, akey)
        if await self._target.exists(akey):  # artifact without manifest: incomplete, redo
            await self._target.delete(akey)
        started = datetime.now(UTC)
        if operators_only:
            if not self._operators:
                raise PermanentError(
                    "archive_unavailable", "no TENANT_ERASE_ARCHIVE_RECIPIENTS configured"
                )
            recipients = list(self._operators)
        else:
            # The tenant's key alone: destroying it must make every copy unreadable.
            recipients = [await self._keyring.recipient(tenant_id)]
        # One snapshot shared with pg_dump: the exact row counts in the manifest describe
        # exactly the data in the artifact, whatever the tenant writes meanwhile; a table too
        # slow to count gets an estimate, listed apart (row_counts_estimated).
        async with self._snapshots.snapshot(record.schema_name) as snapshot:
            writer = await self._target.open_writer(akey)
            sent = 0

            async def sink(chunk: bytes) -> None:
                nonlocal sent
                await writer.write(chunk)
                sent += len(chunk)
                progress(sent)

            try:
                stats = await dump(
                    self._dsn,
                    record.schema_name,
                    recipients,
                    sink,
                    snapshot=snapshot.id,
                    zstd_level=self._zstd[0],
                    zstd_threads=self._zstd[1],
                    chunk_size=self._chunk,
                    rate_limit=self._rate,
                )
                await writer.commit()
            except BaseException:
                await asyncio.shield(writer.abort())  # a half-written artifact never stays
                raise
        manifest = {
            "tenant_id": tenant_id,
            "backup_id": backup_id,
            "schema": record.schema_name,
            "schema_version": record.schema_version,
            "started_at": started.isoformat(),
            "finished_at": (finished := datetime.now(UTC)).isoformat(),
            "bytes": stats.bytes,
            "sha256": stats.sha256,
            "pg_dump_version": await self._version(),
            "recipients": recipients,
            # Exact counts only: a restore drill compares these. Estimates are kept apart.
            "row_counts": snapshot.exact,
            "row_counts_estimated": snapshot.estimated,
            "format": "pg_dump custom (uncompressed) | zstd | age",
        }
        try:
            await self._target.put(mkey, json.dumps(manifest, indent=2).encode())
        except BaseException:
            await asyncio.shield(self._target.delete(akey))
            raise
        row = CatalogRow(
            backup_id,
            tenant_id,
            self._target.kind,
            self._target.uri(akey),
            akey,
            mkey,
            stats.bytes,
            stats.sha256,
            record.schema_version,
            started,
            finished,
            None,
            None,
        )
        result = BackupCompleted(
            tenant_id=tenant_id,
            backup_id=backup_id,
            uri=row.uri,
            bytes=stats.bytes,
            sha256=stats.sha256,
        )
        return result, row

    async def _from_manifest(self, mkey: str, akey: str) -> tuple[BackupCompleted, CatalogRow]:
        m = json.loads(b"".join([c async for c in self._target.read(mkey)]))
        row = CatalogRow(
            m["backup_id"],
            m["tenant_id"],
            self._target.kind,
            self._target.uri(akey),
            akey,
            mkey,
            m["bytes"],
            m["sha256"],
            m["schema_version"],
            datetime.fromisoformat(m["started_at"]),
            datetime.fromisoformat(m["finished_at"]),
            None,
            None,
        )
        return BackupCompleted(
            tenant_id=row.tenant_id,
            backup_id=row.backup_id,
            uri=row.uri,
            bytes=row.bytes,
            sha256=row.sha256,
        ), row

    async def expire(self, uow: UnitOfWork, tenant_id: str, plan: str) -> list[CatalogRow]:
        """Apply the plan's retention inside the caller's unit of work; returns rows dropped."""
        policy = self._retention.get(plan)
        if policy is None:
            return []
        rows = await uow.jobs.backups(tenant_id)
        gone = set(
            rules.expired(
                [rules.CatalogEntry(r.backup_id, r.finished_at) for r in rows],
                policy,
                datetime.now(UTC),
            )
        )
        if gone:
            await uow.jobs.forget(list(gone))
        return [r for r in rows if r.backup_id in gone]

    async def delete_artifacts(self, rows: list[CatalogRow]) -> None:
        for row in rows:
            try:
                await self._target.delete(row.artifact_key)
                await self._target.delete(row.manifest_key)
            except Exception as e:  # uncatalogued leftovers are harmless; say so and go on
                log.warning("expired_artifact_not_deleted", backup_id=row.backup_id, error=str(e))

    async def _version(self) -> str:
        if self._pg_dump_version is None:
            self._pg_dump_version = (await run(["pg_dump", "--version"])).decode().strip()
        return self._pg_dump_version

