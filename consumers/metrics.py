"""Consumer group ``tenant-metrics`` on ``tenants.metrics``: one tick collects every tenant."""

from faststream.kafka import KafkaBroker

from consumers.delivery import DeadLetters, Delivery
from consumers.subscriptions import subscribe
from contracts import events, topics
from runtime.settings import Settings
from service.metrics_collection import MetricsCollection

GROUP = topics.METRICS_GROUP


def register(
    broker: KafkaBroker,
    settings: Settings,
    collection: MetricsCollection,
    dead_letters: DeadLetters,
) -> Delivery:
    return subscribe(
        broker,
        settings,
        group=GROUP,
        topic=topics.METRICS,
        handlers={events.MetricsDue: collection.metrics_due},
        dead_letters=dead_letters,
        description="MetricsDue -> figures of every tenant -> TenantMetricsCollected per tenant",
    )
