"""The warm pool as provisioning sees it (a port): a tenant made from a pre-made schema.

The adapter is adapters/postgres/warm_pool.py; the rules (names, refill) are domain/warm_pool.py.
"""

from typing import Protocol

import asyncpg

from adapters.postgres.tenant_store import TenantRecord


class WarmPool(Protocol):
    async def claim(
        self, conn: asyncpg.Connection, tenant_id: str, plan: str
    ) -> TenantRecord | None:
        """In the caller's transaction (under the tenant's lock, in the DDL savepoint): the
        tenant made from a pooled schema, registry row written exactly as a creation writes it,
        at the latest template version; None when the pool has none to give (the caller then
        creates the tenant). Two concurrent claims never take the same schema."""
        ...


class NoWarmPool:
    """The pool is off (TENANT_WARM_POOL_SIZE=0): every tenant is created."""

    async def claim(
        self, conn: asyncpg.Connection, tenant_id: str, plan: str
    ) -> TenantRecord | None:
        return None
