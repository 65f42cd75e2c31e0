"""tenantctl's backup, restore and drill operations."""

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from adapters.age_keys import PostgresTenantKeys
from adapters.kafka.event_reader import EventReader
from adapters.postgres.backup_jobs import PostgresBackupJobs
from adapters.postgres.pool import create_pool
from contracts import codec
from contracts.envelope import Envelope
from contracts.events import BackupDue, Event, RestoreRequested
from domain.job_ids import backup_id_for, restore_job_id
from runtime.backup_wiring import build_backup_parts
from runtime.settings import Settings
from tenantctl.dlq_ops import DeadLettered, DeadLetterWatch
from tenantctl.ops import CLI_SOURCE, first_result, publish_event
from tenantctl.output import CliError, NotFound


async def _request(
    settings: Settings, event: Event, job_id_of: Any, wait: bool, timeout: float, console: Console
) -> tuple[Envelope, Envelope | DeadLettered | None]:
    envelope = codec.envelope_for(event, source=CLI_SOURCE)
    if not wait:
        await publish_event(settings, envelope)
        return envelope, None
    async with EventReader(settings.kafka) as reader, DeadLetterWatch(settings) as dead_letters:
        await publish_event(settings, envelope)
        result = asyncio.create_task(first_result(reader, envelope.id, timeout, dead_letters))
        await _show_progress(settings, envelope.id, job_id_of(envelope.id), result, console)
        return envelope, await result


async def _show_progress(
    settings: Settings, cause_id: str, job_id: str, result: "asyncio.Task[Any]", console: Console
) -> None:
    """A live line with the job's state and bytes written, until the result arrives.

    ``job_id`` is the job the request makes; a backup request that rode on a job already
    waiting (see PostgresBackupJobs.add_backup) follows that job instead."""
    jobs = PostgresBackupJobs(settings.names.control_schema)
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            line = progress.add_task(f"{job_id}: waiting")
            while not result.done():
                job = await jobs.job(conn, job_id)
                if job is None and (host := await jobs.job_answering(conn, cause_id)):
                    job_id = host
                    job = await jobs.job(conn, job_id)
                if job:
                    progress.update(
                        line,
                        description=(
                            f"{job_id}: {job['status']} attempt {job['attempts']}"
                            f" {job['progress_bytes'] / 1e6:.1f} MB written"
                        ),
                    )
                await asyncio.wait([result], timeout=0.5)
    finally:
        await conn.close()


async def request_backup(
    settings: Settings, tenant_id: str, wait: bool, timeout: float, console: Console
) -> tuple[Envelope, Envelope | DeadLettered | None]:
    return await _request(
        settings,
        BackupDue(tenant_id=tenant_id, trigger="manual"),
        backup_id_for,
        wait,
        timeout,
        console,
    )


async def request_restore(
    settings: Settings, tenant_id: str, backup_id: str, wait: bool, timeout: float, console: Console
) -> tuple[Envelope, Envelope | DeadLettered | None]:
    return await _request(
        settings,
        RestoreRequested(tenant_id=tenant_id, backup_id=backup_id),
        restore_job_id,
        wait,
        timeout,
        console,
    )


async def list_backups(settings: Settings, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's catalogue, newest first; NotFound for a tenant the registry does not know."""
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        store = settings.names.tenant_store()
        if await store.get(conn, tenant_id) is None:
            raise NotFound(f"unknown tenant {tenant_id!r}")
        rows = await PostgresBackupJobs(settings.names.control_schema).backups(conn, tenant_id)
        return [dataclasses.asdict(r) for r in rows]
    finally:
        await conn.close()


async def drill(settings: Settings, tenant_id: str, backup_id: str) -> dict[str, object]:
    pool = await create_pool(settings.pg_pool, max_size=2)
    try:
        parts = await build_backup_parts(settings, pool)
        if parts.restorer is None:
            raise CliError("a drill decrypts backups: set TENANT_BACKUP_MASTER_IDENTITY_FILE")
        try:
            return await parts.restorer.drill(tenant_id, backup_id)
        finally:
            await parts.target.close()
    finally:
        await pool.close()


async def rotate_master(
    settings: Settings, identity_file: Path, new_recipient: str, console: Console
) -> int:
    """Re-wrap every tenant key to ``new_recipient`` (one transaction), with a progress bar."""
    keys = PostgresTenantKeys(settings.names.control_schema, new_recipient)
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        with Progress(*Progress.get_default_columns(), console=console) as bar:
            task = bar.add_task("re-wrapping tenant keys", total=None)
            return await keys.rotate_master(
                conn,
                identity_file,
                new_recipient,
                lambda done, total: bar.update(task, completed=done, total=total),
            )
    finally:
        await conn.close()
