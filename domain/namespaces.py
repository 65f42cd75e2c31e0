"""A deployment's namespace and the names it derives (TENANT_NAMESPACE).

Two deployments that share one Kafka, one PostgreSQL server and one Redis must not see each
other's events, tenants or locks. Every name they could collide on is derived here from the
namespace; an empty namespace derives today's names exactly, so existing deployments keep them.

The namespace is short and has no underscore: it leads the tenant schema/role name
``<ns>_tenant_<id>``, and both rules keep that name unambiguous (the first ``_`` ends the
namespace) and within PostgreSQL's 63-byte limit for the longest tenant id. ``tenant`` is
reserved: ``tenant_tenant_<id>`` would be the un-namespaced name of tenant ``tenant_<id>``.
"""

import re
import zlib
from collections.abc import Iterable

from domain.tenant_ids import (
    NAME_PREFIX,
    PG_MAX_IDENTIFIER_BYTES,
    TENANT_ID_MAX_LENGTH,
    TENANT_ID_PATTERN,
)

NAMESPACE_MAX_LENGTH = PG_MAX_IDENTIFIER_BYTES - TENANT_ID_MAX_LENGTH - len("_" + NAME_PREFIX)
NAMESPACE_PATTERN = re.compile(rf"^[a-z][a-z0-9]{{0,{NAMESPACE_MAX_LENGTH - 1}}}$")
RESERVED = frozenset({NAME_PREFIX.rstrip("_")})


class InvalidNamespace(ValueError):
    """The namespace is not a short lowercase word, or is reserved."""


def validate_namespace(namespace: str) -> str:
    """Return the namespace unchanged if valid ("" = none), else raise InvalidNamespace."""
    if namespace == "":
        return namespace
    if not NAMESPACE_PATTERN.fullmatch(namespace):
        raise InvalidNamespace(
            f"must match {NAMESPACE_PATTERN.pattern} (lowercase letters and digits, at most"
            f" {NAMESPACE_MAX_LENGTH}, no underscore) or be empty"
        )
    if namespace in RESERVED:
        raise InvalidNamespace(f"{namespace!r} is reserved")
    return namespace


def tenant_prefix(namespace: str) -> str:
    """What a tenant's schema and role names start with: ``tenant_`` or ``<ns>_tenant_``.

    Roles are cluster-wide in PostgreSQL and schemas per database, so two deployments on one
    server would otherwise share ``tenant_acme`` (and one's erase would drop the other's data).
    """
    return f"{namespace}_{NAME_PREFIX}" if namespace else NAME_PREFIX


def control_schema(namespace: str, base: str) -> str:
    """The control schema: ``<base>`` or ``<ns>_<base>``, refused past 63 bytes."""
    return _prefixed(namespace, base, "control_schema")


def app_role(namespace: str, base: str) -> str:
    """The application's login role: ``<base>`` or ``<ns>_<base>``. It is granted every tenant
    role of its deployment, and roles are cluster-wide: a shared one could SET ROLE to another
    deployment's tenants."""
    return _prefixed(namespace, base, "app_role")


def api_reader_role(namespace: str, base: str) -> str:
    """The HTTP API's read-only role: ``<base>`` or ``<ns>_<base>``. Roles are cluster-wide, and
    it is granted SELECT on its deployment's control schema only."""
    return _prefixed(namespace, base, "api reader role")


def _prefixed(namespace: str, base: str, setting: str) -> str:
    name = f"{namespace}_{base}" if namespace else base
    if len(name.encode()) > PG_MAX_IDENTIFIER_BYTES:
        raise InvalidNamespace(f"namespace and {setting} make {name!r}, over 63 bytes")
    return name


def redis_prefix(namespace: str) -> str:
    """Tenants' Redis keys live under ``tenant:<id>:`` or ``<ns>:tenant:<id>:``."""
    return f"{namespace}:tenant:" if namespace else "tenant:"


def session_tag_prefix(namespace: str) -> str:
    """What a tenant's connections' ``application_name`` starts with: ``tenant:`` or
    ``<ns>:tenant:`` (at most 63 bytes with the longest id). Suspension ends the sessions so
    tagged, so two deployments must not share a tag for the same tenant id."""
    return f"{namespace}:tenant:" if namespace else "tenant:"


def api_ratelimit_prefix(namespace: str) -> str:
    """The HTTP API's rate-limit keys in Redis: ``tenant-api:rl:`` or ``<ns>:tenant-api:rl:``."""
    return f"{namespace}:tenant-api:rl:" if namespace else "tenant-api:rl:"


def lock_id(namespace: str, base: int) -> int:
    """A PostgreSQL advisory-lock key (bigint) per namespace: the base id in the low 32 bits,
    31 bits of the namespace's CRC-32 above them. Advisory locks are per database, so two
    namespaces share one only if their CRCs collide (about 1 in 2**31 per pair)."""
    if not namespace:
        return base
    return ((zlib.crc32(namespace.encode()) & 0x7FFF_FFFF) << 32) | (base & 0xFFFF_FFFF)


def reserved_tenant_ids(tenant_prefix: str, own_names: Iterable[str]) -> frozenset[str]:
    """Tenant ids whose schema/role name would be one of the deployment's own objects.

    The control schema ``<ns>_tenant_service``, the roles ``<ns>_tenant_app``,
    ``<ns>_tenant_api_reader`` and the restore login share the tenant prefix: a tenant ``service``
    would be handed (or try to take) an object that is not a tenant's, and its erase would drop
    it. Such ids are refused as invalid."""
    return frozenset(
        name[len(tenant_prefix):]
        for name in own_names
        if name.startswith(tenant_prefix) and TENANT_ID_PATTERN.fullmatch(name[len(tenant_prefix):])
    )
