"""Names: every physical name of one deployment, derived from its namespace in one place.

Built once per process from the settings (``Settings.names``) and handed to the adapters at the
edges: Kafka (topics, groups), PostgreSQL (control schema, application role, tenant schema/role
prefix, advisory locks) and Redis (key prefix). Use cases keep speaking logical names.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from contracts.topics import Topics
from domain import namespaces

if TYPE_CHECKING:
    from runtime.settings import Settings


@dataclass(frozen=True)
class Names:
    namespace: str
    topics: Topics
    control_schema: str
    app_role: str
    tenant_prefix: str
    redis_prefix: str
    outbox_lock_id: int
    scheduler_lock_id: int

    @classmethod
    def of(
        cls,
        namespace: str,
        *,
        control_schema: str,
        outbox_lock_id: int,
        scheduler_lock_id: int,
        app_role: str = "tenant_app",
    ) -> "Names":
        ns = namespaces.validate_namespace(namespace)
        return cls(
            namespace=ns,
            topics=Topics(ns),
            control_schema=namespaces.control_schema(ns, control_schema),
            app_role=namespaces.app_role(ns, app_role),
            tenant_prefix=namespaces.tenant_prefix(ns),
            redis_prefix=namespaces.redis_prefix(ns),
            outbox_lock_id=namespaces.lock_id(ns, outbox_lock_id),
            scheduler_lock_id=namespaces.lock_id(ns, scheduler_lock_id),
        )

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Names":
        return cls.of(
            settings.namespace,
            control_schema=settings.control_schema,
            app_role=settings.app_role,
            outbox_lock_id=settings.outbox_lock_id,
            scheduler_lock_id=settings.scheduler_lock_id,
        )
