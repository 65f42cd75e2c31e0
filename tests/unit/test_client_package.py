"""The client distribution (clients/python): the contracts package stands alone.

contracts/ must import nothing but the standard library and pydantic (the distribution's only
dependency), or a client that installs it without the service gets an ImportError."""

import ast
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import contracts
from contracts import codec, topics
from contracts.codec import DecodeLimits
from contracts.events import CONTRACT_VERSION, TenantRequested
from contracts.publish import PublishError, publish_aiokafka, publish_confluent, record_for

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
CLIENT_PYPROJECT = ROOT / "clients" / "python" / "pyproject.toml"
ALLOWED = {"pydantic", "contracts"}
LIMITS = DecodeLimits(max_bytes=65_536, max_future_s=60, max_age_s=60)


def imported_modules(source: str) -> set[str]:
    """Top-level names of the absolute imports in ``source`` (at any depth, even in functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_import_scan_sees_a_service_import() -> None:
    source = "import json\ndef f():\n    from domain.tenant_ids import quote_ident\n"
    assert imported_modules(source) - sys.stdlib_module_names == {"domain"}


def test_contracts_import_only_the_standard_library_and_pydantic() -> None:
    files = sorted(CONTRACTS.rglob("*.py"))
    assert len(files) >= 6, files
    foreign = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in imported_modules(path.read_text())
        if name not in sys.stdlib_module_names and name not in ALLOWED
    }
    assert not foreign, f"contracts/ must not depend on the service or other libraries: {foreign}"


def _client_project() -> dict[str, Any]:
    return tomllib.loads(CLIENT_PYPROJECT.read_text())


def test_distribution_depends_on_pydantic_only_and_points_at_contracts() -> None:
    project = _client_project()
    deps = [
        d.split(">")[0].split("<")[0].split("=")[0].strip()
        for d in project["project"]["dependencies"]
    ]
    assert deps == ["pydantic"]
    assert set(project["project"]["optional-dependencies"]) == {"aiokafka", "confluent"}
    package_dir = project["tool"]["setuptools"]["package-dir"]["contracts"]
    assert (CLIENT_PYPROJECT.parent / package_dir).resolve() == CONTRACTS


def test_version_follows_the_contract_and_has_a_changelog_entry() -> None:
    major = int(contracts.__version__.split(".")[0])
    assert major == CONTRACT_VERSION
    entries = [
        line.removeprefix("## ").strip()
        for line in (CONTRACTS / "CHANGELOG.md").read_text().splitlines()
        if line.startswith("## ")
    ]
    assert entries[0] == contracts.__version__, "the newest CHANGELOG entry is the version"


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_record_decodes_back_to_the_event(mode: codec.ContentMode) -> None:
    event = TenantRequested(tenant_id="acme", plan="pro")
    record = record_for(event, source="urn:billing", mode=mode)
    assert (record.topic, record.key) == (topics.LIFECYCLE, b"acme")
    decoded = codec.decode(
        record.value, key=record.key, topic=record.topic, limits=LIMITS, headers=record.headers
    )
    assert decoded.event == event
    assert decoded.envelope.source == "urn:billing"
    assert decoded.envelope.correlationid == record.envelope.id  # correlates with itself
    assert (b"1.0" in dict(record.headers).get("ce_specversion", b"")) == (mode == "binary")


class FakeAIOKafkaProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Any = None,
    ) -> None:
        assert value is not None and key is not None
        self.sent.append((topic, key, value, list(headers)))


async def test_publish_aiokafka_sends_one_keyed_record() -> None:
    producer = FakeAIOKafkaProducer()
    envelope = await publish_aiokafka(
        producer,
        TenantRequested(tenant_id="acme", plan="pro"),
        source="urn:billing",
        correlation_id="order-7",
        event_id="req-1",
    )
    [(topic, key, value, headers)] = producer.sent
    assert (topic, key) == (topics.LIFECYCLE, b"acme")
    assert (envelope.id, envelope.correlationid) == ("req-1", "order-7")
    assert codec.read_envelope(value, headers) == envelope


class FakeConfluentProducer:
    """Delivers (or fails) on flush, like librdkafka's callbacks served by poll/flush."""

    def __init__(self, error: str | None = None, stuck: bool = False) -> None:
        self.error, self.stuck = error, stuck
        self.produced: list[dict[str, Any]] = []

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        self.produced.append({"topic": topic, **kwargs})

    def flush(self, timeout: float = -1) -> int:
        if self.stuck:
            return len(self.produced)
        for record in self.produced:
            record["on_delivery"](self.error, None)
        return 0


def test_publish_confluent_waits_for_delivery() -> None:
    producer = FakeConfluentProducer()
    envelope = publish_confluent(
        producer, TenantRequested(tenant_id="acme", plan="pro"), source="urn:billing", mode="binary"
    )
    [record] = producer.produced
    assert (record["topic"], record["key"]) == (topics.LIFECYCLE, b"acme")
    assert codec.read_envelope(record["value"], record["headers"]).id == envelope.id


@pytest.mark.parametrize(
    ("producer", "why"),
    [
        (FakeConfluentProducer(error="broker down"), "broker down"),
        (FakeConfluentProducer(stuck=True), "not confirmed"),
    ],
)
def test_publish_confluent_raises_when_not_delivered(
    producer: FakeConfluentProducer, why: str
) -> None:
    with pytest.raises(PublishError, match=why) as raised:
        publish_confluent(
            producer,
            TenantRequested(tenant_id="acme", plan="pro"),
            source="urn:b",
            event_id="req-9",
        )
    assert raised.value.event_id == "req-9"  # publish again with it: the same request
