"""Topic names and the partition-key rule: the only place topic strings appear.

The constants are LOGICAL names: what the code and the event classes speak. A deployment's
PHYSICAL names (what Kafka sees) come from ``Topics``, built once from its namespace
(TENANT_NAMESPACE); with no namespace they are the logical names exactly.
"""

from dataclasses import dataclass
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

# Every group of ours: each is namespaced like the topics (two deployments never share one).
ALL_GROUPS: Final = (PROVISIONER_GROUP, BACKUP_GROUP, METRICS_GROUP, DLQ_REPLAY_GROUP)


def partition_key(tenant_id: str) -> bytes:
    """Every event about a tenant is keyed by its id, so one partition orders all of them."""
    return tenant_id.encode("utf-8")


@dataclass(frozen=True)
class Topics:
    """One deployment's physical topic and consumer-group names.

    Topics are ``<namespace>.<logical>``, groups ``<namespace>-<logical>`` (the separators Kafka
    names already use); an empty namespace maps every name to itself. The namespace is validated
    by the settings (domain.namespaces) before it gets here.
    """

    namespace: str = ""

    def topic(self, logical: str) -> str:
        """The physical name of one of ALL_TOPICS; any other name (already physical, or a
        topic that is not ours) passes through unchanged."""
        if not self.namespace or logical not in ALL_TOPICS:
            return logical
        return f"{self.namespace}.{logical}"

    def group(self, logical: str) -> str:
        """The physical consumer group of one of ALL_GROUPS."""
        if not self.namespace or logical not in ALL_GROUPS:
            return logical
        return f"{self.namespace}-{logical}"

    def logical(self, physical: str) -> str:
        """The logical name of one of this deployment's topics (unchanged if it is not one)."""
        for name in ALL_TOPICS:
            if self.topic(name) == physical:
                return name
        return physical

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(self.topic(t) for t in ALL_TOPICS)

    @property
    def lifecycle(self) -> str:
        return self.topic(LIFECYCLE)

    @property
    def backups(self) -> str:
        return self.topic(BACKUPS)

    @property
    def metrics(self) -> str:
        return self.topic(METRICS)

    @property
    def events(self) -> str:
        return self.topic(EVENTS)

    @property
    def dlq(self) -> str:
        return self.topic(DLQ)
