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
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import TypeAdapter

from adapters.trace_context import stamp
from contracts.codec import Decoded, envelope_for
from contracts.envelope import Envelope, constructed, now, result_event_id
from contracts.events import MetricsDue, Result, TenantMetricsCollected, TenantQuotaExceeded
from runtime import metrics
from service.event_transaction import EventTransaction, Staged
from service.ports import TenantFigures, TenantUsage, Usage
from service.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

_COLLECTED = TenantMetricsCollected.__name__
_DATETIME = TypeAdapter(datetime)
_YIELD_EVERY = 500  # tenants between two yields to the event loop while building results
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
        transaction: EventTransaction[UnitOfWork],
        figures: TenantFigures,
        usage: TenantUsage,
        quotas: Quotas,
        *,
        snapshot_ttl_s: int,
        history_length: int,
        source: str,
    ) -> None:
        self._transaction, self._figures, self._usage = transaction, figures, usage
        self._quotas = quotas
        self._ttl, self._keep, self._source = snapshot_ttl_s, history_length, source
        self.last_tick: TickStats | None = None

    async def metrics_due(self, decoded: Decoded[MetricsDue]) -> Staged | None:
        env, event = decoded.envelope, decoded.event

        async def effect(uow: UnitOfWork) -> Staged:
            return await self._collect(uow, env, event)

        started = time.perf_counter()
        result = await self._transaction.run(env, effect, source=self._source)
        if result is not None:
            metrics.METRICS_TICK_SECONDS.observe(time.perf_counter() - started)
        return result

    async def _collect(self, uow: UnitOfWork, env: Envelope, event: MetricsDue) -> Staged:
        started = time.perf_counter()
        async with self._figures.within(uow) as store:
            # Redis's SCAN needs no tenant list: it runs while Postgres computes the figures.
            figures, scanned = await _together(store.collect(), self._usage.scan())
            ids = [f[0] for f in figures]  # the first column is tenant_id
            usage = await self._usage.measure(ids, scanned)
            collected_at = datetime.now(UTC)
            redis = [usage[t] for t in ids]
            # The statement count recorded is the one of the whole tick: the outbox's one
            # statement (its notification rides in the insert) and the three of record() are
            # added before they run; test_metrics compares the two counts. The results are
            # built while Postgres inserts the history.
            recorded, envelopes = await _together(
                store.record(
                    window_start=event.window_start,
                    event_id=env.id,
                    collected_at=collected_at,
                    figures=figures,
                    redis=[
                        [u.bytes for u in redis],
                        [u.keys for u in redis],
                        [u.estimated for u in redis],
                    ],
                    statements=store.statements() + 4,
                    duration_s=time.perf_counter() - started,
                    keep_ticks=self._keep,
                ),
                self._envelopes(figures, redis, env, collected_at),
            )
            if recorded:
                snapshots = _snapshots(
                    self._figures.columns, figures, redis, event.window_start, collected_at
                )
                await _together(
                    uow.outbox.add_many([stamp(e) for e in envelopes]),
                    self._usage.store_snapshots(snapshots, self._ttl),
                )
        statements = store.statements()  # once the block is left: every statement is counted
        exceeded = len(envelopes) - len(figures)
        self.last_tick = TickStats(event.window_start, len(figures), statements, exceeded)
        metrics.METRICS_TENANTS.set(len(figures))
        metrics.METRICS_TICK_STATEMENTS.set(statements)
        log.info(
            "metrics_collected",
            window_start=event.window_start.isoformat(),
            tenants=len(figures),
            statements=statements,
            quota_exceeded=exceeded,
            recorded=recorded,
        )
        return Staged(len(envelopes) if recorded else 0)

    async def _envelopes(
        self,
        figures: Sequence[Sequence[Any]],
        redis: Sequence[Usage],
        cause: Envelope,
        collected_at: datetime,
    ) -> list[Envelope]:
        """Per tenant, TenantMetricsCollected then its TenantQuotaExceeded, in tenant order.

        TenantMetricsCollected skip pydantic validation (a third of a tick's Python time): the
        tick's first is validated, the rest have its shape and types, straight from collect().
        The bytes are those of ``envelope_for`` (test_metrics.py compares); ``time`` is per tick.
        """
        ca = _DATETIME.dump_python(collected_at, mode="json")  # as model_dump(mode="json")
        time_, source = now(), self._source
        correlation, causation = cause.correlationid, cause.id
        size_limits, connection_limits = self._quotas.size_bytes, self._quotas.connections
        out: list[Envelope] = []
        for n, (f, u) in enumerate(zip(figures, redis, strict=True)):
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # lets the history INSERT proceed meanwhile
            tid, plan, size, tables, live, dead, bloat, seq, idx, ratio, _, _, conns = f
            data = {
                "tenant_id": tid,
                "collected_at": ca,
                "size_bytes": size,
                "table_count": tables,
                "live_tuples": live,
                "dead_tuples": dead,
                "bloat_bytes": bloat,
                "seq_scans": seq,
                "idx_scans": idx,
                "cache_hit_ratio": ratio,
                "connections": conns,
                "redis_bytes": u.bytes,
                "redis_keys": u.keys,
            }
            if not out:  # the tick's template: the contract still holds for it
                TenantMetricsCollected.model_validate(data)
            out.append(
                constructed({
                    "specversion": "1.0",
                    "id": result_event_id(causation, f"{_COLLECTED}:{tid}"),
                    "source": source,
                    "type": _COLLECTED,
                    "time": time_,
                    "subject": tid,
                    "correlationid": correlation,
                    "causationid": causation,
                    "data": data,
                })
            )
            for quota, observed, limits in (
                ("size_bytes", size, size_limits),
                ("connections", conns, connection_limits),
            ):
                limit = limits.get(plan)
                if limit is not None and observed > limit:
                    result = TenantQuotaExceeded(
                        tenant_id=tid,
                        quota=quota,  # type: ignore[arg-type]
                        limit=limit,
                        observed=observed,
                    )
                    out.append(_envelope(result, cause, source))
        return out


