"""TENANT_NAMESPACE: which names it derives, that an empty one changes nothing, and what it refuses."""

import os
from pathlib import Path
from typing import Any

import pytest

from consumers.delivery import Delivery, RetryPolicy
from contracts import codec, topics
from contracts.codec import DecodeLimits
from contracts.events import TenantRequested
from contracts.topics import Topics
from domain.namespaces import InvalidNamespace, lock_id, tenant_prefix, validate_namespace
from domain.tenant_ids import PG_MAX_IDENTIFIER_BYTES, role_name, schema_name
from runtime.names import Names
from runtime.settings import load_settings

DSN = "postgresql://svc:pw@127.0.0.1:5432/tenants"
LONGEST_ID = "a" * 40


def _names(namespace: str) -> Names:
    return Names.of(
        namespace, control_schema="tenant_service", outbox_lock_id=7_311_001,
        scheduler_lock_id=7_311_010,
    )


def test_no_namespace_keeps_every_historical_name() -> None:
    names = _names("")
    assert names.topics.all == topics.ALL_TOPICS
    assert [names.topics.group(g) for g in topics.ALL_GROUPS] == list(topics.ALL_GROUPS)
    assert names.control_schema == "tenant_service"
    assert names.app_role == "tenant_app"
    assert schema_name("acme", names.tenant_prefix) == "tenant_acme"
    assert names.redis_prefix == "tenant:"
    assert (names.outbox_lock_id, names.scheduler_lock_id) == (7_311_001, 7_311_010)
    assert names.retention_lock_id == 7_311_020
    assert names.api_reader_role == "tenant_api_reader"
    assert names.restore_role == "tenant_service_restore"
    assert names.session_tag_prefix == "tenant:"
    assert names.api_ratelimit_prefix == "tenant-api:rl:"
    assert names.topics.group(topics.DLQ_REPLAY_GROUP) == "tenantctl-dlq-replay"


def test_a_namespace_prefixes_every_shared_name() -> None:
    names = _names("staging")
    assert names.topics.lifecycle == "staging.tenants.lifecycle"
    assert names.topics.all == tuple(f"staging.{t}" for t in topics.ALL_TOPICS)
    assert names.topics.group(topics.BACKUP_GROUP) == "staging-tenant-backup"
    assert names.control_schema == "staging_tenant_service"
    assert names.app_role == "staging_tenant_app"
    assert schema_name("acme", names.tenant_prefix) == "staging_tenant_acme"
    assert role_name("acme", names.tenant_prefix) == "staging_tenant_acme"
    assert names.redis_prefix == "staging:tenant:"
    assert names.outbox_lock_id != 7_311_001
    assert names.retention_lock_id not in (7_311_020, names.outbox_lock_id)
    assert names.api_reader_role == "staging_tenant_api_reader"
    assert names.restore_role == "staging_tenant_service_restore"
    assert names.session_tag_prefix == "staging:tenant:"
    assert names.api_ratelimit_prefix == "staging:tenant-api:rl:"
    assert names.topics.group(topics.DLQ_REPLAY_GROUP) == "staging-tenantctl-dlq-replay"


def test_two_namespaces_share_no_name() -> None:
    a, b = _names("staging"), _names("prod")
    assert not set(a.topics.all) & set(b.topics.all)
    assert a.control_schema != b.control_schema
    assert a.app_role != b.app_role
    assert schema_name("acme", a.tenant_prefix) != schema_name("acme", b.tenant_prefix)
    assert a.redis_prefix != b.redis_prefix
    assert a.retention_lock_id != b.retention_lock_id
    assert a.api_reader_role != b.api_reader_role  # roles are cluster-wide
    assert a.restore_role != b.restore_role
    assert a.session_tag_prefix != b.session_tag_prefix  # suspension ends sessions by tag
    assert a.api_ratelimit_prefix != b.api_ratelimit_prefix
    assert a.topics.group(topics.DLQ_REPLAY_GROUP) != b.topics.group(topics.DLQ_REPLAY_GROUP)
    assert {a.outbox_lock_id, a.scheduler_lock_id}.isdisjoint({b.outbox_lock_id, b.scheduler_lock_id})


def test_the_longest_session_tag_fits_application_name() -> None:
    names = _names("a" * 15)
    assert len((names.session_tag_prefix + LONGEST_ID).encode()) <= PG_MAX_IDENTIFIER_BYTES


def test_the_client_package_publishes_to_a_namespace() -> None:
    from contracts.publish import record_for  # noqa: PLC0415

    event = TenantRequested(tenant_id="acme", plan="free")
    assert record_for(event, source="urn:t").topic == "tenants.lifecycle"
    assert record_for(event, source="urn:t", namespace="staging").topic == (
        "staging.tenants.lifecycle"
    )


