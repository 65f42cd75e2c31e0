"""Consumer group ``tenant-provisioner`` on ``tenants.lifecycle``."""

from faststream.kafka import KafkaBroker

from consumers.batch_delivery import Batches
from consumers.delivery import DeadLetters, Delivery
from consumers.parking import ParkedEvents
from consumers.subscriptions import subscribe
from contracts import events, topics
from runtime.settings import Settings
from service.lifecycle import LifecycleService
from service.provisioning import ProvisioningService

GROUP = topics.PROVISIONER_GROUP


def register(
    broker: KafkaBroker,
    settings: Settings,
    service: ProvisioningService,
    lifecycle: LifecycleService,
    dead_letters: DeadLetters,
    parking: ParkedEvents | None = None,
    batches: Batches | None = None,
) -> Delivery:
    return subscribe(
        broker,
        settings,
        group=GROUP,
        topic=topics.LIFECYCLE,
        # One group for the whole lifecycle topic: per-tenant order holds across these types.
        handlers={
            events.TenantRequested: service.handle,
            events.TenantDeactivated: lifecycle.deactivated,
            events.TenantReactivated: lifecycle.reactivated,
            events.TenantEraseRequested: lifecycle.erase_requested,
            events.TenantMigrationDue: lifecycle.migration_due,
        },
        dead_letters=dead_letters,
        parking=parking,
        batches=batches,
        # Effects that can share a transaction (a savepoint each). A migration's time limits
        # bound its own savepoint only, so a rollout's commits are shared by many tenants.
        batchable=frozenset(
            {
                events.TenantRequested,
                events.TenantDeactivated,
                events.TenantReactivated,
                events.TenantEraseRequested,
                events.TenantMigrationDue,
            }
        ),
        description="Tenant lifecycle: provision, suspend, resume, erase (as a job), migrate",
    )
