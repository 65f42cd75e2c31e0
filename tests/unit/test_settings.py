"""load_settings: a wrong or missing variable stops start-up naming the variable."""

import os
from pathlib import Path

import pytest

from runtime.settings import Settings, load_settings

DSN = "postgresql://svc:hunter2@127.0.0.1:5432/tenants"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No .env (other working directory) and no TENANT_* variable from the caller's shell."""
    monkeypatch.chdir(tmp_path)

    for name in [n for n in os.environ if n.startswith("TENANT_")]:
        monkeypatch.delenv(name)


def _message(exc: pytest.ExceptionInfo[SystemExit]) -> str:
    return str(exc.value)


def test_valid_environment_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_PG_DSN", DSN)
    monkeypatch.setenv("TENANT_PLANS", "free, pro")
    settings = load_settings()
    assert isinstance(settings, Settings)
    assert settings.pg_dsn.get_secret_value() == DSN
    assert settings.plans == frozenset({"free", "pro"})
    assert "hunter2" not in repr(settings)


def test_non_integer_partitions_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_PG_DSN", DSN)
    monkeypatch.setenv("TENANT_KAFKA_PARTITIONS", "abc")
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert "TENANT_KAFKA_PARTITIONS" in _message(exc)
    assert "TENANT_PG_DSN" not in _message(exc)


def test_missing_dsn_names_the_variable() -> None:
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert "TENANT_PG_DSN" in _message(exc)


def test_wrong_dsn_scheme_is_named_without_leaking_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TENANT_PG_DSN", "mysql://svc:hunter2@db/tenants")
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert "TENANT_PG_DSN" in _message(exc)
    assert "hunter2" not in _message(exc)


def test_every_wrong_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_KAFKA_PARTITIONS", "0")
    monkeypatch.setenv("TENANT_LOG_LEVEL", "LOUD")
    with pytest.raises(SystemExit) as exc:
        load_settings()
    for name in ("TENANT_KAFKA_PARTITIONS", "TENANT_LOG_LEVEL", "TENANT_PG_DSN"):
        assert name in _message(exc)


def test_default_plan_outside_plans_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_PG_DSN", DSN)
    monkeypatch.setenv("TENANT_DEFAULT_PLAN", "gold")
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert "TENANT_DEFAULT_PLAN" in _message(exc)


async def test_the_producer_sends_a_whole_record_of_the_largest_value() -> None:
    """One figure, max_message_bytes plus 64 KiB for key, headers and framing, sizes the
    producer's requests (and the topics and the consumers' fetches, which read the same one)."""
    from adapters.kafka.producer import BATCH_BYTES, KafkaEventPublisher

    settings = Settings(pg_dsn=DSN, max_message_bytes=2_000_000)  # type: ignore[arg-type]
    assert settings.kafka_record_bytes == 2_000_000 + 64 * 1024
    producer = KafkaEventPublisher(settings.kafka, client_id="t")._new_producer()
    assert producer._max_request_size == settings.kafka_record_bytes
    # Batches of many records per request, but under a stock broker's 1 MiB batch limit.
    assert producer._message_accumulator._batch_size == BATCH_BYTES < 1 << 20
