"""MetricsDue over 1,000 tenants: every tenant collected, the same number of SQL statements at
10 and at 1,000 tenants, quotas, and a Redis outage that fails the tick cleanly until it ends."""

# Table names are constants of the tests; values are bind parameters.
# ruff: noqa: S608

import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.pool import create_pool
from adapters.postgres.tenant_figures import PostgresTenantFigures
from adapters.postgres.unit_of_work import PostgresStores, PostgresUnitOfWorks
from adapters.redis_usage import RedisTenantUsage, RedisUsage
from contracts import codec, topics
from contracts.codec import Decoded
from contracts.envelope import result_event_id
from contracts.events import MetricsDue, TenantMetricsCollected, TenantQuotaExceeded
from runtime.settings import Settings
from service.event_transaction import EventTransaction
from service.metrics_collection import MetricsCollection, Quotas
from tests.scheduling_fixtures import (
    PrivateRedis,
    create_tenants,
    drop_tenants,
    metrics_due,
    new_prefix,
    publish_tick,
    series,
    tick_row,
)
from tests.support import names as ns
from tests.support.kafka import group_members
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess, http_get

pytestmark = pytest.mark.stack
MANY = 1000
QUOTA_PLAN = "quota_test"
TICK_TIMEOUT_S = 90.0


def window() -> datetime:
    """A window no scheduler emits (those are aligned to whole seconds)."""
    return datetime.now(UTC).replace(microsecond=random.randint(1, 999_999))


@pytest.fixture(scope="module")
async def redis_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    await server.start()
    yield server
    if await server._pong():
        await server.stop()


@pytest.fixture(scope="module")
async def many(pg: asyncpg.Connection, redis_server: PrivateRedis) -> AsyncIterator[list[str]]:
    """1,000 tenant ids; the tests create them (10 first, then the rest)."""
    prefix = new_prefix()
    ids = [f"{prefix}{i:04d}" for i in range(MANY)]
    yield ids
    await drop_tenants(pg, [*ids, f"{prefix}quota"], redis_server.url)


@pytest.fixture(scope="module")
async def collection(
    settings: Settings, redis_server: PrivateRedis
) -> AsyncIterator[MetricsCollection]:
    """The service wired as metrics_role does, in this process, to count its statements."""
    pool = await create_pool(settings.pg_pool, max_size=2)
    client = aioredis.from_url(redis_server.url)
    s, control = settings, settings.names.control_schema
    yield MetricsCollection(
        EventTransaction(
            PostgresUnitOfWorks(
                pool, PostgresStores.of(control, s.names.tenant_store(), PostgresOutbox(control))
            ),
            "tenant-metrics-statements-test",
        ),
        PostgresTenantFigures(pool, settings.names.tenant_metrics()),
        RedisTenantUsage(client, scan_count=s.metrics_redis_scan_count,
                         max_keys=s.metrics_redis_max_keys,
                         sample_keys=s.metrics_redis_sample_keys, prefix=s.names.redis_prefix),
        Quotas(size_bytes=s.quota_size_bytes, connections=s.quota_connections),
        snapshot_ttl_s=60, history_length=s.metrics_history_length, source="urn:tests",
    )
    await client.aclose()
    await pool.close()


@pytest.fixture(scope="module")
async def metrics_worker(
    redis_server: PrivateRedis, log_dir: Path, settings: Settings
) -> AsyncIterator[WorkerProcess]:
    worker = WorkerProcess(["metrics"], log_dir / "metrics-worker.log", {
        "TENANT_REDIS_URL": redis_server.url,
        "TENANT_QUOTA_CONNECTIONS": json.dumps({QUOTA_PLAN: 0}),
        "TENANT_RETRY_ATTEMPTS": "2",
        "TENANT_RETRY_BASE_DELAY_S": "0.1",
        "TENANT_RETRY_MAX_DELAY_S": "0.3",
        # One group member, so sole_member() can tell it from another process's consumers.
        "TENANT_CONSUMER_CONCURRENCY": "1",
    })
    await worker.start()

    async def sole_member() -> bool:
        state, members = await group_members(settings, topics.METRICS_GROUP)
        assert len(members) <= 1, (
            f"another {topics.METRICS_GROUP} member is running: it could take our ticks"
        )
        return state == "Stable" and members == [settings.kafka_partitions]

    await wait_until(sole_member, 60, what="the metrics worker to own tenants.metrics")
    yield worker
    assert await worker.terminate(settings.shutdown_grace_s + 10) == 0, worker.log_tail()


async def _tick(collection: MetricsCollection) -> None:
    envelope = metrics_due(window())
    event = MetricsDue.model_validate(envelope.data)
    assert await collection.metrics_due(Decoded(envelope, event)) is not None


