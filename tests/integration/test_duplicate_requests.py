"""The same TenantRequested delivered three times is acted on, and answered, exactly once."""

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from tests.support import postgres as db
from tests.support.kafka import ResultLog, publish, requested
from tests.support.stack import TenantIds

pytestmark = pytest.mark.stack


async def test_same_event_id_three_times_gives_one_result(
    results: ResultLog, publisher: KafkaEventPublisher, tenants: TenantIds, pg: asyncpg.Connection
) -> None:
    tenant_id = tenants.new()
    first = requested(tenant_id)
    for _ in range(3):
        await publish(publisher, first)
    # Same key -> same partition -> handled after the triple; its result is staged in the outbox
    # after theirs and lands on the same tenants.events partition after theirs. Once it is seen,
    # every result of the triple has been seen too.
    sentinel = requested(tenant_id)
    await publish(publisher, sentinel)

    answer = await results.first(sentinel.id)

    assert answer.type == "TenantProvisioned"  # already provisioned: answered again, no DDL
    assert [e.type for e in results.caused_by(first.id)] == ["TenantProvisioned"]
    assert await db.inbox_count(pg, topics.PROVISIONER_GROUP, first.id) == 1
    assert await db.inbox_count(pg, topics.PROVISIONER_GROUP, sentinel.id) == 1
    registry = await db.registry_row(pg, tenant_id)
    assert registry is not None and registry["status"] == "active"
