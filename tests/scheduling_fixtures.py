"""Helpers for the scheduler and metrics suites: many tenants made cheaply in SQL (not through
Kafka), their cleanup, a private redis-server, a worker's Prometheus series and ticks."""

# Table names are constants of the tests; values are bind parameters.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from adapters.kafka.producer import KafkaEventPublisher
from contracts import codec
from contracts.envelope import Envelope
from contracts.events import MetricsDue
from contracts.publish import record_of
from domain.tenant_ids import quote_ident
from tests.support import names as ns
from tests.support.waiting import wait_until
from tests.support.workers import free_port, http_get


def new_prefix() -> str:
    return f"s{secrets.token_hex(3)}_"


async def create_tenants(
    pg: asyncpg.Connection, tenant_ids: Sequence[str], plan: str, *, tables: int = 1
) -> None:
    """Schemas (with ``tables`` small tables each) and registry rows, in one transaction.

    No roles: the collection and the scheduler read the registry and the catalogue only.
    """
    ddl = []
    for tenant_id in tenant_ids:
        schema = quote_ident(ns.tenant(tenant_id))
        ddl.append(f"CREATE SCHEMA {schema};")
        ddl += [f"CREATE TABLE {schema}.t{i} (id int PRIMARY KEY, v text);" for i in range(tables)]
    async with pg.transaction():
        await pg.execute("\n".join(ddl))
        await pg.execute(
            f"INSERT INTO {ns.CONTROL}.tenants (tenant_id, schema_name, role_name, plan, status,"
            " schema_version) SELECT t, $3 || t, $3 || t, $2, 'active', 1"
            " FROM unnest($1::text[]) AS t",
            list(tenant_ids), plan, ns.names().tenant_prefix,
        )


async def drop_tenants(
    pg: asyncpg.Connection, tenant_ids: Sequence[str], redis_url: str | None = None
) -> None:
    """Everything these tests leave behind, in the control schema, the catalogue and Redis."""
    ids = list(tenant_ids)
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        await pg.execute(
            "".join(f"DROP SCHEMA IF EXISTS {quote_ident(f'{ns.tenant(t)}')} CASCADE;" for t in chunk)
        )
    for table, column in (
        ("tenants", "tenant_id"), ("scheduler_state", "subject"), ("tenant_metrics", "tenant_id"),
        ("inbox", "tenant_id"), ("backup_jobs", "tenant_id"), ("backups", "tenant_id"),
        ("tenant_keys", "tenant_id"),
    ):
        await pg.execute(f"DELETE FROM {ns.CONTROL}.{table} WHERE {column} = ANY($1::text[])", ids)
    await pg.execute(
        f"DELETE FROM {ns.CONTROL}.outbox WHERE key = ANY($1::bytea[])", [t.encode() for t in ids]
    )
    if redis_url:
        client = aioredis.from_url(redis_url)
        try:
            for start in range(0, len(ids), 500):
                await client.delete(*[f"{ns.REDIS}{t}:metrics" for t in ids[start : start + 500]])
        finally:
            await client.aclose()


def metrics_due(window_start: datetime, interval_s: int = 300) -> Envelope:
    return codec.envelope_for(
        MetricsDue(window_start=window_start, interval_seconds=interval_s), source="urn:tests"
    )


async def publish_tick(publisher: KafkaEventPublisher, envelope: Envelope) -> None:
    await publisher.publish(*record_of(envelope).message)


async def tick_row(pg: asyncpg.Connection, event_id: str) -> asyncpg.Record | None:
    return await pg.fetchrow(f"SELECT * FROM {ns.CONTROL}.metrics_ticks WHERE event_id = $1", event_id)


async def series(port: int, name: str, **labels: str) -> float:
    """The value of one Prometheus sample of a worker (0 when absent)."""
    _, body = await http_get(port, "/metrics")
    for line in body.decode().splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match["value"])
    return 0.0


class PrivateRedis:
    """A redis-server of our own on a free port, so a test can stop it without hurting others."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self._dir = workdir

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed (scripts/stack up installs it)"
        proc = await asyncio.create_subprocess_exec(
            server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "yes", "--dir", str(self._dir),
            "--pidfile", str(self._dir / f"redis-{self.port}.pid"),
            "--logfile", str(self._dir / f"redis-{self.port}.log"),
        )
        assert await proc.wait() == 0, "redis-server did not start"
        await wait_until(self._pong, 10, what=f"redis-server on {self.port}")

    async def stop(self) -> None:
        client = aioredis.from_url(self.url)
        try:
            await client.shutdown(nosave=True)
        except Exception:  # noqa: S110 - the server closes the connection as it exits
            pass
        finally:
            await client.aclose()
        await wait_until(self._down, 10, what=f"redis-server on {self.port} to stop")

    async def _pong(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        return True

    async def _down(self) -> bool:
        return not await self._pong()