async def _together(*steps: Awaitable[Any]) -> list[Any]:
    """Run ``steps`` concurrently (on different connections, or Python work beside one query).
    If one fails, the others still run to completion (a query in flight is never cancelled
    under the transaction), then the first error is raised as it is."""
    tasks = [asyncio.ensure_future(s) for s in steps]
    try:
        return list(await asyncio.gather(*tasks))
    except Exception:
        await asyncio.wait(tasks)
        raise


def _envelope(result: Result, cause: Envelope, source: str) -> Envelope:
    """One id per (tick, result type, tenant[, quota]): a re-run stages the same rows."""
    name = type(result).__name__
    quota = getattr(result, "quota", None)
    discriminator = f"{name}:{quota}:{result.subject}" if quota else f"{name}:{result.subject}"
    return envelope_for(
        result, cause=cause, event_id=result_event_id(cause.id, discriminator), source=source
    )


def _snapshots(
    columns: Sequence[str],
    figures: Sequence[Sequence[Any]],
    redis: Sequence[Usage],
    window_start: datetime,
    collected_at: datetime,
) -> dict[str, dict[str, Any]]:
    """The latest snapshot per tenant, for Redis: the figures, then the tick and Redis usage."""
    window, collected = window_start.isoformat(), collected_at.isoformat()
    return {
        f[0]: {
            **dict(zip(columns, f, strict=True)),
            "window_start": window,
            "collected_at": collected,
            "redis_bytes": u.bytes,
            "redis_keys": u.keys,
            "redis_estimated": u.estimated,
        }
        for f, u in zip(figures, redis, strict=True)
    }


class BackupFreshness:
    """Every metrics worker refreshes the backup-age gauges from Postgres, so all instances
    export the same aggregate (see runtime/metrics.py for why there is no per-tenant series)."""

    def __init__(self, figures: TenantFigures, rpo_s: float, interval_s: float) -> None:
        self._figures, self._rpo, self._interval = figures, rpo_s, interval_s
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                oldest, _, over, le_counts = await self._figures.backup_freshness(
                    self._rpo, FRESHNESS_BUCKETS_S
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
