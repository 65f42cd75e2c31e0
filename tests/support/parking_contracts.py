"""The parking port's batch lookup (consumers/parking.py), as one suite every implementation
passes: FakeParkedEvents (tests/unit) and PostgresParkedEvents (tests/integration).

``holding`` must answer, for every entry of a batch, what ``holds`` answers for it alone: held
while its tenant has a parked event in the group, or when this very record (topic, partition,
offset, event id) was parked before, whatever became of it. A batch is often a thousand
records, so an implementation may look things up in bulk or in steps; these tests hold the
answer, not the way to it.
"""

import secrets
from typing import Any

from consumers.parking import ParkedRecord


def record(offset: int, partition: int = 0, topic: str = "t.lifecycle") -> ParkedRecord:
    return ParkedRecord(topic, partition, offset, b"k", b"{}", ())


def fresh(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


class ParkingLookupContract:
    """A subclass named Test* supplies ``parking`` (an empty parking lot of its own)."""

    async def _park(self, parking: Any, group: str, tenant: str, event_id: str,
                    at: ParkedRecord) -> None:
        assert await parking.park(group, tenant, event_id, at, attempts=1, age_s=0.0,
                                  delay_s=0.0, error="database down")

    async def _finish(self, parking: Any, group: str) -> None:
        async with parking.claim_due(group) as claim:
            assert claim is not None
            await claim.done()

    async def _answers(self, parking: Any, group: str,
                       entries: list[tuple[str, str, ParkedRecord]]) -> set[int]:
        """``holding``'s answer, checked against ``holds`` entry by entry."""
        held: set[int] = await parking.holding(group, entries)
        one_by_one = {n for n, (tenant, event_id, at) in enumerate(entries)
                      if await parking.holds(group, tenant, event_id, at)}
        assert held == one_by_one
        return held

    async def test_nothing_parked_holds_nothing(self, parking: Any) -> None:
        group, tenant = fresh("g"), fresh("a")
        entries = [(tenant, f"e{n}", record(n)) for n in range(50)]
        assert await self._answers(parking, group, entries) == set()
        assert await self._answers(parking, group, []) == set()

    async def test_a_parked_tenant_holds_each_of_its_records_and_no_one_elses(
        self, parking: Any
    ) -> None:
        group, waiting, other = fresh("g"), fresh("a"), fresh("b")
        await self._park(parking, group, waiting, "parked-1", record(3))
        entries = [(waiting if n % 3 == 0 else other, f"e{n}", record(100 + n, partition=n % 2))
                   for n in range(12)]
        assert await self._answers(parking, group, entries) == {0, 3, 6, 9}
        # Parking is per group: another group's batch runs.
        assert await self._answers(parking, fresh("g"), entries) == set()

    async def test_a_finished_record_holds_its_redelivery_alone(self, parking: Any) -> None:
        group, tenant = fresh("g"), fresh("a")
        at = record(40, partition=1)
        await self._park(parking, group, tenant, "parked-1", at)
        await self._finish(parking, group)
        entries = [
            (tenant, "e39", record(39, partition=1)),
            (tenant, "parked-1", at),  # the very record again: held (it ran already)
            (tenant, "e41", record(41, partition=1)),
            (tenant, "other-id", record(40, partition=1)),  # same place, another event
            (tenant, "parked-1", record(40, partition=0)),  # same event id, elsewhere
            (tenant, "parked-1", record(40, partition=1, topic="t.other")),
        ]
        assert await self._answers(parking, group, entries) == {1}
        # Far from the batch's offsets, the finished record holds nothing.
        later = [(tenant, f"e{n}", record(n, partition=1)) for n in range(1000, 1010)]
        assert await self._answers(parking, group, later) == set()
