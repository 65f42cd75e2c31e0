"""An operation saved by an API process that died before publishing its request: the tenant is
not blocked forever. Simulated by writing the operation row and publishing nothing."""

import json
import secrets
import uuid

import asyncpg
import pytest

from api.operations import API_SOURCE, with_actor
from contracts import codec
from contracts.events import TenantRequested
from runtime.settings import Settings
from tests.support.api import ApiProcess, DevKeys
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack
DONE_TIMEOUT_S = 60.0


async def wait_done(client, name: str, headers: dict[str, str]) -> dict:  # type: ignore[no-untyped-def]
    async def done() -> dict | None:
        body = (await client.get(f"/v1/{name}", headers=headers)).json()
        return body if body["done"] else None

    return await wait_until(done, DONE_TIMEOUT_S, what=f"{name} done", interval=0.2)


async def test_an_unpublished_operation_does_not_block_the_tenant_forever(
    api: ApiProcess, api_keys: DevKeys, settings: Settings, pg: asyncpg.Connection, tenants
) -> None:  # type: ignore[no-untyped-def]
    # Only the columns every version of the table has: the row a process wrote before it died,
    # an hour ago, with nothing on Kafka behind it.
    tenant_id, stuck = tenants.new(), uuid.uuid4().hex
    schema = settings.names.control_schema
    await pg.execute(
        f"INSERT INTO {schema}.api_operations (operation_id, kind, tenant_id, actor, event_ids,"
        " correlation_id, created_at, updated_at) VALUES ($1, 'TenantRequested', $2, 'ghost',"
        " $3, $4, now() - interval '1 hour', now() - interval '1 hour')",
        stuck,
        tenant_id,
        [uuid.uuid4().hex],
        uuid.uuid4().hex,
    )
    headers = api_keys.headers(f"op-{secrets.token_hex(3)}")
    async with api.client() as client:
        answer = await client.post("/v1/tenants", json={"tenant_id": tenant_id}, headers=headers)
        assert answer.status_code == 202, answer.text
        done = await wait_done(client, answer.json()["name"], headers)
        old = (await client.get(f"/v1/operations/{stuck}", headers=headers)).json()
    assert done["result"]["type"] == "TenantProvisioned"
    # Its requests were never kept, so it cannot be re-published: it fails, saying why.
    assert old["done"] is True and old["error"]["code"] == "unavailable"


async def test_a_saved_but_unpublished_request_is_published_again_with_its_event_id(
    api: ApiProcess, api_keys: DevKeys, settings: Settings, pg: asyncpg.Connection, tenants
) -> None:  # type: ignore[no-untyped-def]
    tenant_id, stuck = tenants.new(), uuid.uuid4().hex
    envelope = with_actor(
        codec.envelope_for(TenantRequested(tenant_id=tenant_id, plan="free"), source=API_SOURCE),
        "ghost",
    )
    await pg.execute(
        f"INSERT INTO {settings.names.control_schema}.api_operations (operation_id, kind, tenant_id,"
        " actor, event_ids, correlation_id, requests, published, publish_attempt_at) VALUES"
        " ($1, 'TenantRequested', $2, 'ghost', $3, $4, $5::jsonb, false,"
        " now() - interval '1 hour')",
        stuck,
        tenant_id,
        [envelope.id],
        envelope.correlationid,
        json.dumps([json.loads(codec.encode(envelope))]),
    )
    headers = api_keys.headers(f"op-{secrets.token_hex(3)}")
    async with api.client() as client:
        # A later command finds the tenant busy with the recovered operation, which then
        # completes with the result of its own (original) request event.
        busy = await client.post(f"/v1/tenants/{tenant_id}:backup", headers=headers)
        assert busy.status_code == 409, busy.text
        done = await wait_done(client, f"operations/{stuck}", headers)
        assert done["result"]["type"] == "TenantProvisioned"
        assert done["metadata"]["event_ids"] == [envelope.id]
        after = await client.post(f"/v1/tenants/{tenant_id}:suspend", headers=headers)
        assert after.status_code == 202, after.text
    published = await pg.fetchval(
        f"SELECT published FROM {settings.names.control_schema}.api_operations WHERE operation_id = $1",
        stuck,
    )
    assert published is True
