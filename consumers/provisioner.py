"""Consumer group ``tenant-provisioner`` on ``tenants.lifecycle``."""

from faststream.kafka import KafkaBroker

from consumers.delivery import DeadLetters, Delivery, RetryPolicy
from consumers.subscriptions import subscribe
from contracts import events, topics
from runtime.settings import Settings
from service.provisioning import ProvisioningService

GROUP = topics.PROVISIONER_GROUP


def register(
    broker: KafkaBroker, settings: Settings, service: ProvisioningService,
    dead_letters: DeadLetters,
) -> Delivery:
    delivery = Delivery(
        group=GROUP,
        handlers={events.TenantRequested: service.handle},
        dead_letters=dead_letters,
        retry=RetryPolicy.from_settings(settings),
        max_message_bytes=settings.max_message_bytes,
    )
    subscribe(
        broker,
        settings,
        topic=topics.LIFECYCLE,
        delivery=delivery,
        description="TenantRequested -> tenant schema, role, RLS, registry row -> TenantProvisioned",
    )
    return delivery
