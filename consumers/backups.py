"""Consumer group ``tenant-backup`` on ``tenants.backups``: requests become leased jobs."""

from faststream.kafka import KafkaBroker

from consumers.delivery import DeadLetters, Delivery
from consumers.parking import ParkedEvents
from consumers.subscriptions import subscribe
from contracts import events, topics
from runtime.settings import Settings
from service.backups import BackupRequests

GROUP = topics.BACKUP_GROUP


def register(
    broker: KafkaBroker,
    settings: Settings,
    requests: BackupRequests,
    dead_letters: DeadLetters,
    parking: ParkedEvents | None = None,
) -> Delivery:
    return subscribe(
        broker,
        settings,
        group=GROUP,
        topic=topics.BACKUPS,
        handlers={
            events.BackupDue: requests.backup_due,
            events.RestoreRequested: requests.restore_requested,
        },
        dead_letters=dead_letters,
        parking=parking,
        description="BackupDue / RestoreRequested -> leased job -> BackupCompleted / RestoreCompleted",
    )
