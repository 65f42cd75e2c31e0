"""PostgresTenantMetrics: per-tenant database figures for ALL tenants in one statement, and the
bounded history of them.

The number of statements never depends on the tenant count: ``collect`` is one query joining
the registry with pg_namespace/pg_class (the tenants' relations only, with the per-relation
pg_stat_get_* functions the statistics views are made of) and pg_stat_activity, grouped per
tenant; ``record`` is three. ``statements`` counts what this
adapter ran, so tests and the bench can assert it.

What the figures mean:

- ``size_bytes``: pg_total_relation_size (heap, TOAST, indexes) of every table, materialised
  view and sequence in the tenant's schema.
- ``bloat_bytes``: an estimate, per table dead_tuples / (live + dead) x heap size, summed. It is
  the space dead tuples hold until VACUUM; it ignores free space already inside pages (exact
  figures need pgstattuple, which reads every page: too costly for a tick over every tenant).
- ``cache_hit_ratio``: (heap + index + TOAST block hits) / (hits + reads) since the statistics
  were reset; None when nothing was read yet.
- ``last_vacuum`` / ``last_analyze``: the most recent manual or auto run on any of its tables.
- ``connections``: pg_stat_activity shows the LOGIN role of a session (``usename``), never a
  role taken with SET ROLE, so a session of the shared ``tenant_app`` login cannot be attributed
  from the catalogue. We count the backends in this database whose ``usename`` is the tenant's
  role (if it is ever given LOGIN) or whose ``application_name`` is ``tenant:<id>``, the
  convention for tenant_app connections (domain.lifecycle.session_tag; suspension ends them).
  Both columns stay visible without pg_read_all_stats.
"""

# SQL names are quote_ident()-ed from settings, never from input; values are bind parameters.
# ruff: noqa: S608

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from domain.lifecycle import SESSION_TAG_PREFIX
from domain.tenant_ids import quote_ident

# The one tagging convention (domain.lifecycle.session_tag): suspension ends these sessions too.
APPLICATION_NAME_PREFIX = SESSION_TAG_PREFIX


# The columns of collect()'s rows, in order: the first thirteen of the history table.
FIGURES = (
    "tenant_id",
    "plan",
    "size_bytes",
    "table_count",
    "live_tuples",
    "dead_tuples",
    "bloat_bytes",
    "seq_scans",
    "idx_scans",
    "cache_hit_ratio",
    "last_vacuum",
    "last_analyze",
    "connections",
)

