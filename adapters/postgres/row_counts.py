"""The row counts a backup's manifest records, bounded in cost.

An exact ``count(*)`` reads the whole table, so on a large tenant it may outlast the pool's
statement timeout (30 s by default) and fail the backup on every attempt. The counts therefore
run under their own budget, never the pool's timeout: each table is counted exactly while the
budget lasts, inside the caller's snapshot (so an exact count describes exactly the data in the
artifact), and a table that does not fit is given the planner's estimate, listed apart as
estimated. A count that runs out of budget is rolled back to a savepoint: the snapshot's
transaction, which pg_dump is still using, lives on.
"""

import time
from dataclasses import dataclass, field

import asyncpg

from domain.backups import row_count_estimate
from domain.tenant_ids import quote_ident

#: headroom of the client-side timeout over the server's, so the server cancels first
_CLIENT_GRACE_S = 5.0


@dataclass(frozen=True)
class RowCounts:
    exact: dict[str, int] = field(default_factory=dict)
    estimated: dict[str, int] = field(default_factory=dict)


async def row_counts(conn: asyncpg.Connection, schema: str, budget_ms: int) -> RowCounts:
    """Count the schema's tables inside the caller's (open) transaction, within ``budget_ms``."""
    tables = await conn.fetch(
        "SELECT c.relname, c.reltuples, s.n_live_tup FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
        schema,
    )
    saved = await conn.fetchrow(
        "SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt"
    )
    assert saved is not None
    counts = RowCounts()
    deadline = time.monotonic() + budget_ms / 1000
    for t in tables:
        name = t["relname"]
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms > 0:
            try:
                async with conn.transaction():  # a savepoint
                    # SET LOCAL survives the savepoint's release: restored below.
                    await conn.execute(
                        "SELECT set_config('statement_timeout', $1, true),"
                        " set_config('lock_timeout', $1, true)",
                        str(left_ms),
                    )
                    counts.exact[name] = int(
                        await conn.fetchval(
                            f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(name)}",
                            timeout=left_ms / 1000 + _CLIENT_GRACE_S,
                        )
                    )
                continue
            except (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError):
                pass  # out of budget (slow, or behind a lock): this table gets an estimate
        counts.estimated[name] = row_count_estimate(t["reltuples"], t["n_live_tup"])
    await conn.execute(
        "SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true)",
        saved["st"],
        saved["lt"],
    )
    return counts
