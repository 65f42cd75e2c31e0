"""Worker roles: each builder takes the shared resources and returns the role's parts.

Adding a role is one builder here (or in its own module) and one entry in ROLE_BUILDERS.
"""

from collections.abc import Awaitable, Callable

from adapters.kafka.dead_letters import KafkaDeadLetters
from adapters.migration_files import load_migrations
from adapters.postgres.catalog_upkeep import PostgresCatalogUpkeep
from adapters.postgres.job_leases import PostgresJobLeases
from adapters.postgres.parked_events import PostgresParkedEvents
from adapters.postgres.retention import PostgresRetention
from adapters.postgres.unit_of_work import PostgresStores, PostgresUnitOfWork, PostgresUnitOfWorks
from adapters.postgres.warm_pool import PostgresWarmPool
from adapters.redis_keyspace import RedisTenantKeyspace
from consumers import backups, provisioner
from consumers.redriver import Redriver
from migrations import TENANT_DIR
from producers.catalog_upkeep import CatalogUpkeep
from producers.outbox_relay import OutboxRelay
from producers.retention import Retention
from producers.warm_pool_refill import WarmPoolRefill
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


def transaction(
    res: Resources, group: str, warm_pool: PostgresWarmPool | None = None
) -> EventTransaction[PostgresUnitOfWork]:
    """The group's event transaction: units of work on the pool, with this deployment's names."""
    s = res.settings
    stores = PostgresStores.of(s.names.control_schema, s.names.tenant_store(), res.outbox, warm_pool)
    return EventTransaction(PostgresUnitOfWorks(res.pool, stores), group)


async def provisioner_role(res: Resources) -> RoleParts:
    s = res.settings
    warm_pool = (
        PostgresWarmPool(
            s.names.control_schema, s.names.tenant_store(), load_migrations(TENANT_DIR)
        )
        if s.warm_pool_size
        else None
    )
    # One event transaction for the group: a batch's unit of work is the one both use cases see.
    tx = transaction(res, provisioner.GROUP, warm_pool)
    service = ProvisioningService(
        tx,
        load_migrations(TENANT_DIR),
        plans=s.plans,
        max_tenants=s.max_tenants,
        source=s.source,
        reserved_ids=s.names.reserved_tenant_ids,
    )
    lifecycle = LifecycleService(
        tx,
        load_migrations(TENANT_DIR),
        migration_lock_timeout_ms=s.migration_lock_timeout_ms,
        migration_statement_timeout_ms=s.migration_statement_timeout_ms,
        source=s.source,
    )
    parking = PostgresParkedEvents(res.pool, s.names.control_schema)
    delivery = provisioner.register(
        res.broker, s, service, lifecycle, KafkaDeadLetters(res.publisher), parking,
        batches=tx.batch,
    )
    refill = (WarmPoolRefill(s, res.pool, warm_pool),) if warm_pool is not None else ()
    # The provisioners' DDL is what bloats the catalogues: their leader vacuums them.
    upkeep = (
        (CatalogUpkeep(s, res.pool, PostgresCatalogUpkeep()),)
        if s.catalog_upkeep_interval_s
        else ()
    )
    return RoleParts(
        deliveries=(delivery,),
        background=(Redriver(delivery, s.parked_poll_s), *refill, *upkeep),
    )


async def relay_role(res: Resources) -> RoleParts:
    # Pruning rides with the relay (every deployment runs one) under a lock of its own.
    s = res.settings
    return RoleParts(
        background=(
            OutboxRelay(s, res.pool, res.outbox, res.publisher),
            Retention(s, res.pool, PostgresRetention(s.names.control_schema)),
        )
    )


async def backup_role(res: Resources) -> RoleParts:
    s = res.settings
    parts = await build_backup_parts(s, res.pool)
    requests = BackupRequests(transaction(res, backups.GROUP), s.source)
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
        uows=transaction(res, backups.GROUP).uows,
        leases=PostgresJobLeases(res.pool, parts.jobs),
        taker=parts.taker,
        restorer=parts.restorer,
        eraser=Eraser(
            uows=transaction(res, backups.GROUP).uows,
            keyspace=RedisTenantKeyspace(res.redis, prefix=s.names.redis_prefix),
            taker=parts.taker,
            drop_batch=s.erase_drop_batch,
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