# Per relation of the tenant's schema, the pg_stat_get_* functions the statistics views are made
# of (PG 15 definitions: pg_stat_user_tables counts r/m/p, pg_statio_user_tables r/m with their
# indexes and TOAST table), without the views: those compute every table of the database.
# Indexes always live in their table's schema; partitioned indexes ('I') have no statistics.
_COLLECT = """
WITH reg AS (
    SELECT tenant_id, plan, schema_name, role_name FROM {tenants}
    WHERE status IN ('active', 'suspended')
      -- One snapshot of the statistics for the transaction: tens of thousands of lookups in a
      -- local copy instead of the shared hash table (the figures are as consistent or more).
      AND set_config('stats_fetch_consistency', 'snapshot', true) IS NOT NULL
), rel AS (
    SELECT r.tenant_id, c.oid, c.relkind, c.relpersistence, nullif(c.reltoastrelid, 0) AS toast,
           CASE WHEN c.relkind IN ('r', 'p', 'm') THEN pg_stat_get_live_tuples(c.oid) END AS live,
           CASE WHEN c.relkind IN ('r', 'p', 'm') THEN pg_stat_get_dead_tuples(c.oid) END AS dead
    FROM reg r
    JOIN pg_namespace n ON n.nspname = r.schema_name
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'm', 'S', 'i')
), agg AS (
    SELECT tenant_id,
           count(*) FILTER (WHERE relkind IN ('r', 'p')) AS table_count,
           -- A sequence is always one block (plus its init fork's when unlogged): no stat()
           -- calls for it. Every other relation's files are stat()ed, forks and segments.
           sum(CASE WHEN relkind = 'S'
                    THEN current_setting('block_size')::bigint
                         * (1 + (relpersistence = 'u')::int)
                    ELSE pg_total_relation_size(oid) END) FILTER (WHERE relkind <> 'i')
               AS size_bytes,
           sum(live) AS live_tuples,
           sum(dead) AS dead_tuples,
           sum(pg_relation_size(oid) * dead / (live + dead)) FILTER (WHERE dead > 0) AS bloat_bytes,
           sum(pg_stat_get_numscans(oid)) FILTER (WHERE relkind IN ('r', 'p', 'm')) AS seq_scans,
           sum(pg_stat_get_numscans(oid)) FILTER (WHERE relkind = 'i') AS idx_scans,
           sum(pg_stat_get_blocks_hit(oid) + coalesce(pg_stat_get_blocks_hit(toast), 0))
               FILTER (WHERE relkind IN ('r', 'm', 'i')) AS hits,
           sum(pg_stat_get_blocks_fetched(oid) - pg_stat_get_blocks_hit(oid)
               + coalesce(pg_stat_get_blocks_fetched(toast) - pg_stat_get_blocks_hit(toast), 0))
               FILTER (WHERE relkind IN ('r', 'm', 'i')) AS reads,
           max(greatest(pg_stat_get_last_vacuum_time(oid), pg_stat_get_last_autovacuum_time(oid)))
               AS last_vacuum,
           max(greatest(pg_stat_get_last_analyze_time(oid),
                        pg_stat_get_last_autoanalyze_time(oid))) AS last_analyze
    FROM rel GROUP BY tenant_id
), sessions AS (
    SELECT coalesce(substring(a.application_name FROM '^{tag}([a-z][a-z0-9_]{{2,39}})$'),
                    by_role.tenant_id) AS tenant_id
    FROM pg_stat_activity a
    LEFT JOIN reg by_role ON by_role.role_name = a.usename
    WHERE a.datname = current_database()
), conns AS (
    SELECT tenant_id, count(*) AS n FROM sessions WHERE tenant_id IS NOT NULL GROUP BY tenant_id
)
SELECT r.tenant_id, r.plan,
       coalesce(agg.size_bytes, 0)::bigint AS size_bytes,
       coalesce(agg.table_count, 0)::int AS table_count,
       coalesce(agg.live_tuples, 0)::bigint AS live_tuples,
       coalesce(agg.dead_tuples, 0)::bigint AS dead_tuples,
       coalesce(agg.bloat_bytes, 0)::bigint AS bloat_bytes,
       coalesce(agg.seq_scans, 0)::bigint AS seq_scans,
       coalesce(agg.idx_scans, 0)::bigint AS idx_scans,
       (agg.hits::float8 / nullif(agg.hits + agg.reads, 0)) AS cache_hit_ratio,
       agg.last_vacuum, agg.last_analyze,
       coalesce(conns.n, 0)::int AS connections
FROM reg r
LEFT JOIN agg ON agg.tenant_id = r.tenant_id
LEFT JOIN conns ON conns.tenant_id = r.tenant_id
ORDER BY r.tenant_id
"""

_HISTORY_COLUMNS = (
    *FIGURES,
    "redis_bytes",
    "redis_keys",
    "redis_estimated",
)
_HISTORY_TYPES = (
    "text",
    "text",
    "bigint",
    "int",
    "bigint",
    "bigint",
    "bigint",
    "bigint",
    "bigint",
    "float8",
    "timestamptz",
    "timestamptz",
    "int",
    "bigint",
    "bigint",
    "bool",
)


