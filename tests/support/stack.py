"""Fixtures against the real local stack: settings from .env (in the session's own namespace, see
tests/conftest.py), one worker for the session,
unique tenant ids that are dropped at the end, and observers of tenants.events.

Registered once, in tests/conftest.py, so every suite shares ONE session worker: a second
definition (say in another package's conftest) would start a second worker in the same group."""

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.pool import create_pool
from runtime.settings import Settings, load_settings
from tests.support.kafka import ResultLog
from tests.support.postgres import drop_namespace, drop_tenants
from tests.support.workers import WorkerProcess

SESSION_ROLES = ("provisioner", "relay")


class TenantIds:
    """Hands out unique tenant ids and remembers them for the session's cleanup."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def new(self) -> str:
        return self.track(f"t_{secrets.token_hex(4)}")

    def track(self, tenant_id: str) -> str:
        self.ids.append(tenant_id)
        return tenant_id


class SessionWorker:
    """The session's ``provisioner relay`` worker; a test may stop it and start a fresh one."""

    def __init__(self, log_dir: Path, grace_s: float) -> None:
        self._log_dir = log_dir
        self._grace_s = grace_s
        self._starts = 0
        self.current: WorkerProcess | None = None

    @property
    def process(self) -> WorkerProcess:
        assert self.current is not None and self.current.running, "session worker is not running"
        return self.current

    async def start(self) -> None:
        self._starts += 1
        self.current = WorkerProcess(
            SESSION_ROLES, self._log_dir / f"session-worker-{self._starts}.log"
        )
        await self.current.start()

    async def stop(self) -> None:
        assert self.current is not None
        code = await self.current.terminate(self._grace_s + 10)
        assert code == 0, f"session worker exited with {code}:\n{self.current.log_tail()}"
        self.current = None


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-logs")


@pytest.fixture(scope="session")
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    # The session's control schema exists before any test reads it, whichever test runs first
    # (a worker would create it on start; a test may need it before one starts).
    names = settings.names
    await ensure_control_schema(
        conn, names.control_schema, names.app_role, api_reader_role=names.api_reader_role
    )
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
async def service_pool(
    settings: Settings, pg: asyncpg.Connection, tenants: TenantIds
) -> AsyncIterator[asyncpg.Pool]:
    """A small pool as the workers connect, on the session's control schema (``pg`` made it;
    ``tenants`` drops it after this pool is closed), for the adapters' contract tests."""
    pool = await create_pool(settings.pg_pool, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def tenants(pg: asyncpg.Connection, settings: Settings) -> AsyncIterator[TenantIds]:
    registry = TenantIds()
    yield registry
    await drop_tenants(pg, registry.ids)
    await drop_namespace(pg, settings)


@pytest.fixture(scope="session")
async def session_worker(
    tenants: TenantIds, log_dir: Path, settings: Settings
) -> AsyncIterator[SessionWorker]:
    # Depends on ``tenants`` so the tenants are dropped only after the worker has stopped.
    worker = SessionWorker(log_dir, settings.shutdown_grace_s)
    await worker.start()
    yield worker
    if worker.current is not None:
        await worker.stop()


@pytest.fixture(scope="session")
async def publisher(settings: Settings) -> AsyncIterator[KafkaEventPublisher]:
    producer = KafkaEventPublisher(settings.kafka, client_id="tenant-service-tests")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def results(settings: Settings, session_worker: SessionWorker) -> AsyncIterator[ResultLog]:
    """tenants.events from now on: enter before publishing, so no result is missed."""
    async with ResultLog(settings) as log:
        yield log
