"""Pure rules of the tenant service: no I/O, no asyncio, no drivers, no wire models."""

from domain.errors import PermanentError, TenantServiceError, TransientError
from domain.lifecycle import TenantStatus, can_transition
from domain.migrations import Migration, MigrationPlan, parse_migration_filename, plan_migrations
from domain.provisioning import Decision, ExistingTenant, decide_provisioning
from domain.tenant_ids import (
    InvalidTenantId,
    quote_ident,
    quote_literal,
    role_name,
    schema_name,
    validate_tenant_id,
)

__all__ = [
    "Decision",
    "ExistingTenant",
    "InvalidTenantId",
    "Migration",
    "MigrationPlan",
    "PermanentError",
    "TenantServiceError",
    "TenantStatus",
    "TransientError",
    "can_transition",
    "decide_provisioning",
    "parse_migration_filename",
    "plan_migrations",
    "quote_ident",
    "quote_literal",
    "role_name",
    "schema_name",
    "validate_tenant_id",
]