async def test_results_built_without_validation_are_the_bytes_envelope_for_would_write(
    collection: MetricsCollection,
) -> None:
    """The per-tenant results skip pydantic (speed); their wire format must not drift from
    codec.encode(envelope_for(...)) with the ids of one per (tick, type, tenant[, quota])."""
    cause = metrics_due(window())
    at = datetime.now(UTC)
    figures = [  # collect()'s columns: tenant_id, plan, sizes and counts, ratio, vacuum, analyze, conns
        ("acme_a", "free", 123456, 3, 10, 1, 8192, 5, 7, 0.987654321, at, None, 2),
        ("acme_b", QUOTA_PLAN, 0, 0, 0, 0, 0, 0, 0, None, None, None, 1),
    ]
    redis = [RedisUsage(400, 1, False), RedisUsage(0, 0, False)]
    quotas = collection._quotas
    collection._quotas = Quotas(size_bytes={}, connections={QUOTA_PLAN: 0})
    try:
        built = await collection._envelopes(figures, redis, cause, at)
    finally:
        collection._quotas = quotas
    assert [e.type for e in built] == [
        "TenantMetricsCollected", "TenantMetricsCollected", "TenantQuotaExceeded"
    ]
    for envelope, f, u in zip(built, figures, redis, strict=False):
        event = TenantMetricsCollected(
            tenant_id=f[0], collected_at=at, size_bytes=f[2], table_count=f[3], live_tuples=f[4],
            dead_tuples=f[5], bloat_bytes=f[6], seq_scans=f[7], idx_scans=f[8],
            cache_hit_ratio=f[9], connections=f[12], redis_bytes=u.bytes, redis_keys=u.keys,
        )
        expected = codec.envelope_for(
            event, cause=cause, source="urn:tests",
            event_id=result_event_id(cause.id, f"TenantMetricsCollected:{f[0]}"),
        ).model_copy(update={"time": envelope.time})
        assert codec.encode(envelope) == codec.encode(expected)
        assert codec.headers_for(envelope) == codec.headers_for(expected)
        decoded = codec.decode(codec.encode(envelope), key=f[0].encode(), topic=topics.EVENTS,
                               limits=codec.DecodeLimits(1 << 20, 300.0, 86_400.0))
        assert decoded.event == event
    assert built[2].id == result_event_id(cause.id, "TenantQuotaExceeded:connections:acme_b")
    assert built[2].data == TenantQuotaExceeded(
        tenant_id="acme_b", quota="connections", limit=0, observed=1
    ).model_dump(mode="json")


async def test_statements_per_tick_are_the_same_at_10_and_1000_tenants(
    collection: MetricsCollection, many: list[str], pg: asyncpg.Connection
) -> None:
    await create_tenants(pg, many[:10], "free")
    await _tick(collection)
    small = collection.last_tick
    await create_tenants(pg, many[10:], "free", tables=2)
    await _tick(collection)
    large = collection.last_tick
    assert small is not None and large is not None
    assert large.tenants >= MANY > small.tenants
    assert small.statements == large.statements, (small, large)
    recorded = await pg.fetchval(
        f"SELECT statements FROM {ns.CONTROL}.metrics_ticks WHERE window_start = $1",
        large.window_start,
    )
    assert recorded == large.statements


async def test_a_tick_over_1000_tenants_collects_all_of_them(
    metrics_worker: WorkerProcess, many: list[str], pg: asyncpg.Connection,
    publisher: KafkaEventPublisher, redis_server: PrivateRedis, collection: MetricsCollection,
    settings: Settings,
) -> None:
    assert await pg.fetchval(
        f"SELECT count(*) FROM {ns.CONTROL}.tenants WHERE tenant_id = ANY($1)", many
    ) == MANY, "the statement test creates the tenants"
    over = many[0].rsplit("_", 1)[0] + "_quota"
    await create_tenants(pg, [over], QUOTA_PLAN)
    client = aioredis.from_url(redis_server.url)
    await client.set(f"{ns.REDIS}{many[0]}:cache:a", b"x" * 5000)
    # A session announcing itself as the tenant (the tenant_app convention) is counted.
    session = await asyncpg.connect(
        settings.pg_dsn.get_secret_value(),
        server_settings={"application_name": ns.session_tag(over)},
    )
    try:
        envelope = metrics_due(window())
        await publish_tick(publisher, envelope)
        row = await wait_until(lambda: tick_row(pg, envelope.id), TICK_TIMEOUT_S, what="the tick")
    finally:
        await session.close()
    collected = await pg.fetch(
        f"SELECT tenant_id, table_count, connections, redis_keys, redis_bytes"
        f" FROM {ns.CONTROL}.tenant_metrics WHERE window_start = $1 AND tenant_id = ANY($2)",
        row["window_start"], [*many, over],
    )
    by_id = {r["tenant_id"]: r for r in collected}
    assert set(by_id) == {*many, over}
    assert row["tenants"] >= MANY + 1
    assert by_id[many[0]]["table_count"] == 1 and by_id[many[-1]]["table_count"] == 2
    assert by_id[many[0]]["redis_keys"] >= 1 and by_id[many[0]]["redis_bytes"] >= 5000
    assert by_id[over]["connections"] == 1
    # same statements through the worker as in this process, whatever the tenant count
    assert row["statements"] == collection.last_tick.statements  # type: ignore[union-attr]
    assert await series(metrics_worker.port, "tenant_metrics_tick_statements") == row["statements"]
    # one TenantMetricsCollected per tenant, and the quota, in the outbox
    ids = [result_event_id(envelope.id, f"TenantMetricsCollected:{t}") for t in [*many, over]]
    assert await pg.fetchval(
        f"SELECT count(*) FROM {ns.CONTROL}.outbox WHERE event_id = ANY($1)", ids
    ) == MANY + 1
    quota = await pg.fetchrow(
        f"SELECT payload FROM {ns.CONTROL}.outbox WHERE event_id = $1",
        result_event_id(envelope.id, f"TenantQuotaExceeded:connections:{over}"),
    )
    assert quota is not None
    assert json.loads(quota["payload"])["data"] == {
        "tenant_id": over, "quota": "connections", "limit": 0, "observed": 1
    }
    raw = await client.get(f"{ns.REDIS}{many[0]}:metrics")
    assert raw is not None
    snapshot = json.loads(raw)
    assert snapshot["window_start"] == row["window_start"].isoformat()
    assert 0 < await client.ttl(f"{ns.REDIS}{many[0]}:metrics")
    await client.aclose()


