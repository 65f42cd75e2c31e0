"""An operation saved but never published (its process died in between) against fakes: it is
published again with the same event ids once overdue, or failed when it kept no requests."""

import datetime as dt
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from api.tokens import mint
from tests.unit.api_fakes import SECRET, fake_context

ALL = ["tenants:read", "tenants:write", "backups:write"]
HOUR_AGO = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)


def auth() -> dict[str, str]:
    return {
        "Authorization": f"Bearer {mint(SECRET, sub='bob', scopes=ALL, audience='tenant-service')}"
    }


@pytest.fixture
async def world() -> AsyncIterator[tuple[httpx.AsyncClient, object, object]]:
    ctx, ops, _, publisher = fake_context()
    transport = httpx.ASGITransport(app=create_app(ctx, max_body_bytes=1024))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client, ops, publisher


async def test_a_published_command_is_marked_so_and_keeps_its_requests(world) -> None:  # type: ignore[no-untyped-def]
    client, ops, publisher = world
    op = (await client.post("/v1/tenants", json={"tenant_id": "acme"}, headers=auth())).json()
    row = ops.rows[op["name"].split("/")[1]]
    assert row["published"] is True
    [(_, _, value, _)] = publisher.sent
    assert row["requests"] == [json.loads(value)]


async def test_an_overdue_unpublished_operation_is_published_again_with_its_event_id(world) -> None:  # type: ignore[no-untyped-def]
    client, ops, publisher = world
    op = (await client.post("/v1/tenants", json={"tenant_id": "acme"}, headers=auth())).json()
    row = ops.rows[op["name"].split("/")[1]]
    # As if the process died after saving and before publishing, an hour ago.
    row.update(published=False, publish_attempt_at=HOUR_AGO)
    publisher.sent.clear()

    busy = await client.post("/v1/tenants/acme:backup", headers=auth())
    again = await client.post("/v1/tenants/acme:backup", headers=auth())

    assert busy.status_code == 409 and again.status_code == 409  # it runs again, not failed
    [(topic, key, value, _)] = publisher.sent  # once: the claim restarts the clock
    assert (topic, key) == ("tenants.lifecycle", b"acme")
    assert json.loads(value)["id"] == op["event_id"]
    assert row["published"] is True and row["done"] is False


async def test_a_fresh_unpublished_operation_is_left_to_its_own_process(world) -> None:  # type: ignore[no-untyped-def]
    client, ops, publisher = world
    op = (await client.post("/v1/tenants", json={"tenant_id": "acme"}, headers=auth())).json()
    ops.rows[op["name"].split("/")[1]]["published"] = False  # publishing right now, elsewhere
    publisher.sent.clear()
    assert (await client.post("/v1/tenants/acme:backup", headers=auth())).status_code == 409
    assert publisher.sent == []


async def test_an_overdue_operation_without_requests_fails_and_frees_the_tenant(world) -> None:  # type: ignore[no-untyped-def]
    client, ops, publisher = world
    op = (await client.post("/v1/tenants", json={"tenant_id": "acme"}, headers=auth())).json()
    ops.rows[op["name"].split("/")[1]].update(
        published=False, publish_attempt_at=HOUR_AGO, requests=None
    )
    backup = await client.post("/v1/tenants/acme:backup", headers=auth())
    old = (await client.get(f"/v1/{op['name']}", headers=auth())).json()
    assert backup.status_code == 202
    assert old["done"] is True and old["error"]["code"] == "unavailable"
