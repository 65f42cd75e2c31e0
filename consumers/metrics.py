"""Consumer group ``tenant-metrics`` on ``tenants.metrics``: one tick collects every tenant."""

from faststream.kafka import KafkaBroker

from consumers.delivery import DeadLetters, Delivery, RetryPolicy
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
    delivery = Delivery(
        group=GROUP,
        handlers={events.MetricsDue: collection.metrics_due},
        dead_letters=dead_letters,
        retry=RetryPolicy.from_settings(settings),
        max_message_bytes=settings.max_message_bytes,
        commit_interval_s=settings.kafka_commit_interval_ms / 1000,
    )
    subscribe(
        broker,
        settings,
        topic=topics.METRICS,
        delivery=delivery,
        description="MetricsDue -> figures of every tenant -> TenantMetricsCollected per tenant",
    )
    return delivery
