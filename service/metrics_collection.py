"""MetricsDue -> figures of every tenant, in one inbox transaction.

Postgres figures (one statement for all tenants) and Redis usage (one SCAN pass) are joined
into a snapshot per tenant: the latest goes to Redis with a TTL, every one to the bounded
history, and TenantMetricsCollected per tenant (+ TenantQuotaExceeded while a tenant is over
its plan's limit, once per tick) to the outbox with ids derived from the tick's id. The number
of SQL statements of a tick does not depend on the tenant count; ``last_tick`` tells how many.

Redis unreachable -> TransientError: the transaction rolls back (inbox row included) and the
consumer retries the tick; readiness reports Redis down meanwhile.
"""

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from adapters.postgres.errors import translated
from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.tenant_metrics import PostgresTenantMetrics, Snapshot
from adapters.redis_usage import RedisTenantUsage
from contracts.codec import Decoded, envelope_for
from contracts.envelope import Envelope, result_event_id
from contracts.events import MetricsDue, Result, TenantMetricsCollected, TenantQuotaExceeded
from runtime import metrics
from service.event_transaction import EventTransaction, Staged

log = structlog.get_logger(__name__)

FRESHNESS_BUCKETS_S = (3600.0, 6 * 3600.0, 86400.0, 2 * 86400.0, 7 * 86400.0, float("inf"))


@dataclass(frozen=True)
class Quotas:
    size_bytes: Mapping[str, int]
    connections: Mapping[str, int]


@dataclass(frozen=True)
class TickStats:
    window_start: datetime
    tenants: int
    statements: int  # every SQL statement the tick's effect ran, counted by the driver
    quota_exceeded: int


class MetricsCollection:
    def __init__(
        self,
        transaction: EventTransaction,
        figures: PostgresTenantMetrics,
        usage: RedisTenantUsage,
        outbox: PostgresOutbox,
        quotas: Quotas,
        *,
        snapshot_ttl_s: int,
        history_length: int,
        source: str,
    ) -> None:
        self._transaction, self._figures, self._usage = transaction, figures, usage
        self._outbox, self._quotas = outbox, quotas
        self._ttl, self._keep, self._source = snapshot_ttl_s, history_length, source
        self.last_tick: TickStats | None = None

    async def metrics_due(self, decoded: Decoded[MetricsDue]) -> Any:
        env, event = decoded.envelope, decoded.event

        async def effect(conn: asyncpg.Connection) -> Staged:
            return await self._collect(conn, env, event)

        started = time.perf_counter()
        result = await self._transaction.run(env, effect, source=self._source)
        if result is not None:
            metrics.METRICS_TICK_SECONDS.observe(time.perf_counter() - started)
        return result

    async def _collect(self, conn: asyncpg.Connection, env: Envelope, event: MetricsDue) -> Staged:
        statements = 0

        def count(query: asyncpg.connection.LoggedQuery) -> None:
            nonlocal statements
            statements += not _driver_internal(query.query)

        started = time.perf_counter()
        conn.add_query_logger(count)
        try:
            figures = await self._figures.collect(conn)
            usage = await self._usage.measure(f.tenant_id for f in figures)
            collected_at = datetime.now(UTC)
            snapshots = [
                Snapshot(
                    f,
                    event.window_start,
                    collected_at,
                    usage[f.tenant_id].bytes,
                    usage[f.tenant_id].keys,
                    usage[f.tenant_id].estimated,
                )
                for f in figures
            ]
            results = [r for s in snapshots for r in self._results(s)]
            envelopes = [_envelope(r, env, self._source) for r in results]
            # The statement count recorded is the one of the whole tick: the two outbox
            # statements and the three of record() are added before they run.
            recorded = await self._figures.record(
                conn,
                window_start=event.window_start,
                event_id=env.id,
                collected_at=collected_at,
                snapshots=snapshots,
                statements=statements + 5,
                duration_s=time.perf_counter() - started,
                keep_ticks=self._keep,
            )
            if recorded:
                await self._outbox.add_many(conn, envelopes)
                await self._usage.store_snapshots(
                    {s.figures.tenant_id: _snapshot_json(s) for s in snapshots}, self._ttl
                )
        finally:
            await asyncio.sleep(0)  # the driver calls query loggers with call_soon
            conn.remove_query_logger(count)
        exceeded = sum(isinstance(r, TenantQuotaExceeded) for r in results)
        self.last_tick = TickStats(event.window_start, len(snapshots), statements, exceeded)
        metrics.METRICS_TENANTS.set(len(snapshots))
        metrics.METRICS_TICK_STATEMENTS.set(statements)
        log.info(
            "metrics_collected",
            window_start=event.window_start.isoformat(),
            tenants=len(snapshots),
            statements=statements,
            quota_exceeded=exceeded,
            recorded=recorded,
        )
        return Staged(len(envelopes) if recorded else 0)

    def _results(self, s: Snapshot) -> list[Result]:
        f = s.figures
        out: list[Result] = [
            TenantMetricsCollected(
                tenant_id=f.tenant_id,
                collected_at=s.collected_at,
                size_bytes=f.size_bytes,
                table_count=f.table_count,
                live_tuples=f.live_tuples,
                dead_tuples=f.dead_tuples,
                bloat_bytes=f.bloat_bytes,
                seq_scans=f.seq_scans,
                idx_scans=f.idx_scans,
                cache_hit_ratio=f.cache_hit_ratio,
                connections=f.connections,
                redis_bytes=s.redis_bytes,
                redis_keys=s.redis_keys,
            )
        ]
        for quota, observed, limits in (
            ("size_bytes", f.size_bytes, self._quotas.size_bytes),
            ("connections", f.connections, self._quotas.connections),
        ):
            limit = limits.get(f.plan)
            if limit is not None and observed > limit:
                out.append(
                    TenantQuotaExceeded(
                        tenant_id=f.tenant_id,
                        quota=quota,  # type: ignore[arg-type]
                        limit=limit,
                        observed=observed,
                    )
                )
        return out


