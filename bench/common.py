"""Shared pieces: settings in the run's namespace, statistics, tenant ids, cleanup, results."""

import functools
import json
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg

from domain.tenant_ids import quote_ident, schema_name
from runtime.settings import Settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
REPS = int(os.environ.get("BENCH_REPS", "3"))


@functools.cache  # read once per process, like a worker's
def settings() -> Settings:
    """The run's settings: its namespace is TENANT_NAMESPACE, set by bench/run."""
    s = Settings()  # type: ignore[call-arg]  # the DSN comes from .env
    assert s.namespace, "TENANT_NAMESPACE is not set (bench/run sets it)"
    return s


def schema(tenant_id: str) -> str:
    """A tenant's schema (and role) name in the run's namespace."""
    return schema_name(tenant_id, settings().names.tenant_prefix)


def dsn() -> str:
    return settings().pg_dsn.get_secret_value()


def tenant_ids(n: int, tag: str = "") -> list[str]:
    """``bench_<hex>_<n>``: unique per call, valid ids, easy to find and drop."""
    prefix = f"bench_{uuid.uuid4().hex[:8]}{tag}_"
    return [f"{prefix}{i}" for i in range(n)]


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def spread(values: Sequence[float]) -> str:
    return f"min {min(values):.3g} / median {statistics.median(values):.3g}"


class Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


async def drop_tenants(conn: asyncpg.Connection, ids: Sequence[str], batch: int = 20) -> None:
    """Schemas, roles and registry rows of ``ids``; small transactions keep lock counts low."""
    table = f"{quote_ident(settings().names.control_schema)}.tenants"
    for i in range(0, len(ids), batch):
        chunk = ids[i:i + batch]
        async with conn.transaction():
            for tid in chunk:
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema(tid))} CASCADE")
                await conn.execute(f"DROP ROLE IF EXISTS {quote_ident(schema(tid))}")
            await conn.execute(f"DELETE FROM {table} WHERE tenant_id = ANY($1::text[])", list(chunk))


async def drop_leftovers(conn: asyncpg.Connection) -> int:
    """Every tenant of the namespace's registry, plus any orphan schema or role of it."""
    names = settings().names
    table = f"{quote_ident(names.control_schema)}.tenants"
    prefix = names.tenant_prefix
    like = prefix.replace("_", "\\_") + "%"
    ids: set[str] = set()
    if await conn.fetchval("SELECT to_regclass($1)", table):
        ids |= {r[0] for r in await conn.fetch(f"SELECT tenant_id FROM {table}")}
    ids |= {r[0][len(prefix):] for r in await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", like)}
    ids |= {r[0][len(prefix):] for r in await conn.fetch(
        "SELECT rolname FROM pg_roles WHERE rolname LIKE $1", like)}
    await drop_tenants(conn, sorted(ids))
    return len(ids)


@dataclass
class Row:
    """One line of the results table. ``higher_is_better`` says how to read the ratio."""

    benchmark: str
    size: str
    unit: str
    ours: list[float]
    baseline: list[float] = field(default_factory=list)
    baseline_name: str = ""
    higher_is_better: bool = True
    goal: str = ""
    met: bool | None = None
    notes: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.ours or not self.baseline:
            return None
        return statistics.median(self.ours) / statistics.median(self.baseline)

    def show(self) -> str:
        base = f" | {self.baseline_name}: {spread(self.baseline)}" if self.baseline else ""
        ratio = f" | ratio {self.ratio:.2f}" if self.ratio is not None else ""
        ours = spread(self.ours) if self.ours else "skipped"
        return f"{self.benchmark} [{self.size}] ours {ours} {self.unit}{base}{ratio} {self.notes}"


def save(name: str, rows: list[Row]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "at": time.strftime("%Y-%m-%d %H:%M:%S"),
                                "rows": [asdict(r) for r in rows]}, indent=1))
    for row in rows:
        print(row.show(), flush=True)
    return path


def load_rows(path: Path) -> list[Row]:
    return [Row(**r) for r in json.loads(path.read_text())["rows"]]
