"""Worker roles: each builder takes the shared resources and returns the role's parts.

Adding a role is one builder here (or in its own module) and one entry in ROLE_BUILDERS.
"""

from collections.abc import Awaitable, Callable

from adapters.kafka.dead_letters import KafkaDeadLetters
from adapters.migration_files import load_migrations
from adapters.postgres.backup_jobs import PostgresBackupJobs
from adapters.postgres.inbox import PostgresInbox
from adapters.postgres.parked_events import PostgresParkedEvents
from consumers import backups, provisioner
from consumers.redriver import Redriver
from migrations import TENANT_DIR
from producers.outbox_relay import OutboxRelay
from producers.retention import Retention
from runtime.backup_wiring import build_backup_parts
from runtime.bootstrap import Resources, RoleParts
from runtime.roles_api import api_role
from runtime.roles_scheduling import metrics_role, scheduler_role
from service.backups import BackupRequests
from service.erasure import Eraser
from service.event_transaction import EventTransaction
from service.job_runner import JobRunner
from service.lifecycle import LifecycleService
from service.provisioning import ProvisioningService

RoleBuilder = Callable[[Resources], Awaitable[RoleParts]]


def transaction(res: Resources, group: str) -> EventTransaction:
    s = res.settings
    return EventTransaction(res.pool, PostgresInbox(s.names.control_schema), res.outbox, group)


async def provisioner_role(res: Resources) -> RoleParts:
    s = res.settings
    service = ProvisioningService(
        transaction(res, provisioner.GROUP),
        s.names.tenant_store(),
        load_migrations(TENANT_DIR),
        plans=s.plans,
        max_tenants=s.max_tenants,
        source=s.source,
    )
    lifecycle = LifecycleService(
        transaction(res, provisioner.GROUP),
        s.names.tenant_store(),
        PostgresBackupJobs(s.names.control_schema),
        load_migrations(TENANT_DIR),
        control_schema=s.names.control_schema,
        migration_lock_timeout_ms=s.migration_lock_timeout_ms,
        migration_statement_timeout_ms=s.migration_statement_timeout_ms,
        source=s.source,
    )
    parking = PostgresParkedEvents(res.pool, s.names.control_schema)
    delivery = provisioner.register(
        res.broker, s, service, lifecycle, KafkaDeadLetters(res.publisher), parking
    )
    return RoleParts(deliveries=(delivery,), background=(Redriver(delivery, s.parked_poll_s),))


async def relay_role(res: Resources) -> RoleParts:
    # Pruning rides with the relay (every deployment runs one) under a lock of its own.
    return RoleParts(
        background=(
            OutboxRelay(res.settings, res.pool, res.outbox, res.publisher),
            Retention(res.settings, res.pool),
        )
    )


async def backup_role(res: Resources) -> RoleParts:
    s = res.settings
    parts = await build_backup_parts(s, res.pool)
    requests = BackupRequests(transaction(res, backups.GROUP), parts.store, parts.jobs, s.source)
    delivery = backups.register(
        res.broker,
        s,
        requests,
        KafkaDeadLetters(res.publisher),
        PostgresParkedEvents(res.pool, s.names.control_schema),
    )
    # A job in flight at shutdown is cancelled: its partial artifact is aborted, its lease
    # lapses, and another runner (or this one after a restart) takes it again.
    runner = JobRunner(
        pool=res.pool,
        jobs=parts.jobs,
        outbox=res.outbox,
        store=parts.store,
        taker=parts.taker,
        restorer=parts.restorer,
        eraser=Eraser(
            pool=res.pool,
            store=parts.store,
            jobs=parts.jobs,
            keys=parts.keys,
            taker=parts.taker,
            redis=res.redis,
            drop_batch=s.erase_drop_batch,
            redis_prefix=s.names.redis_prefix,
        ),
        lease_s=s.backup_lease_s,
        poll_s=s.backup_poll_interval_s,
        max_attempts=s.backup_max_attempts,
        retry_base_s=s.backup_retry_base_s,
        retry_max_s=s.backup_retry_max_s,
        source=s.source,
    )
    return RoleParts(
        deliveries=(delivery,),
        background=(Redriver(delivery, s.parked_poll_s), runner),
        closers=(parts.target.close,),
    )


ROLE_BUILDERS: dict[str, RoleBuilder] = {
    "provisioner": provisioner_role,
    "relay": relay_role,
    "backup": backup_role,
    "scheduler": scheduler_role,
    "metrics": metrics_role,
    "api": api_role,
}
