"""Consumer group ``tenant-backup`` on ``tenants.backups``: requests become leased jobs."""

from faststream.kafka import KafkaBroker

from consumers.delivery import DeadLetters, Delivery, RetryPolicy
from consumers.subscriptions import subscribe
from contracts import events, topics
from runtime.settings import Settings
from service.backups import BackupRequests

GROUP = topics.BACKUP_GROUP


def register(
    broker: KafkaBroker, settings: Settings, requests: BackupRequests, dead_letters: DeadLetters
) -> Delivery:
    delivery = Delivery(
        group=GROUP,
        handlers={
            events.BackupDue: requests.backup_due,
            events.RestoreRequested: requests.restore_requested,
        },
        dead_letters=dead_letters,
        retry=RetryPolicy.from_settings(settings),
        max_message_bytes=settings.max_message_bytes,
        commit_interval_s=settings.kafka_commit_interval_ms / 1000,
    )
    subscribe(
        broker,
        settings,
        topic=topics.BACKUPS,
        delivery=delivery,
        description="BackupDue / RestoreRequested -> leased job -> BackupCompleted / RestoreCompleted",
    )
    return delivery