def _driver_internal(query: str) -> bool:
    """asyncpg's own statements: type introspection on a connection's first use of a type."""
    return (
        "typeinfo_tree" in query
        or "current_setting('jit')" in query
        or ("set_config('jit'" in query)
    )


def _envelope(result: Result, cause: Envelope, source: str) -> Envelope:
    """One id per (tick, result type, tenant[, quota]): a re-run stages the same rows."""
    name = type(result).__name__
    quota = getattr(result, "quota", None)
    discriminator = f"{name}:{quota}:{result.subject}" if quota else f"{name}:{result.subject}"
    return envelope_for(
        result, cause=cause, event_id=result_event_id(cause.id, discriminator), source=source
    )


def _snapshot_json(s: Snapshot) -> dict[str, Any]:
    return {
        **dataclasses.asdict(s.figures),
        "window_start": s.window_start.isoformat(),
        "collected_at": s.collected_at.isoformat(),
        "redis_bytes": s.redis_bytes,
        "redis_keys": s.redis_keys,
        "redis_estimated": s.redis_estimated,
    }


class BackupFreshness:
    """Every metrics worker refreshes the backup-age gauges from Postgres, so all instances
    export the same aggregate (see runtime/metrics.py for why there is no per-tenant series)."""

    def __init__(
        self, pool: asyncpg.Pool, figures: PostgresTenantMetrics, rpo_s: float, interval_s: float
    ) -> None:
        self._pool, self._figures, self._rpo, self._interval = pool, figures, rpo_s, interval_s
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                with translated("backup freshness"):
                    async with self._pool.acquire() as conn:
                        oldest, _, over, le_counts = await self._figures.backup_freshness(
                            conn, self._rpo, FRESHNESS_BUCKETS_S
                        )
                metrics.BACKUP_OLDEST_AGE.set(oldest)
                metrics.BACKUP_OVER_RPO.set(over)
                for le, n in zip(FRESHNESS_BUCKETS_S, le_counts, strict=True):
                    metrics.BACKUP_AGE_TENANTS.labels(
                        "+Inf" if le == float("inf") else str(int(le))
                    ).set(n)
            except Exception as e:  # a gauge that is late is better than a dead loop
                log.warning("backup_freshness_failed", error=str(e))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