def test_lock_ids_stay_postgres_bigints() -> None:
    for ns in ("a", "staging", "z" * 15):
        for base in (0, 7_311_001, 2**32 - 1):
            assert 0 <= lock_id(ns, base) < 2**63


def test_the_longest_namespace_and_tenant_id_fit_postgres_identifiers() -> None:
    longest = "n" * 15
    assert len(schema_name(LONGEST_ID, tenant_prefix(longest)).encode()) == PG_MAX_IDENTIFIER_BYTES


@pytest.mark.parametrize("bad", ["Staging", "a_b", "1abc", "a.b", "a-b", "n" * 16, "tenant"])
def test_invalid_namespaces_are_refused(bad: str) -> None:
    with pytest.raises(InvalidNamespace):
        validate_namespace(bad)


def test_no_namespace_is_a_prefix_clash_of_another() -> None:
    # "tenant" is reserved: <ns>_tenant_<id> would otherwise equal tenant_<id'> for id' = tenant_<id>
    assert schema_name("tenant_acme") != schema_name("acme", tenant_prefix("tenantx"))


def test_physical_topics_map_back_and_foreign_names_pass_through() -> None:
    names = Topics("prod")
    for logical in topics.ALL_TOPICS:
        assert names.logical(names.topic(logical)) == logical
    assert names.topic("staging.tenants.events") == "staging.tenants.events"
    assert names.logical("staging.tenants.events") == "staging.tenants.events"


class _Record:
    def __init__(self, topic: str, value: bytes) -> None:
        self.topic, self.value, self.key = topic, value, b"acme"
        self.partition, self.offset, self.headers = 0, 0, []


class _Message:
    def __init__(self, record: _Record) -> None:
        self.raw_message, self.consumer = record, None

    async def nack(self) -> None:
        raise AssertionError("nacked")


class _DeadLetters:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, record: Any, *, group: str, reason: str, detail: str) -> None:
        self.sent.append(reason)


async def test_delivery_checks_an_event_against_its_logical_topic() -> None:
    """A TenantRequested on prod.tenants.lifecycle belongs there; on prod.tenants.backups not."""
    handled: list[str] = []

    async def handler(decoded: Any) -> None:
        handled.append(decoded.envelope.subject)

    dead = _DeadLetters()
    delivery = Delivery(
        group="prod-tenant-provisioner",
        handlers={TenantRequested: handler},
        dead_letters=dead,
        retry=RetryPolicy(1, 0.01, 0.01, 1),
        limits=DecodeLimits(max_bytes=1 << 20, max_future_s=300, max_age_s=86_400),
        topics=Topics("prod"),
    )
    value = codec.encode(codec.envelope_for(TenantRequested(tenant_id="acme", plan="free"),
                                            source="urn:test"))
    delivery.offsets.mark = _noop  # type: ignore[method-assign]
    await delivery(_Message(_Record("prod.tenants.lifecycle", value)))  # type: ignore[arg-type]
    await delivery(_Message(_Record("prod.tenants.backups", value)))  # type: ignore[arg-type]
    assert handled == ["acme"]
    assert dead.sent == [codec.WRONG_TOPIC]


async def _noop(*args: Any) -> None:
    return None


def test_a_bad_namespace_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("TENANT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TENANT_PG_DSN", DSN)
    monkeypatch.setenv("TENANT_NAMESPACE", "Prod_1")
    with pytest.raises(SystemExit, match="TENANT_NAMESPACE"):
        load_settings()
    monkeypatch.setenv("TENANT_NAMESPACE", "prod")
    monkeypatch.setenv("TENANT_CONTROL_SCHEMA", "c" * 60)
    with pytest.raises(SystemExit, match="TENANT_NAMESPACE, TENANT_CONTROL_SCHEMA"):
        load_settings()


@pytest.mark.parametrize("namespace", ["", "staging"])
def test_ids_naming_the_deployments_own_objects_are_reserved(namespace: str) -> None:
    names = Names.of(namespace, control_schema="tenant_service", outbox_lock_id=1, scheduler_lock_id=2)
    assert names.reserved_tenant_ids == {"service", "app", "api_reader", "service_restore"}
    owns = {names.control_schema, names.app_role, names.api_reader_role, names.restore_role}
    assert {names.tenant_prefix + i for i in names.reserved_tenant_ids} == owns


def test_an_own_name_outside_the_tenant_prefix_reserves_nothing() -> None:
    names = Names.of("", control_schema="control", app_role="svc", outbox_lock_id=1,
                     scheduler_lock_id=2, api_reader_role="reader")
    assert names.reserved_tenant_ids == frozenset()