class PostgresTenantMetrics:
    def __init__(
        self, control_schema: str, session_tag_prefix: str = APPLICATION_NAME_PREFIX
    ) -> None:
        """``session_tag_prefix``: the deployment's (runtime.names), never input."""
        s = quote_ident(control_schema)
        self._tenants, self._backups = f"{s}.tenants", f"{s}.backups"
        self._ticks, self._history = f"{s}.metrics_ticks", f"{s}.tenant_metrics"
        # The tag is ours ([a-z0-9:] only: no regex metacharacters), never input.
        self._collect = _COLLECT.format(tenants=self._tenants, tag=session_tag_prefix)
        self.statements = 0

    async def collect(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        """Figures of every active or suspended tenant, columns ``FIGURES``: one statement."""
        self.statements += 1
        rows: list[asyncpg.Record] = await conn.fetch(self._collect)
        return rows

    async def record(
        self,
        conn: asyncpg.Connection,
        *,
        window_start: datetime,
        event_id: str,
        collected_at: datetime,
        figures: Sequence[asyncpg.Record],
        redis: Sequence[Sequence[object]],
        statements: int,
        duration_s: float,
        keep_ticks: int,
    ) -> bool:
        """Tick row, one history row per tenant, prune to the newest ``keep_ticks`` ticks.

        ``figures`` are collect()'s rows; ``redis`` the columns redis_bytes, redis_keys and
        redis_estimated, in the same order. Three statements. False when this window was already
        recorded (a second MetricsDue for the same window under another id): the history is then
        left as it is.
        """
        self.statements += 1
        inserted = await conn.fetchval(
            f"INSERT INTO {self._ticks} (window_start, event_id, collected_at, tenants,"
            " statements, duration_s) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (window_start) DO NOTHING RETURNING true",
            window_start,
            event_id,
            collected_at,
            len(figures),
            statements,
            duration_s,
        )
        if not inserted:
            return False
        columns = ", ".join(_HISTORY_COLUMNS)
        arrays = ", ".join(f"${i + 3}::{t}[]" for i, t in enumerate(_HISTORY_TYPES))
        self.statements += 1
        await conn.execute(
            f"INSERT INTO {self._history} (window_start, collected_at, {columns})"
            f" SELECT $1, $2, * FROM unnest({arrays})",
            window_start,
            collected_at,
            *([r[i] for r in figures] for i in range(len(FIGURES))),
            *redis,
        )
        # Older ticks cascade to their history rows.
        self.statements += 1
        await conn.execute(
            f"DELETE FROM {self._ticks} WHERE window_start < (SELECT min(window_start) FROM"
            f" (SELECT window_start FROM {self._ticks} ORDER BY window_start DESC LIMIT $1) k)",
            keep_ticks,
        )
        return True

    async def backup_freshness(
        self, conn: asyncpg.Connection, rpo_s: float, buckets: Sequence[float]
    ) -> tuple[float, int, int, list[int]]:
        """(oldest age s, tenants, tenants over the RPO, tenants with age <= each bucket).

        Age is seconds since the last catalogued backup; a tenant never backed up counts from
        its creation. One statement, aggregated in Postgres.
        """
        self.statements += 1
        row = await conn.fetchrow(
            f"WITH ages AS (SELECT EXTRACT(EPOCH FROM now() - coalesce(max(b.finished_at),"
            f" t.created_at))::float8 AS age FROM {self._tenants} t LEFT JOIN {self._backups} b"
            " ON b.tenant_id = t.tenant_id WHERE t.status IN ('active', 'suspended')"
            " GROUP BY t.tenant_id, t.created_at)"
            " SELECT coalesce(max(age), 0) AS oldest, count(*) AS tenants,"
            " count(*) FILTER (WHERE age > $1) AS over,"
            " array(SELECT (SELECT count(*) FROM ages a WHERE a.age <= l.le)"
            "  FROM unnest($2::float8[]) WITH ORDINALITY AS l(le, n) ORDER BY l.n) AS le_counts"
            " FROM ages",
            rpo_s,
            list(buckets),
        )
        assert row is not None
        return float(row["oldest"]), int(row["tenants"]), int(row["over"]), list(row["le_counts"])

    async def latest(self, conn: asyncpg.Connection, tenant_id: str) -> dict[str, object] | None:
        """The newest history row of a tenant (tenantctl's fallback when Redis has none)."""
        row = await conn.fetchrow(
            f"SELECT * FROM {self._history} WHERE tenant_id = $1"
            " ORDER BY window_start DESC LIMIT 1",
            tenant_id,
        )
        return dict(row) if row else None

    async def top(self, conn: asyncpg.Connection, by: str, limit: int) -> list[dict[str, object]]:
        """Tenants of the newest recorded tick, largest ``by`` first."""
        if by not in ("size_bytes", "connections", "dead_tuples"):
            raise ValueError(f"cannot sort by {by!r}")
        rows = await conn.fetch(
            f"SELECT * FROM {self._history} WHERE window_start ="
            f" (SELECT max(window_start) FROM {self._ticks})"
            f" ORDER BY {by} DESC, tenant_id LIMIT $1",
            limit,
        )
        return [dict(r) for r in rows]
