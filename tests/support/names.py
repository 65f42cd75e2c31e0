"""The test session's names: the suite runs in a namespace of its own (tests/conftest.py sets a
fresh TENANT_NAMESPACE per session), so tests name the control schema, tenant schemas and Redis
keys through here, never as literals. Lazy: importing this module reads nothing."""

import functools
from typing import Any

from adapters.postgres.tenant_store import PostgresTenantStore
from domain.tenant_ids import schema_name
from runtime.names import Names
from runtime.settings import load_settings


@functools.cache
def names() -> Names:
    return load_settings().names


def tenant(tenant_id: str) -> str:
    """The tenant's schema (and role) name in the session's namespace."""
    return schema_name(tenant_id, names().tenant_prefix)


def __getattr__(attr: str) -> Any:
    # CONTROL: the control schema ([a-z0-9_] only: safe unquoted in test SQL); REDIS: the
    # tenants' Redis key prefix ("<ns>:tenant:").
    if attr == "CONTROL":
        return names().control_schema
    if attr == "REDIS":
        return names().redis_prefix
    raise AttributeError(attr)


def session_tag(tenant_id: str) -> str:
    """The application_name of the tenant's connections in the session's namespace."""
    return names().session_tag_prefix + tenant_id


def tenant_store() -> PostgresTenantStore:
    """The registry adapter as the session's workers build it."""
    return names().tenant_store()
