"""tenantctl's lifecycle commands: deactivate, reactivate, erase, and migration rollouts."""

import asyncio
import uuid
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adapters.kafka.event_reader import EventReader
from adapters.migration_files import load_migrations
from contracts import codec
from contracts.envelope import Envelope
from contracts.events import Event, TenantMigrationDue
from contracts.publish import record_of
from domain.migrations import plan_migrations, rollout_id_for
from domain.tenant_ids import quote_ident
from migrations import TENANT_DIR
from runtime.settings import Settings
from tenantctl.ops import CLI_SOURCE, DeadLettered, publish_and_wait
from tenantctl.output import CliError, NotFound


async def request(
    settings: Settings, event: Event, wait: bool, timeout: float
) -> tuple[Envelope, Envelope | DeadLettered | None]:
    return await publish_and_wait(
        settings, codec.envelope_for(event, source=CLI_SOURCE), wait, timeout
    )


def target_version(target: int | None) -> int:
    """The rollout's goal; a version with no migration file is NotFound."""
    latest = len(load_migrations(TENANT_DIR))
    if target is not None and not 1 <= target <= latest:
        raise NotFound(f"no tenant migration {target}: versions are 1..{latest}")
    return plan_migrations(load_migrations(TENANT_DIR), 0, target).target


async def rollout(
    settings: Settings,
    console: Console,
    target: int | None,
    canary: int,
    max_failures: int,
    timeout: float,
) -> dict[str, Any]:
    """Publish TenantMigrationDue for every tenant below the target and follow the results.

    The tenants to migrate come from one registry query on schema_version: tenants already at
    the target cost nothing. Canary tenants go first; the rest wait for their success. Past
    ``max_failures`` the rollout is marked halted, and tenants still queued answer
    TenantMigrationFailed{rollout_halted} without being touched. Re-running resumes.
    """
    goal = target_version(target)
    rollout_id = rollout_id_for(goal, uuid.uuid4().hex)
    schema = quote_ident(settings.names.control_schema)
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        rows = await conn.fetch(
            f"SELECT tenant_id FROM {schema}.tenants WHERE status IN ('active', 'suspended')"
            " AND schema_version < $1 ORDER BY created_at, tenant_id",
            goal,
        )
        tenants = [r["tenant_id"] for r in rows]
        summary: dict[str, Any] = {
            "rollout_id": rollout_id,
            "target": goal,
            "tenants": len(tenants),
            "migrated": 0,
            "failed": 0,
        }
        if not tenants:
            ahead = await conn.fetchval(
                f"SELECT count(*) FROM {schema}.tenants WHERE status <> 'erased'"
                " AND schema_version > $1",
                goal,
            )
            if ahead:  # a lower target is not a downgrade: say so rather than "0 tenants"
                raise CliError(
                    f"{ahead} tenant(s) are past version {goal}; migrations only go forward"
                )
            return summary
        await conn.execute(
            f"INSERT INTO {schema}.migration_rollouts (rollout_id, target_version, canary,"
            " max_failures) VALUES ($1, $2, $3, $4)",
            rollout_id,
            goal,
            canary,
            max_failures,
        )
        waves = [tenants[:canary], tenants[canary:]] if canary else [tenants]
        async with EventReader(settings.kafka) as reader:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                bar = progress.add_task(f"migrating to v{goal}", total=len(tenants))
                for number, wave in enumerate(w for w in waves if w):
                    await _publish_wave(settings, wave, goal, rollout_id)
                    ok = await _follow(
                        reader, set(wave), rollout_id, summary, max_failures, progress, bar, timeout
                    )
                    if not ok:
                        await conn.execute(
                            f"UPDATE {schema}.migration_rollouts SET status = 'halted',"
                            " updated_at = now() WHERE rollout_id = $1",
                            rollout_id,
                        )
                        summary["halted"] = (
                            "canary failed"
                            if canary and number == 0
                            else (f"more than {max_failures} failures")
                        )
                        return summary
        await conn.execute(
            f"UPDATE {schema}.migration_rollouts SET status = 'done',"
            " updated_at = now() WHERE rollout_id = $1",
            rollout_id,
        )
        return summary
    finally:
        await conn.close()


async def _publish_wave(settings: Settings, tenants: list[str], goal: int, rollout_id: str) -> None:
    from adapters.kafka.producer import KafkaEventPublisher

    publisher = KafkaEventPublisher(settings.kafka, client_id="tenantctl")
    await publisher.start()
    try:
        batch = [
            codec.envelope_for(
                TenantMigrationDue(tenant_id=tenant_id, target_version=goal, rollout_id=rollout_id),
                source=CLI_SOURCE,
            )
            for tenant_id in tenants
        ]
        await publisher.publish_many([record_of(env).message for env in batch])
    finally:
        await publisher.stop()


async def _follow(
    reader: EventReader,
    waiting: set[str],
    rollout_id: str,
    summary: dict[str, Any],
    max_failures: int,
    progress: Progress,
    bar: Any,
    timeout: float,
) -> bool:
    async def scan() -> bool:
        async for env in reader:
            if env.data.get("rollout_id") != rollout_id or env.subject not in waiting:
                continue
            waiting.discard(env.subject)
            if env.type == "TenantMigrated":
                summary["migrated"] += 1
            else:
                summary["failed"] += 1
                summary.setdefault("failures", {})[env.subject] = env.data.get("reason")
            progress.advance(bar)
            if summary["failed"] > max_failures:
                return False
            if not waiting:
                return True
        return False

    try:
        return await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        summary["timed_out"] = sorted(waiting)
        return False
