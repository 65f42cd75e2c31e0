"""Fakes of the ports a backup and a restore use outside a unit of work, and of the dump
pipeline the backup streams through."""

import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.dump_pipeline import StreamStats
from service.ports import Snapshot

if TYPE_CHECKING:
    from tests.unit.fakes.stores import FakeStores


class FakeKeyring:
    """Tenant keys: a recipient made on first use; an identity only while the key exists.

    Given ``stores``, the keys are FakeStores' (``state.backup_keys``, which a unit's
    ``keys.destroy`` removes), as on PostgreSQL; without, every tenant not ``destroyed`` has one.
    """

    def __init__(self, destroyed: Sequence[str] = (), stores: "FakeStores | None" = None) -> None:
        self.destroyed, self._stores = set(destroyed), stores

    async def recipient(self, tenant_id: str) -> str:
        if self._stores is not None:  # its own short transaction: committed at once
            self._stores.state.backup_keys.add(tenant_id)
        return f"age1{tenant_id}"

    async def identity(self, tenant_id: str) -> str | None:
        if self._stores is not None and tenant_id not in self._stores.state.backup_keys:
            return None
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


class FakeDump:
    """Stands in for adapters.dump_pipeline.dump (pg_dump | zstd | age): streams ``chunks`` to
    the sink and returns their size and sha256, or raises ``fault`` after the first chunk (a
    pipeline dying mid-stream). Records each call, and whether it ran inside a snapshot."""

    def __init__(self, snapshots: FakeSnapshots, chunks: Sequence[bytes] = (b"age:", b"dump")):
        self._snapshots, self.chunks = snapshots, list(chunks)
        self.fault: BaseException | None = None
        self.calls: list[dict[str, Any]] = []

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    async def __call__(
        self,
        dsn: str,
        schema: str,
        recipients: list[str],
        sink: Callable[[bytes], Awaitable[None]],
        *,
        snapshot: str | None = None,
        **options: Any,
    ) -> StreamStats:
        self.calls.append({"schema": schema, "recipients": list(recipients),
                           "snapshot": snapshot, "in_snapshot": self._snapshots.open})
        for n, chunk in enumerate(self.chunks):
            await sink(chunk)
            if self.fault is not None and n == 0:
                raise self.fault
        return StreamStats(len(self.data), hashlib.sha256(self.data).hexdigest())
