"""PostgreSQL adapters: pool, control schema, inbox/outbox, tenant store."""

from adapters.postgres.errors import translated
from adapters.postgres.pool import create_pool

__all__ = ["create_pool", "translated"]
