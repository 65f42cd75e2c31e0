"""Tenant id rules and the names derived from them.

A tenant id becomes part of a schema and a role name, so it is validated here once and every
derived identifier is still quoted when it reaches SQL (defence in depth).
"""

import re

TENANT_ID_MAX_LENGTH = 40
TENANT_ID_PATTERN = re.compile(rf"^[a-z][a-z0-9_]{{2,{TENANT_ID_MAX_LENGTH - 1}}}$")
NAME_PREFIX = "tenant_"
# PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes; two ids that truncate alike
# would share a schema, so we refuse to derive such names at all.
PG_MAX_IDENTIFIER_BYTES = 63


class InvalidTenantId(ValueError):
    """The tenant id does not match the allowed pattern."""

    reason = "invalid_tenant_id"


def validate_tenant_id(tenant_id: str) -> str:
    """Return the id unchanged if it is a valid tenant id, else raise InvalidTenantId."""
    if not isinstance(tenant_id, str) or not TENANT_ID_PATTERN.fullmatch(tenant_id):
        raise InvalidTenantId(f"tenant id must match {TENANT_ID_PATTERN.pattern}")
    return tenant_id


def _derived(tenant_id: str, prefix: str) -> str:
    # prefix: NAME_PREFIX, or a deployment's (domain.namespaces.tenant_prefix), never input
    name = prefix + validate_tenant_id(tenant_id)
    if (
        len(name.encode()) > PG_MAX_IDENTIFIER_BYTES
    ):  # unreachable with the patterns of ids and namespaces; kept as a guard
        raise InvalidTenantId("derived identifier longer than 63 bytes")
    return name


def schema_name(tenant_id: str, prefix: str = NAME_PREFIX) -> str:
    """The tenant's schema: ``tenant_<id>`` (``<ns>_tenant_<id>`` in a namespace)."""
    return _derived(tenant_id, prefix)


def role_name(tenant_id: str, prefix: str = NAME_PREFIX) -> str:
    """The tenant's NOLOGIN role: ``tenant_<id>`` (roles and schemas live in separate namespaces)."""
    return _derived(tenant_id, prefix)


def quote_ident(name: str) -> str:
    """Quote an SQL identifier the way PostgreSQL's quote_ident does (always quoted)."""
    if "\x00" in name:
        raise ValueError("identifier contains NUL")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote an SQL string literal (standard_conforming_strings=on, which PG 15 enforces)."""
    if "\x00" in value:
        raise ValueError("literal contains NUL")
    return "'" + value.replace("'", "''") + "'"
