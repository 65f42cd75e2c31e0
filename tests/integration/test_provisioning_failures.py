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


@pytest.mark.parametrize("own", ["control_schema", "app_role", "api_reader_role", "restore_role"])
async def test_an_id_naming_the_deployments_own_objects_is_refused_as_invalid(
    own: str, results: ResultLog, publisher: KafkaEventPublisher, pg: asyncpg.Connection
) -> None:
    # ``<prefix>api_reader`` is the API's read role, ``<prefix>service`` the control schema...:
    # a tenant with that id would be given (or try to take) an object that is not a tenant's.
    names = ns.names()
    name = getattr(names, own)
    assert name.startswith(names.tenant_prefix), f"{own} {name!r} shares no prefix: nothing to test"
    reserved = name[len(names.tenant_prefix):]
    before = await pg.fetch(
        "SELECT rolname, rolcanlogin, rolinherit FROM pg_roles WHERE rolname = $1"
        " UNION ALL SELECT nspname, NULL, NULL FROM pg_namespace WHERE nspname = $1",
        name,
    )
    request = requested(reserved)  # not tracked: the cleanup must not drop what is not a tenant
    await publish(publisher, request)

    refused = await results.first(request.id)

    assert refused.type == "TenantProvisioningFailed"
    assert refused.data["reason"] == "invalid_tenant_id"
    assert "reserved" in refused.data["detail"]
    assert await db.registry_row(pg, reserved) is None
    after = await pg.fetch(
        "SELECT rolname, rolcanlogin, rolinherit FROM pg_roles WHERE rolname = $1"
        " UNION ALL SELECT nspname, NULL, NULL FROM pg_namespace WHERE nspname = $1",
        name,
    )
    assert after == before
