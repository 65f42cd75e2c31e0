"""Business refusals are result events, and leave no schema behind."""

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from tests.support import names as ns
from tests.support import postgres as db
from tests.support.kafka import ResultLog, publish, requested
from tests.support.stack import TenantIds

pytestmark = pytest.mark.stack


async def test_same_tenant_with_another_plan_conflicts(
    results: ResultLog, publisher: KafkaEventPublisher, tenants: TenantIds, pg: asyncpg.Connection
) -> None:
    tenant_id = tenants.new()
    original, other_plan = requested(tenant_id, "free"), requested(tenant_id, "pro")
    await publish(publisher, original)
    await publish(publisher, other_plan)

    assert (await results.first(original.id)).type == "TenantProvisioned"
    refused = await results.first(other_plan.id)

    assert refused.type == "TenantProvisioningFailed"
    assert refused.data["reason"] == "conflict"
    assert refused.correlationid == other_plan.correlationid
    registry = await db.registry_row(pg, tenant_id)
    assert registry is not None and registry["plan"] == "free"


async def test_invalid_tenant_id_is_refused_without_ddl(
    results: ResultLog, publisher: KafkaEventPublisher, tenants: TenantIds, pg: asyncpg.Connection
) -> None:
    bad = tenants.track("Bad-Id")
    request = requested(bad)
    await publish(publisher, request)

    refused = await results.first(request.id)

    assert refused.type == "TenantProvisioningFailed"
    assert refused.data["reason"] == "invalid_tenant_id"
    assert refused.subject == bad
    assert await db.registry_row(pg, bad) is None
    leaked = await pg.fetch(
        "SELECT nspname FROM pg_namespace WHERE lower(nspname) = $1"
        " UNION ALL SELECT rolname FROM pg_roles WHERE lower(rolname) = $1",
        ns.names().tenant_prefix + "bad-id",
    )
    assert leaked == []


async def test_unknown_plan_is_refused_without_ddl(
    results: ResultLog, publisher: KafkaEventPublisher, tenants: TenantIds, pg: asyncpg.Connection
) -> None:
    tenant_id = tenants.new()
    request = requested(tenant_id, "platinum")
    await publish(publisher, request)

    refused = await results.first(request.id)

    assert (refused.type, refused.data["reason"]) == ("TenantProvisioningFailed", "unknown_plan")
    assert not await db.schema_exists(pg, f"{ns.tenant(tenant_id)}")
