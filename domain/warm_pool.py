"""The warm pool: tenant schemas and roles made ahead of any request, under neutral names.

A pooled schema and its role share one name: the deployment's tenant prefix, ``_pool_`` and a
random token (``tenant__pool_3f2a…``, ``<ns>_tenant__pool_3f2a…``). A tenant id starts with a
letter, so prefix + id can never be a pooled name; the prefix keeps the pool inside the
deployment's namespace (its cleanup and orphan checks see it; another deployment's do not).

The refill runs one action per short transaction and decides each from the pool as it is now,
since provisioners claim from it concurrently. While they are claiming and more than half of the
pool is left, it waits: a schema it makes then would compete with the claims for the same cores
and catalogues (a burst served from the pool is what the pool is for), and the half left covers
the claims until they pause or the pool runs low, when it refills at once.
"""

import re
from collections.abc import Mapping
from enum import StrEnum

from domain.tenant_ids import PG_MAX_IDENTIFIER_BYTES

POOL_MARK = "_pool_"
TOKEN_BYTES = 8  # 16 hex characters: a collision would only fail one refill transaction
_TOKEN = re.compile(rf"^[0-9a-f]{{{TOKEN_BYTES * 2}}}$")


def pooled_name(tenant_prefix: str, token: str) -> str:
    """The name of a pooled schema and its role; ``token`` is 16 lowercase hex characters."""
    if not _TOKEN.fullmatch(token):
        raise ValueError("pool token must be 16 lowercase hex characters")
    name = f"{tenant_prefix}{POOL_MARK}{token}"
    if len(name.encode()) > PG_MAX_IDENTIFIER_BYTES:  # unreachable with valid namespaces
        raise ValueError("pooled name longer than 63 bytes")
    return name


def is_pooled_name(tenant_prefix: str, name: str) -> bool:
    """Is ``name`` a pooled schema/role of the deployment with this tenant prefix?"""
    head, token = (
        name[: len(tenant_prefix) + len(POOL_MARK)],
        name[len(tenant_prefix) + len(POOL_MARK) :],
    )
    return head == tenant_prefix + POOL_MARK and bool(_TOKEN.fullmatch(token))


class RefillAction(StrEnum):
    CREATE = "create"  # one more pooled schema at the latest version
    DISCARD_STALE = "discard_stale"  # drop one made from an older template
    DISCARD_EXCESS = "discard_excess"  # drop one at the latest version beyond the size
    NONE = "none"  # the pool is as it should be: wait
    YIELD = "yield"  # provisioners are claiming and the pool is over half full: look again soon


def next_refill(
    versions: Mapping[int, int], *, latest: int, size: int, claiming: bool = False
) -> RefillAction:
    """What the refill does next, given how many pooled schemas there are per template version
    and whether provisioners are ``claiming`` (the pool shrank since the refill last looked).

    Creating comes first: a stale one can still be claimed (it is migrated forward at claim
    time), so it is kept until its replacement exists. Versions newer than ``latest`` belong to
    a newer release's refill (a rolling deploy) and are left alone.
    """
    if size < 0:
        raise ValueError("pool size must be >= 0")
    current = versions.get(latest, 0)
    if current < size:
        return RefillAction.YIELD if claiming and 2 * current > size else RefillAction.CREATE
    if any(n > 0 for v, n in versions.items() if v < latest):
        return RefillAction.DISCARD_STALE
    if current > size:
        return RefillAction.DISCARD_EXCESS
    return RefillAction.NONE


def claimable(pooled_version: int, latest: int) -> bool:
    """A provisioner may hand out a pooled schema at or below its template's latest version
    (migrating it forward); a newer one was made by a newer release and is not for it."""
    return pooled_version <= latest


def creations_at_once(
    versions: Mapping[int, int], *, latest: int, size: int, connections: int, claiming: bool
) -> int:
    """How many pooled schemas to make side by side once next_refill says CREATE: one per refill
    connection, but never more than are missing, so the pool is never overfilled (and trimmed
    again; only the leader adds to the pool, claims only take from it). One at a time while
    provisioners are ``claiming``: the claims are what the pool is for, and more DDL beside them
    would take their cores."""
    if connections < 1:
        raise ValueError("refill connections must be >= 1")
    return max(0, min(1 if claiming else connections, size - versions.get(latest, 0)))