async def test_redis_down_fails_the_tick_cleanly_until_it_is_back(
    metrics_worker: WorkerProcess, pg: asyncpg.Connection, publisher: KafkaEventPublisher,
    redis_server: PrivateRedis,
) -> None:
    port = metrics_worker.port
    labels = {"group": ns.names().topics.group(topics.METRICS_GROUP), "type": "MetricsDue"}
    retried = await series(port, "tenant_events_total", outcome="retried", **labels)
    await redis_server.stop()
    try:
        envelope = metrics_due(window())
        await publish_tick(publisher, envelope)

        async def redis_reported_down() -> bool:
            status, body = await http_get(port, "/readyz")
            return status == 503 and json.loads(body)["checks"]["redis"].startswith("error")

        await wait_until(redis_reported_down, 30, what="/readyz to report redis down")
        await wait_until(
            lambda: _above(port, retried, outcome="retried", **labels), 30,
            what="the tick to be retried",
        )
        assert await tick_row(pg, envelope.id) is None
        assert await _inbox(pg, envelope.id) == 0, "a failed tick left its inbox row"
    finally:
        await redis_server.start()
    row = await wait_until(
        lambda: tick_row(pg, envelope.id), TICK_TIMEOUT_S, what="the tick after redis is back"
    )
    assert row["tenants"] > 0
    assert await _inbox(pg, envelope.id) == 1
    status, _ = await http_get(port, "/readyz")
    assert status == 200


async def _above(port: int, before: float, **labels: str) -> bool:
    return await series(port, "tenant_events_total", **labels) > before


async def _inbox(pg: asyncpg.Connection, event_id: str) -> int:
    return int(await pg.fetchval(
        f"SELECT count(*) FROM {ns.CONTROL}.inbox WHERE consumer_group = $1 AND event_id = $2",
        topics.METRICS_GROUP, event_id,
    ))



async def test_size_is_pg_total_relation_size_of_every_relation_sequences_included(
    settings: Settings, pg: asyncpg.Connection, redis_server: PrivateRedis,
) -> None:
    """collect() sizes sequences without reading their files (one block, two when unlogged):
    the figure must still be exactly the catalogue's, table, index, TOAST and sequences."""
    from adapters.postgres.control_schema import ensure_control_schema  # noqa: PLC0415
    from domain.tenant_ids import quote_ident  # noqa: PLC0415

    names = settings.names  # run alone, nothing may have made the control schema yet
    await ensure_control_schema(pg, names.control_schema, names.app_role,
                                api_reader_role=names.api_reader_role)
    tenant = f"{new_prefix()}seq"
    await create_tenants(pg, [tenant], "free")
    schema = quote_ident(ns.tenant(tenant))
    try:
        await pg.execute(
            f"CREATE TABLE {schema}.docs (id bigserial PRIMARY KEY, body text);"
            f" INSERT INTO {schema}.docs (body) SELECT repeat('x', 3000) FROM generate_series(1, 50);"
            f" CREATE UNLOGGED SEQUENCE {schema}.u; CREATE SEQUENCE {schema}.l;"
        )
        expected = await pg.fetchval(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm', 'S')",
            ns.tenant(tenant),
        )
        async with pg.transaction():
            rows = await names.tenant_metrics().collect(pg)
        (mine,) = [r for r in rows if r["tenant_id"] == tenant]
        assert mine["size_bytes"] == expected, (mine["size_bytes"], expected)
        assert mine["table_count"] == 2
    finally:
        await drop_tenants(pg, [tenant], redis_server.url)
