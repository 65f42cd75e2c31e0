"""Fakes of the metrics tick's ports: the figures store (bound to a FakeUnitOfWork) and the
cache usage."""

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.errors import TenantServiceError

COLUMNS = (
    "tenant_id", "plan", "size_bytes", "table_count", "live_tuples", "dead_tuples",
    "bloat_bytes", "seq_scans", "idx_scans", "cache_hit_ratio", "last_vacuum", "last_analyze",
    "connections",
)


def figures_of(tenant_id: str, plan: str = "basic", size: int = 100, conns: int = 0) -> tuple:
    """A row of collect(), columns COLUMNS."""
    return (tenant_id, plan, size, 1, 10, 0, 0, 1, 1, 0.99, None, None, conns)


class _Bound:
    def __init__(self, owner: "FakeTenantFigures") -> None:
        self._o, self._statements = owner, 0

    async def collect(self) -> list[Any]:
        self._statements += 1
        return list(self._o.rows)

    async def record(self, *, window_start: datetime, figures: Sequence[Any], **_: Any) -> bool:
        self._statements += 3
        if window_start in self._o.windows:  # ON CONFLICT (window_start) DO NOTHING
            return False
        self._o.windows.append(window_start)
        return True

    def statements(self) -> int:
        return self._statements


@dataclass
class FakeTenantFigures:
    rows: list[tuple] = field(default_factory=list)
    windows: list[datetime] = field(default_factory=list)  # recorded ticks (not rolled back)
    freshness: tuple[float, int, int, list[int]] = (0.0, 0, 0, [0, 0, 0, 0, 0, 0])
    columns: tuple[str, ...] = COLUMNS

    @contextlib.asynccontextmanager
    async def within(self, uow: Any) -> AsyncIterator[_Bound]:
        yield _Bound(self)

    async def backup_freshness(
        self, rpo_s: float, buckets: Sequence[float]
    ) -> tuple[float, int, int, list[int]]:
        return self.freshness


@dataclass(frozen=True)
class FakeUsage:
    bytes: int
    keys: int
    estimated: bool = False


@dataclass
class FakeTenantUsage:
    usage: dict[str, FakeUsage] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    fault: TenantServiceError | None = None

    async def scan(self) -> Any:
        if self.fault is not None:
            raise self.fault
        return "scanned"

    async def measure(self, tenant_ids: Sequence[str], scanned: Any = None) -> Mapping[str, FakeUsage]:
        return {t: self.usage.get(t, FakeUsage(0, 0)) for t in tenant_ids}

    async def store_snapshots(self, snapshots: Mapping[str, Mapping[str, Any]], ttl_s: int) -> None:
        self.snapshots.update({t: dict(s) for t, s in snapshots.items()})
