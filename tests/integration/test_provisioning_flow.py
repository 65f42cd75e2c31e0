"""TenantRequested -> TenantProvisioned, and everything it leaves in PostgreSQL."""

from dataclasses import dataclass

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from contracts.envelope import Envelope, result_event_id
from domain.tenant_ids import quote_ident
from runtime.settings import Settings
from tests.support import names as ns
from tests.support import postgres as db
from tests.support.kafka import ResultLog, publish, requested
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack
TEMPLATE_TABLES = {"users", "projects", "documents"}


@dataclass(frozen=True)
class Provisioned:
    tenant_id: str
    request: Envelope
    result: Envelope

    @property
    def name(self) -> str:
        return f"{ns.tenant(self.tenant_id)}"


@pytest.fixture(scope="module")
async def provisioned(
    settings: Settings,
    session_worker: SessionWorker,
    tenants: TenantIds,
    publisher: KafkaEventPublisher,
) -> Provisioned:
    tenant_id = tenants.new()
    request = requested(tenant_id, "free")
    async with ResultLog(settings) as results:
        await publish(publisher, request)
        result = await results.first(request.id)
    return Provisioned(tenant_id, request, result)


async def test_result_answers_the_request(provisioned: Provisioned) -> None:
    result, request = provisioned.result, provisioned.request
    assert result.type == "TenantProvisioned"
    assert result.causationid == request.id
    assert result.correlationid == request.correlationid
    assert result.id == result_event_id(request.id, "TenantProvisioned")
    assert result.subject == provisioned.tenant_id
    assert result.data == {
        "tenant_id": provisioned.tenant_id,
        "plan": "free",
        "schema_name": provisioned.name,
        "role_name": provisioned.name,
        "schema_version": db.template_version(),
    }


async def test_schema_holds_the_template_tables(
    pg: asyncpg.Connection, provisioned: Provisioned
) -> None:
    assert await db.schema_exists(pg, provisioned.name)
    tables = await pg.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1", provisioned.name
    )
    assert TEMPLATE_TABLES <= {r["tablename"] for r in tables}


async def test_role_is_nologin_and_held_by_the_app_role(
    pg: asyncpg.Connection, provisioned: Provisioned
) -> None:
    role = await pg.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", provisioned.name)
    assert role is not None and role["rolcanlogin"] is False
    members = await pg.fetch(
        "SELECT m.rolname FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid"
        " JOIN pg_roles m ON m.oid = am.member WHERE r.rolname = $1",
        provisioned.name,
    )
    assert [r["rolname"] for r in members] == [ns.names().app_role]


async def test_every_table_has_rls_and_the_isolation_policy(
    pg: asyncpg.Connection, provisioned: Provisioned
) -> None:
    rows = await pg.fetch(
        "SELECT c.relname, c.relrowsecurity, array_agg(p.polname) AS policies"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_policy p ON p.polrelid = c.oid"
        " WHERE n.nspname = $1 AND c.relkind = 'r' GROUP BY c.relname, c.relrowsecurity",
        provisioned.name,
    )
    secured = {r["relname"]: (r["relrowsecurity"], r["policies"]) for r in rows}
    assert TEMPLATE_TABLES <= set(secured)
    assert secured == {table: (True, ["tenant_isolation"]) for table in secured}


async def test_privileges_reach_the_data_only_through_the_tenant_role(
    pg: asyncpg.Connection, provisioned: Provisioned
) -> None:
    users, role = f"{provisioned.name}.users", provisioned.name
    checks = await pg.fetchrow(
        "SELECT has_table_privilege($1, $2, 'SELECT,INSERT,UPDATE,DELETE') AS tenant_rw,"
        " has_table_privilege($3, $2, 'SELECT') AS app_reads,"
        " pg_has_role($3, $1, 'MEMBER') AS app_can_set_role,"
        " pg_has_role($3, $1, 'USAGE') AS app_inherits",
        role,
        users,
        ns.names().app_role,
    )
    assert dict(checks) == {
        "tenant_rw": True, "app_reads": False, "app_can_set_role": True, "app_inherits": False,
    }


async def test_registry_inbox_and_outbox_rows(
    pg: asyncpg.Connection, provisioned: Provisioned
) -> None:
    registry = await db.registry_row(pg, provisioned.tenant_id)
    assert registry is not None
    assert (registry["status"], registry["plan"], registry["schema_version"]) == (
        "active", "free", db.template_version(),
    )
    assert await db.inbox_count(pg, topics.PROVISIONER_GROUP, provisioned.request.id) == 1
    # The relay marks the row after the broker acknowledged it, so it may trail the event.
    row = await wait_until(
        lambda: _sent_outbox_row(pg, provisioned.result.id), 30, what="outbox row marked sent"
    )
    assert row["event_type"] == "TenantProvisioned"
    assert bytes(row["key"]) == provisioned.tenant_id.encode()


async def _sent_outbox_row(pg: asyncpg.Connection, event_id: str) -> asyncpg.Record | None:
    row = await db.outbox_row(pg, event_id)
    return row if row is not None and row["sent"] else None


async def test_tenant_role_reads_and_writes_and_app_role_alone_sees_nothing(
    settings: Settings, provisioned: Provisioned
) -> None:
    # Identifiers come from a validated tenant id and are quoted: no injection path.
    schema = role = quote_ident(provisioned.name)
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        await conn.execute(f"SET ROLE {ns.names().app_role}")
        await conn.execute(f"SET ROLE {role}")
        await conn.execute(f"INSERT INTO {schema}.users (email) VALUES ('a@b.c')")  # noqa: S608
        assert await conn.fetchval(f"SELECT email FROM {schema}.users") == "a@b.c"  # noqa: S608
        await conn.execute(f"SET ROLE {ns.names().app_role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {schema}.users")  # noqa: S608
    finally:
        await conn.close()
