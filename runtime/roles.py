"""Worker roles: each wires its consumers and background loops onto a started Worker.

Adding a role is one builder here (or in its own module) and one entry in ROLE_BUILDERS.
"""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from adapters.kafka.dead_letters import KafkaDeadLetters
from adapters.migration_files import load_migrations
from adapters.postgres.parked_events import PostgresParkedEvents
from adapters.postgres.unit_of_work import PostgresStores, PostgresUnitOfWork, PostgresUnitOfWorks
from adapters.redis_keyspace import RedisTenantKeyspace
from api.server import api_role
from consumers import backups, provisioner
from consumers.redriver import Redriver
from migrations import TENANT_DIR
from producers.outbox_relay import OutboxRelay
from producers.retention import Retention
from runtime.backup_wiring import build_backup_parts
from runtime.roles_scheduling import metrics_role, scheduler_role
from service.backups import BackupRequests
from service.erasure import Eraser
from service.event_transaction import EventTransaction
from service.job_runner import JobRunner
from service.lifecycle import LifecycleService
from service.provisioning import ProvisioningService

if TYPE_CHECKING:
    from runtime.worker import Worker


class Background(Protocol):
    """A loop the worker runs beside its consumers; stop() asks it to finish its current step."""

    async def run(self) -> None: ...
    def stop(self) -> None: ...


RoleBuilder = Callable[["Worker"], Awaitable[list[Background]]]


def transaction(worker: "Worker", group: str) -> EventTransaction[PostgresUnitOfWork]:
    """The group's event transaction: units of work on the pool, with this deployment's names."""
    s = worker.settings
    stores = PostgresStores.of(s.names.control_schema, s.names.tenant_store(), worker.outbox)
    return EventTransaction(PostgresUnitOfWorks(worker.pool, stores), group)


async def provisioner_role(worker: "Worker") -> list[Background]:
    s = worker.settings
    service = ProvisioningService(
        transaction(worker, provisioner.GROUP),
        load_migrations(TENANT_DIR),
        plans=s.plans,
        max_tenants=s.max_tenants,
        source=s.source,
    )
    lifecycle = LifecycleService(
        transaction(worker, provisioner.GROUP),
        load_migrations(TENANT_DIR),
        migration_lock_timeout_ms=s.migration_lock_timeout_ms,
        migration_statement_timeout_ms=s.migration_statement_timeout_ms,
        source=s.source,
    )
    parking = PostgresParkedEvents(worker.pool, s.names.control_schema)
    delivery = provisioner.register(
        worker.broker, s, service, lifecycle, KafkaDeadLetters(worker.publisher), parking,
        batches=transaction(worker, provisioner.GROUP).batch,
    )
    worker.deliveries.append(delivery)
    return [Redriver(delivery, s.parked_poll_s)]


async def relay_role(worker: "Worker") -> list[Background]:
    # Pruning rides with the relay (every deployment runs one) under a lock of its own.
    return [
        OutboxRelay(worker.settings, worker.pool, worker.outbox, worker.publisher),
        Retention(worker.settings, worker.pool),
    ]


async def backup_role(worker: "Worker") -> list[Background]:
    s = worker.settings
    parts = await build_backup_parts(s, worker.pool)
    worker.closers.append(parts.target.close)
    requests = BackupRequests(transaction(worker, backups.GROUP), s.source)
    delivery = backups.register(
        worker.broker,
        s,
        requests,
        KafkaDeadLetters(worker.publisher),
        PostgresParkedEvents(worker.pool, s.names.control_schema),
    )
    worker.deliveries.append(delivery)
    # A job in flight at shutdown is cancelled: its partial artifact is aborted, its lease
    # lapses, and another runner (or this one after a restart) takes it again.
    return [
        Redriver(delivery, s.parked_poll_s),
        JobRunner(
            pool=worker.pool,
            jobs=parts.jobs,
            outbox=worker.outbox,
            store=parts.store,
            taker=parts.taker,
            restorer=parts.restorer,
            eraser=Eraser(
                uows=transaction(worker, backups.GROUP).uows,
                keyspace=RedisTenantKeyspace(worker.redis, prefix=s.names.redis_prefix),
                taker=parts.taker,
                drop_batch=s.erase_drop_batch,
            ),
            lease_s=s.backup_lease_s,
            poll_s=s.backup_poll_interval_s,
            max_attempts=s.backup_max_attempts,
            retry_base_s=s.backup_retry_base_s,
            retry_max_s=s.backup_retry_max_s,
            source=s.source,
        ),
    ]


ROLE_BUILDERS: dict[str, RoleBuilder] = {
    "provisioner": provisioner_role,
    "relay": relay_role,
    "backup": backup_role,
    "scheduler": scheduler_role,
    "metrics": metrics_role,
    "api": api_role,
}
