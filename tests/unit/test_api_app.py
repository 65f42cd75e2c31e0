"""The HTTP API's policies against fakes: problems, scopes, idempotency, conflicts, limits."""

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from api.tokens import mint
from contracts.envelope import result_event_id
from tests.unit.api_fakes import SECRET, FakeLimiter, fake_context

ALL = ["tenants:read", "tenants:write", "tenants:erase", "backups:write", "backups:restore"]


def auth(scopes: list[str] = ALL, sub: str = "alice") -> dict[str, str]:
    token = mint(SECRET, sub=sub, scopes=scopes, audience="tenant-service")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def world() -> AsyncIterator[tuple[httpx.AsyncClient, object, object, object]]:
    ctx, ops, reads, publisher = fake_context()
    app = create_app(ctx, max_body_bytes=1024)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client, ops, reads, publisher


async def test_a_command_publishes_one_request_with_the_actor(world) -> None:  # type: ignore[no-untyped-def]
    client, ops, _, publisher = world
    answer = await client.post("/v1/tenants", json={"tenant_id": "acme"}, headers=auth())
    assert answer.status_code == 202
    assert answer.json()["done"] is False
    [(topic, key, value, _)] = publisher.sent
    event = json.loads(value)
    assert (topic, key) == ("tenants.lifecycle", b"acme")
    assert event["type"] == "TenantRequested" and event["actor"] == "alice"
    assert event["id"] == answer.json()["event_id"]


async def test_the_result_settles_the_operation(world) -> None:  # type: ignore[no-untyped-def]
    client, _, reads, _ = world
    op = (await client.post("/v1/tenants/acme:suspend", headers=auth())).json()
    rid = result_event_id(op["event_id"], "TenantSuspended")
    reads.results_by_id[rid] = {
        "causationid": op["event_id"],
        "type": "TenantSuspended",
        "data": {"tenant_id": "acme"},
    }
    done = (await client.get(f"/v1/{op['name']}", headers=auth())).json()
    assert done["done"] is True and done["result"]["type"] == "TenantSuspended"


async def test_same_key_same_body_same_operation_other_body_refused(world) -> None:  # type: ignore[no-untyped-def]
    client, ops, _, publisher = world
    headers = {**auth(), "Idempotency-Key": "k-1"}
    first = await client.post("/v1/tenants", json={"tenant_id": "acme"}, headers=headers)
    again = await client.post("/v1/tenants", json={"tenant_id": "acme"}, headers=headers)
    other = await client.post(
        "/v1/tenants", json={"tenant_id": "acme", "plan": "pro"}, headers=headers
    )
    assert again.json()["name"] == first.json()["name"]
    assert other.status_code == 422 and other.headers["content-type"] == "application/problem+json"
    assert len(publisher.sent) == 1 and len(ops.rows) == 1


async def test_a_command_on_a_busy_tenant_is_a_conflict(world) -> None:  # type: ignore[no-untyped-def]
    client, _, _, publisher = world
    first = await client.post("/v1/tenants/acme:backup", headers=auth())
    second = await client.post("/v1/tenants/acme:erase", headers=auth())
    assert second.status_code == 409
    assert second.json()["operation"] == first.json()["name"]
    assert len(publisher.sent) == 1


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, {"tenant_id": "acme"}, 401),
        ({"Authorization": "Basic eDp5"}, {"tenant_id": "acme"}, 401),
        ("read-only", {"tenant_id": "acme"}, 403),
        ("all", {"tenant_id": "ACME"}, 422),
        ("all", {"tenant_id": "acme", "x": 1}, 422),
        ("all", {"tenant_id": "acme", "display_name": "x" * 2000}, 413),
    ],
)
async def test_refused_requests_are_problems_and_publish_nothing(
    world, headers, body, status
) -> None:  # type: ignore[no-untyped-def]
    client, ops, _, publisher = world
    if headers == "read-only":
        headers = auth(["tenants:read"])
    elif headers == "all":
        headers = auth()
    answer = await client.post("/v1/tenants", json=body, headers=headers)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == status
    assert publisher.sent == [] and ops.rows == {}


async def test_a_chunked_body_over_the_limit_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    client, ops, _, publisher = world

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"tenant_id": "acme", "display_name": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    answer = await client.post(
        "/v1/tenants", content=chunks(), headers={**auth(), "content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert publisher.sent == [] and ops.rows == {}


async def test_over_the_limit_is_429_with_retry_after() -> None:
    ctx, *_ = fake_context(FakeLimiter(allow=2))
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        statuses = [(await client.get("/v1/tenants", headers=auth())).status_code for _ in range(3)]
        refused = await client.get("/v1/tenants", headers=auth())
    assert statuses == [200, 200, 429]
    assert refused.headers["retry-after"] == "7" and "ratelimit-limit" in refused.headers
    assert refused.headers["content-type"] == "application/problem+json"


async def test_an_unparsable_body_is_a_documented_422_problem(world) -> None:  # type: ignore[no-untyped-def]
    # Bytes that are not JSON text at all (schemathesis found FastAPI answering these 400, a
    # status the OpenAPI document does not list).
    client, ops, _, publisher = world
    answer = await client.post(
        "/v1/tenants/acme:suspend",
        content=b"\xff}\xfe?C\r\x9e.QL?\x15",
        headers={**auth(), "content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"].endswith("invalid_request")
    assert publisher.sent == [] and ops.rows == {}


async def test_a_nul_character_in_a_body_string_is_a_422_problem(world) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL text and jsonb cannot hold NUL: schemathesis found it answering 500.
    client, ops, _, publisher = world
    answer = await client.post(
        "/v1/tenants/acme:suspend", json={"reason": "a\u0000b"}, headers=auth()
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert publisher.sent == [] and ops.rows == {}


async def test_the_console_page_loads_without_a_token_and_stays_out_of_the_openapi(world) -> None:  # type: ignore[no-untyped-def]
    client, *_ = world
    page = await client.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # The page holds no data: it asks the API, with the token typed into it, as a bearer.
    assert "sessionStorage" in page.text and '"Bearer "' in page.text
    assert "/console" not in (await client.get("/openapi.json")).json()["paths"]
