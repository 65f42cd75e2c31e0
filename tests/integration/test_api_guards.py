"""What the HTTP API refuses, on the real stack: unauthenticated, wrongly scoped, malformed and
oversized requests each get a problem+json answer and change nothing; reads run as a role that
cannot write; rate limits hold across two API processes."""

import secrets
from pathlib import Path

import asyncpg
import pytest

from contracts import topics
from runtime.settings import Settings
from tests.support import names as ns
from tests.support.api import ApiProcess, DevKeys
from tests.support.kafka import TopicTail

pytestmark = pytest.mark.stack
PROBLEM = "application/problem+json"


async def _nothing_changed(pg: asyncpg.Connection, tail: TopicTail, tenant_id: str) -> None:
    assert tail.with_key(tenant_id.encode()) == []
    assert (
        await pg.fetchval(
            f"SELECT count(*) FROM {ns.CONTROL}.api_operations WHERE tenant_id = $1", tenant_id
        )
        == 0
    )
    assert (
        await pg.fetchval(
            f"SELECT count(*) FROM {ns.CONTROL}.tenants WHERE tenant_id = $1", tenant_id
        )
        == 0
    )


async def test_refused_requests_answer_problems_and_change_nothing(
    api: ApiProcess, api_keys: DevKeys, pg: asyncpg.Connection, settings: Settings, tenants
) -> None:  # type: ignore[no-untyped-def]
    tenant_id = tenants.new()
    body = {"tenant_id": tenant_id}
    wrong_key = DevKeys(Path(api_keys.jwks_file).parent / "other", settings.api_jwt_audience)
    cases = {
        "no token": ({}, body, 401, "unauthenticated"),
        "not a jwt": ({"Authorization": "Bearer not.a.token"}, body, 401, "invalid_token"),
        "foreign signer": (wrong_key.headers("mallory"), body, 401, "invalid_token"),
        "read-only scope": (
            api_keys.headers("viewer", ["tenants:read"]),
            body,
            403,
            "insufficient_scope",
        ),
        "malformed id": (
            api_keys.headers("writer"),
            {"tenant_id": "Bad-Id"},
            422,
            "invalid_request",
        ),
        "unknown field": (
            api_keys.headers("writer"),
            {**body, "drop": True},
            422,
            "invalid_request",
        ),
        "oversized": (
            api_keys.headers("writer"),
            {**body, "display_name": "x" * 40_000},
            413,
            "payload_too_large",
        ),
    }
    async with TopicTail(settings, topics.LIFECYCLE) as tail, api.client() as client:
        for name, (headers, payload, status, code) in cases.items():
            answer = await client.post("/v1/tenants", json=payload, headers=headers)
            assert answer.status_code == status, (name, answer.text)
            assert answer.headers["content-type"] == PROBLEM, name
            problem = answer.json()
            assert problem["status"] == status and problem["type"].endswith(code), name
            assert problem["detail"], name
        not_json = await client.post(
            "/v1/tenants",
            content=b"{not json",
            headers={**api_keys.headers("writer"), "content-type": "application/json"},
        )
        assert not_json.status_code == 422 and not_json.headers["content-type"] == PROBLEM
        await _nothing_changed(pg, tail, tenant_id)
    assert (await client_status(api, "/v1/tenants", {})) == 401


async def client_status(api: ApiProcess, path: str, headers: dict[str, str]) -> int:
    async with api.client() as client:
        return (await client.get(path, headers=headers)).status_code


async def test_the_read_role_cannot_write(settings: Settings, api: ApiProcess) -> None:
    conn = await asyncpg.connect(
        settings.pg_dsn.get_secret_value(),
        server_settings={"role": settings.names.api_reader_role, "default_transaction_read_only": "on"},
    )
    try:
        assert await conn.fetchval("SELECT current_user") == settings.names.api_reader_role
        assert await conn.fetchval(f"SELECT count(*) >= 0 FROM {ns.CONTROL}.tenants")
        await conn.execute("SET default_transaction_read_only = off")  # not what protects us
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                f"INSERT INTO {ns.CONTROL}.api_operations (operation_id, kind, actor, event_ids,"
                " correlation_id) VALUES ('x', 'k', 'a', '{}', 'c')"
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"UPDATE {ns.CONTROL}.tenants SET plan = plan")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {ns.CONTROL}.tenant_keys")
    finally:
        await conn.close()


async def test_rate_limit_holds_across_two_api_processes(
    api_keys: DevKeys, log_dir: Path, session_worker: object
) -> None:
    env = {"TENANT_API_RATE_LIMIT_READ": "6/3600"}
    first = ApiProcess(log_dir / "api-rl-1.log", api_keys, env)
    second = ApiProcess(log_dir / "api-rl-2.log", api_keys, env)
    await first.start()
    await second.start()
    try:
        headers = api_keys.headers(f"burst-{secrets.token_hex(4)}", ["tenants:read"])
        answers = []
        async with first.client() as a, second.client() as b:
            for n in range(10):  # alternate: each process alone would allow 6
                client = a if n % 2 == 0 else b
                answers.append(await client.get("/v1/tenants", headers=headers))
            other_route = await a.get("/v1/tenants/no_such_tenant", headers=headers)
        statuses = [r.status_code for r in answers]
        assert statuses == [200] * 6 + [429] * 4, statuses
        assert [int(r.headers["ratelimit-remaining"]) for r in answers[:6]] == [5, 4, 3, 2, 1, 0]
        refused = answers[6]
        assert refused.headers["content-type"] == PROBLEM
        assert int(refused.headers["retry-after"]) > 0
        assert refused.headers["ratelimit-limit"] == "6"
        assert refused.headers["ratelimit-policy"] == "6;w=3600"
        assert other_route.status_code == 404  # buckets are per route
    finally:
        await first.stop()
        await second.stop()
