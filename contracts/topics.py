"""Topic names and the partition-key rule: the only place topic strings appear."""

from typing import Final

LIFECYCLE: Final = "tenants.lifecycle"
BACKUPS: Final = "tenants.backups"
METRICS: Final = "tenants.metrics"
EVENTS: Final = "tenants.events"
DLQ: Final = "tenants.dlq"

ALL_TOPICS: Final = (LIFECYCLE, BACKUPS, METRICS, EVENTS, DLQ)

# Consumer groups, one per role (never shared between subscribers: faststream #1090).
PROVISIONER_GROUP: Final = "tenant-provisioner"
BACKUP_GROUP: Final = "tenant-backup"
METRICS_GROUP: Final = "tenant-metrics"
# Its committed offsets on tenants.dlq mark what `tenantctl dlq replay --all` already replayed.
DLQ_REPLAY_GROUP: Final = "tenantctl-dlq-replay"


def partition_key(tenant_id: str) -> bytes:
    """Every event about a tenant is keyed by its id, so one partition orders all of them."""
    return tenant_id.encode("utf-8")
