"""Fakes of the ports a backup and a restore use outside a unit of work."""

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from service.ports import Snapshot


class FakeKeyring:
    """Tenant keys: a recipient made on first use; an identity only while the key exists."""

    def __init__(self, destroyed: Sequence[str] = ()) -> None:
        self.destroyed = set(destroyed)

    async def recipient(self, tenant_id: str) -> str:
        return f"age1{tenant_id}"

    async def identity(self, tenant_id: str) -> str | None:
        return None if tenant_id in self.destroyed else f"AGE-SECRET-KEY-{tenant_id}"


@dataclass
class FakeSnapshots:
    """One snapshot per call, with the row counts arranged; ``open`` tells whether a block
    still holds one (the dump must run inside it)."""

    exact: dict[str, int] = field(default_factory=lambda: {"users": 2})
    estimated: dict[str, int] = field(default_factory=dict)
    taken: list[str] = field(default_factory=list)
    open: bool = False

    @contextlib.asynccontextmanager
    async def snapshot(self, schema: str) -> AsyncIterator[Snapshot]:
        self.taken.append(schema)
        self.open = True
        try:
            yield Snapshot(f"snap-{len(self.taken)}", dict(self.exact), dict(self.estimated))
        finally:
            self.open = False


@dataclass
class FakeRestoreDatabase:
    counts: dict[str, int] = field(default_factory=dict)
    terminated: list[tuple[str, str]] = field(default_factory=list)
    scratches: list[str] = field(default_factory=list)  # live scratch databases

    async def restore_role(self) -> str:
        return "svc_restore"

    async def terminate(self, role: str, application_name: str) -> None:
        self.terminated.append((role, application_name))

    async def create_scratch(self, name: str, role: str) -> str:
        self.scratches.append(name)
        return f"postgresql://svc@db/{name}"

    async def count_rows(self, dsn: str, schema: str, tables: Sequence[str]) -> dict[str, int]:
        return {t: self.counts.get(t, 0) for t in tables}

    async def drop_scratch(self, name: str) -> None:
        self.scratches.remove(name)
