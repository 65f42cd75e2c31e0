"""Names: every physical name of one deployment, derived from its namespace in one place.

Built from the settings (``Settings.names``) and handed to the adapters at the
edges: Kafka (topics, groups), PostgreSQL (control schema, application role, tenant schema/role
prefix, advisory locks, the API's read role; the restore role follows the control schema) and
Redis (key prefixes). Use cases keep speaking logical names.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from contracts.topics import Topics
from domain import namespaces

if TYPE_CHECKING:
    from adapters.postgres.tenant_metrics import PostgresTenantMetrics
    from adapters.postgres.tenant_store import PostgresTenantStore


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
    retention_lock_id: int
    warm_pool_lock_id: int
    catalog_upkeep_lock_id: int
    api_reader_role: str
    session_tag_prefix: str
    api_ratelimit_prefix: str

    @classmethod
    def of(
        cls,
        namespace: str,
        *,
        control_schema: str,
        outbox_lock_id: int,
        scheduler_lock_id: int,
        retention_lock_id: int = 7_311_020,
        warm_pool_lock_id: int = 7_311_040,
        catalog_upkeep_lock_id: int = 7_311_050,
        app_role: str = "tenant_app",
        api_reader_role: str = "tenant_api_reader",
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
            retention_lock_id=namespaces.lock_id(ns, retention_lock_id),
            warm_pool_lock_id=namespaces.lock_id(ns, warm_pool_lock_id),
            catalog_upkeep_lock_id=namespaces.lock_id(ns, catalog_upkeep_lock_id),
            api_reader_role=namespaces.api_reader_role(ns, api_reader_role),
            session_tag_prefix=namespaces.session_tag_prefix(ns),
            api_ratelimit_prefix=namespaces.api_ratelimit_prefix(ns),
        )

    @property
    def restore_role(self) -> str:
        """The restore login (adapters/postgres/restore_swap.py), named after the control schema."""
        from adapters.postgres.restore_swap import restore_role_name  # noqa: PLC0415

        return restore_role_name(self.control_schema)

    @property
    def reserved_tenant_ids(self) -> frozenset[str]:
        """Ids a tenant may not have: their names are this deployment's own objects."""
        own = (self.control_schema, self.app_role, self.api_reader_role, self.restore_role)
        return namespaces.reserved_tenant_ids(self.tenant_prefix, own)

    def tenant_store(self) -> "PostgresTenantStore":
        """The registry adapter with this deployment's names (schemas, roles, session tags)."""
        from adapters.postgres.tenant_store import PostgresTenantStore  # noqa: PLC0415

        return PostgresTenantStore(
            self.control_schema,
            self.app_role,
            tenant_prefix=self.tenant_prefix,
            session_tag_prefix=self.session_tag_prefix,
        )

    def tenant_metrics(self) -> "PostgresTenantMetrics":
        """The metrics adapter with this deployment's names (control schema, session tags)."""
        from adapters.postgres.tenant_metrics import PostgresTenantMetrics  # noqa: PLC0415

        return PostgresTenantMetrics(self.control_schema, self.session_tag_prefix)
