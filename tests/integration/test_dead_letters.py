"""Unusable records go to tenants.dlq untouched, with reason and origin; the partition moves on."""

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.kafka import dead_letters as dlq
from adapters.kafka.producer import KafkaEventPublisher
from contracts import codec, topics
from contracts.envelope import Envelope
from runtime.settings import Settings
from tests.support import names as ns
from tests.support.kafka import ResultLog, TopicTail, publish, requested
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack


def _envelope(tenant_id: str, type_: str, data: dict[str, Any]) -> bytes:
    event_id = str(uuid.uuid4())
    return codec.encode(
        Envelope(specversion="1.0", id=event_id, source="urn:tests", type=type_,
                 time=datetime.now(UTC), subject=tenant_id, correlationid=event_id, data=data)
    )


def _bad_records(tenant_id: str) -> dict[str, bytes]:
    """Reason -> value that must be dead-lettered for that reason."""
    return {
        "invalid_json": b"\xff\xfe not json",
        "not_cloudevent": json.dumps({"hello": "world"}).encode(),
        "unknown_type": _envelope(tenant_id, "TenantTeleported", {"tenant_id": tenant_id}),
        "invalid_data": _envelope(tenant_id, "TenantRequested", {"tenant_id": tenant_id}),
    }


@pytest.fixture
async def dead_letters(settings: Settings) -> AsyncIterator[TopicTail]:
    async with TopicTail(settings, topics.DLQ) as tail:
        yield tail


async def test_bad_records_are_dead_lettered_verbatim_and_the_partition_moves_on(
    results: ResultLog,
    dead_letters: TopicTail,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    key = tenant_id.encode()
    sent: dict[str, tuple[bytes, list[tuple[str, bytes]]]] = {}
    for reason, value in _bad_records(tenant_id).items():
        headers = [("x-test-reason", reason.encode()), ("x-trace", b"\x00\x01 ascii")]
        await publisher.publish(topics.LIFECYCLE, key, value, headers)
        sent[reason] = (value, headers)
    after = requested(tenant_id)
    await publish(publisher, after)

    assert (await results.first(after.id)).type == "TenantProvisioned"
    def all_dead_lettered() -> list[Any] | None:
        records = dead_letters.with_key(key)
        return records if len(records) >= len(sent) else None

    records = await wait_until(all_dead_lettered, 30, what="dead letters")

    by_reason = {_header(r, dlq.REASON).decode(): r for r in records}
    assert set(by_reason) == set(sent) and len(records) == len(sent)
    partitions, offsets = set(), []
    for reason, (value, headers) in sent.items():
        record = by_reason[reason]
        assert record.value == value
        assert record.key == key
        assert list(record.headers)[: len(headers)] == headers
        # the physical names: the session's namespace
        names = ns.names().topics
        assert _header(record, dlq.SOURCE_TOPIC) == names.lifecycle.encode()
        assert _header(record, dlq.GROUP) == names.group(topics.PROVISIONER_GROUP).encode()
        partitions.add(int(_header(record, dlq.SOURCE_PARTITION)))
        offsets.append(int(_header(record, dlq.SOURCE_OFFSET)))
    assert len(partitions) == 1  # one key, one partition
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


async def test_record_with_binary_header_is_dead_lettered_not_dropped(
    results: ResultLog,
    dead_letters: TopicTail,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    key = tenant_id.encode()
    headers = [("x-binary", b"\xff\xfe")]
    await publisher.publish(topics.LIFECYCLE, key, b"\xff\xfe not json", headers)
    after = requested(tenant_id)
    await publish(publisher, after)

    assert (await results.first(after.id)).type == "TenantProvisioned"
    # Same partition: the dead letter, if any, was acknowledged before ``after`` was handled.
    (record,) = await wait_until(lambda: dead_letters.with_key(key), 10, what="dead letter")
    assert list(record.headers)[:1] == headers
    assert _header(record, dlq.REASON) == b"invalid_json"


def _header(record: Any, name: str) -> bytes:
    values = [v for k, v in record.headers if k == name]
    assert len(values) == 1, f"expected one {name} header, got {values}"
    return bytes(values[0])
