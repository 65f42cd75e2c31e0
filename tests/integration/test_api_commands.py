"""Commands through the HTTP API on the real stack: the same request events tenantctl publishes
(with the caller as actor), operations settled by their result events, idempotency keys and
conflicts."""

import json
import secrets

import asyncpg
import pytest

from contracts import topics
from runtime.settings import Settings
from tests.support import names as ns
from tests.support.api import ApiProcess, DevKeys
from tests.support.kafka import TopicTail
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack
DONE_TIMEOUT_S = 60.0


async def wait_done(client, name: str, headers: dict[str, str]) -> dict:  # type: ignore[no-untyped-def]
    async def done() -> dict | None:
        body = (await client.get(f"/v1/{name}", headers=headers)).json()
        return body if body["done"] else None

    return await wait_until(done, DONE_TIMEOUT_S, what=f"{name} done", interval=0.2)


async def test_provision_through_the_api_publishes_tenantctls_event_with_the_actor(
    api: ApiProcess, api_keys: DevKeys, settings: Settings, tenants
) -> None:  # type: ignore[no-untyped-def]
    tenant_id = tenants.new()
    sub = f"alice-{secrets.token_hex(3)}"
    headers = api_keys.headers(sub)
    async with TopicTail(settings, topics.LIFECYCLE) as tail, api.client() as client:
        answer = await client.post(
            "/v1/tenants", json={"tenant_id": tenant_id, "plan": "pro"}, headers=headers
        )
        assert answer.status_code == 202, answer.text
        op = answer.json()
        assert op["name"].startswith("operations/") and op["done"] is False
        assert answer.headers["location"] == f"/v1/{op['name']}"
        done = await wait_done(client, op["name"], headers)
        records = await wait_until(
            lambda: tail.with_key(tenant_id.encode()), 30, what="request on tenants.lifecycle"
        )
    assert done["result"]["type"] == "TenantProvisioned"
    assert done["result"]["plan"] == "pro"
    assert "error" not in done
    request = json.loads(records[0].value)
    assert request["type"] == "TenantRequested"
    assert request["id"] == op["event_id"] and request["correlationid"] == op["correlation_id"]
    assert request["actor"] == sub
    assert request["data"] == {"tenant_id": tenant_id, "plan": "pro", "display_name": None}
    log = api.worker.log_text()
    assert f'"actor": "{sub}"' in log and "api_request" in log


async def test_reads_show_the_tenant_its_timeline_and_filters(
    api: ApiProcess, api_keys: DevKeys, tenants
) -> None:  # type: ignore[no-untyped-def]
    headers = api_keys.headers("reader-writer")
    created = [tenants.new() for _ in range(3)]
    async with api.client() as client:
        for tenant_id in created:
            op = (
                await client.post("/v1/tenants", json={"tenant_id": tenant_id}, headers=headers)
            ).json()
            await wait_done(client, op["name"], headers)
        suspend = (await client.post(f"/v1/tenants/{created[0]}:suspend", headers=headers)).json()
        assert (await wait_done(client, suspend["name"], headers))["result"][
            "type"
        ] == "TenantSuspended"

        one = (await client.get(f"/v1/tenants/{created[0]}", headers=headers)).json()
        assert one["status"] == "suspended" and one["plan"] == "free"
        suspended = (
            await client.get("/v1/tenants?status=suspended&page_size=1000", headers=headers)
        ).json()
        assert created[0] in {t["tenant_id"] for t in suspended["tenants"]}
        assert created[1] not in {t["tenant_id"] for t in suspended["tenants"]}

        seen: list[str] = []
        token = None
        while True:  # pages of 1 walk every tenant once, in id order
            params = {"page_size": 1, **({"page_token": token} if token else {})}
            page = (await client.get("/v1/tenants", params=params, headers=headers)).json()
            seen += [t["tenant_id"] for t in page["tenants"]]
            token = page["next_page_token"]
            if token is None:
                break
        assert seen == sorted(seen) and len(seen) == len(set(seen))
        assert set(created) <= set(seen)

        timeline = (await client.get(f"/v1/tenants/{created[0]}/events", headers=headers)).json()
        assert [e["type"] for e in timeline["events"]] == ["TenantProvisioned", "TenantSuspended"]
        backups = await client.get(f"/v1/tenants/{created[0]}/backups", headers=headers)
        assert backups.status_code == 200 and backups.json()["backups"] == []
        metrics = await client.get(f"/v1/tenants/{created[0]}/metrics", headers=headers)
        assert metrics.status_code == 200 and metrics.json()["metrics"] == []
        missing = await client.get("/v1/tenants/no_such_tenant", headers=headers)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"


async def test_idempotency_key_returns_the_same_operation_and_refuses_another_body(
    api: ApiProcess, api_keys: DevKeys, pg: asyncpg.Connection, tenants
) -> None:  # type: ignore[no-untyped-def]
    tenant_id = tenants.new()
    headers = {**api_keys.headers("idem"), "Idempotency-Key": secrets.token_hex(8)}
    async with api.client() as client:
        first = await client.post("/v1/tenants", json={"tenant_id": tenant_id}, headers=headers)
        again = await client.post("/v1/tenants", json={"tenant_id": tenant_id}, headers=headers)
        other = await client.post(
            "/v1/tenants", json={"tenant_id": tenant_id, "plan": "pro"}, headers=headers
        )
    assert first.status_code == again.status_code == 202
    assert again.json()["name"] == first.json()["name"]
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    assert other.json()["type"].endswith("idempotency_key_reused")
    ops = await pg.fetchval(
        f"SELECT count(*) FROM {ns.CONTROL}.api_operations WHERE tenant_id = $1", tenant_id
    )
    assert ops == 1
    expires = await pg.fetchval(
        f"SELECT min(expires_at - now()) FROM {ns.CONTROL}.api_idempotency_keys"
        " WHERE operation_id = $1",
        first.json()["name"].split("/")[1],
    )
    assert expires.total_seconds() > 23.9 * 3600


async def test_a_command_while_the_tenants_operation_runs_is_a_conflict(
    api: ApiProcess, api_keys: DevKeys, tenants
) -> None:  # type: ignore[no-untyped-def]
    # The session worker runs no backup role, so a backup's operation stays running.
    tenant_id = tenants.new()
    headers = api_keys.headers("conflicted")
    async with api.client() as client:
        op = (
            await client.post("/v1/tenants", json={"tenant_id": tenant_id}, headers=headers)
        ).json()
        await wait_done(client, op["name"], headers)
        backup = await client.post(f"/v1/tenants/{tenant_id}:backup", headers=headers)
        assert backup.status_code == 202
        second = await client.post(f"/v1/tenants/{tenant_id}:suspend", headers=headers)
    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert second.json()["operation"] == backup.json()["name"]


async def test_a_migration_with_nothing_to_migrate_is_refused(
    api: ApiProcess, api_keys: DevKeys
) -> None:
    async with api.client() as client:
        answer = await client.post(
            "/v1/migrations", json={"target_version": 1}, headers=api_keys.headers("migrator")
        )
    assert answer.status_code == 409
    assert answer.json()["type"].endswith("nothing_to_migrate")
