"""record_of: the one rule from an envelope to its Kafka record (topic, key, value, headers)."""

from datetime import UTC, datetime

import pytest

from contracts import codec, topics
from contracts.codec import DecodeLimits, kafka_headers
from contracts.events import (
    ALL_TENANTS,
    BackupDue,
    Event,
    MetricsDue,
    RestoreRequested,
    TenantProvisioned,
    TenantRequested,
)
from contracts.publish import record_of

LIMITS = DecodeLimits(max_bytes=1 << 20, max_future_s=60, max_age_s=3600)
WINDOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("event", "topic", "key"), [
    (TenantRequested(tenant_id="acme", plan="pro"), topics.LIFECYCLE, b"acme"),
    (BackupDue(tenant_id="acme", trigger="manual"), topics.BACKUPS, b"acme"),
    (RestoreRequested(tenant_id="acme", backup_id="b-1"), topics.BACKUPS, b"acme"),
    (MetricsDue(window_start=WINDOW, interval_seconds=300), topics.METRICS, ALL_TENANTS.encode()),
    (TenantProvisioned(tenant_id="acme", plan="pro", schema_name="t_acme", role_name="t_acme",
                       schema_version=1),
     topics.EVENTS, b"acme"),
])
def test_a_record_goes_to_its_types_topic_keyed_by_its_subject(
    event: Event, topic: str, key: bytes
) -> None:
    envelope = codec.envelope_for(event, source="urn:tests")
    record = record_of(envelope)
    assert record.message == (topic, key, record.value, record.headers)
    assert record.envelope is envelope


def test_a_structured_record_is_the_encoded_envelope_with_our_headers_as_bytes() -> None:
    envelope = codec.envelope_for(TenantRequested(tenant_id="acme", plan="pro"), source="urn:t")
    record = record_of(envelope)
    assert record.value == codec.encode(envelope)
    assert record.headers == [(k, v.encode()) for k, v in codec.headers_for(envelope).items()]


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_a_record_decodes_back_to_its_envelope(mode: codec.ContentMode) -> None:
    envelope = codec.envelope_for(TenantRequested(tenant_id="acme", plan="pro"), source="urn:t")
    record = record_of(envelope, mode=mode)
    decoded = codec.decode(record.value, key=record.key, topic=record.topic, limits=LIMITS,
                           headers=record.headers)
    assert decoded.envelope == envelope


def test_a_namespace_makes_the_topic_physical_and_changes_nothing_else() -> None:
    envelope = codec.envelope_for(TenantRequested(tenant_id="acme", plan="pro"), source="urn:t")
    plain, staged = record_of(envelope), record_of(envelope, namespace="staging")
    assert staged.topic == "staging." + topics.LIFECYCLE
    assert staged.message[1:] == plain.message[1:]


def test_kafka_headers_are_the_utf8_bytes_of_our_text_headers_in_order() -> None:
    assert kafka_headers({"b": "é", "a": "1"}) == [("b", "é".encode()), ("a", b"1")]
    assert kafka_headers({}) == []
