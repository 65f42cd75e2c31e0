"""The parking port: where a tenant's event waits while it keeps failing transiently.

Contract of every implementation (PostgresParkedEvents; FakeParkedEvents in the tests):
- ``park`` is durable when it returns, and idempotent per (group, record, event id): parking a
  record already parked is a no-op. The caller commits the Kafka offset only afterwards.
- ``holds`` is True while the tenant has parked events in the group (a later event must queue
  behind them) or when this very record was parked before, whatever became of it (a
  redelivery must not run it a second time).
- ``holding`` answers ``holds`` for a whole batch at once.
- ``claim_due`` yields the oldest parked event of one tenant whose next attempt is due, or None,
  and holds it exclusively (no other process can claim any event of that tenant) until the
  block ends. The claim's decision (done, retry later, dead-lettered) is written when the block
  ends normally; if the block raises, nothing is written and the event stays as it was.
"""

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ParkedRecord:
    """A Kafka record as received: what a dead letter is made of, and what is decoded again."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class RecordAt(Protocol):
    """Where a record is: all ``holding`` reads of one (a ParkedRecord or a received record)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


@dataclass(frozen=True)
class ParkedEvent:
    tenant_id: str
    record: ParkedRecord
    attempts: int  # transient failures so far, those before parking included
    handler_errors: int  # unexpected (bug) errors so far
    age_s: float  # since the first failure


class Claim(Protocol):
    """One claimed parked event; call exactly one of the three before the claim block ends."""

    event: ParkedEvent

    async def done(self) -> None: ...
    async def dead_lettered(self) -> None: ...
    async def retry_later(self, delay_s: float, error: str, *, handler_error: bool) -> None: ...


class ParkedEvents(Protocol):
    async def park(
        self,
        group: str,
        tenant_id: str,
        event_id: str,
        record: ParkedRecord,
        *,
        attempts: int,
        age_s: float,
        delay_s: float,
        error: str,
    ) -> bool:
        """Park ``record``; False when it was parked already."""
        ...

    async def holds(self, group: str, tenant_id: str, event_id: str, record: ParkedRecord) -> bool:
        """Must this record wait (or be skipped) instead of running now? See the module doc."""
        ...

    async def holding(
        self, group: str, entries: Sequence[tuple[str, str, "RecordAt"]]
    ) -> set[int]:
        """``holds`` for a batch of (tenant id, event id, record) in one lookup: the positions
        in ``entries`` of those that must wait. A record is only looked up by where it is (a
        received record as it is: copying each one's value and headers is work for nothing)."""
        ...

    def claim_due(self, group: str) -> AbstractAsyncContextManager[Claim | None]:
        """The next due parked event of some tenant, held exclusively for the block."""
        ...


def parked_record(record: Any) -> ParkedRecord:
    """The parts of an aiokafka ConsumerRecord (or a ParkedRecord) that parking keeps."""
    headers = tuple((str(k), bytes(v)) for k, v in getattr(record, "headers", None) or ())
    return ParkedRecord(
        topic=record.topic,
        partition=int(record.partition),
        offset=int(record.offset),
        key=record.key,
        value=record.value or b"",
        headers=headers,
    )
