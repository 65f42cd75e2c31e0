"""In-memory fakes of the service ports (see stores.py for the unit of work's, and backups.py /
metrics.py for the job side's)."""

from tests.unit.fakes.stores import (
    FakeJobLeases,
    FakeKeyspace,
    FakeState,
    FakeStores,
    FakeUnitOfWork,
    Faults,
    catalogued,
    tenant,
)

__all__ = [
    "FakeJobLeases", "FakeKeyspace", "FakeState", "FakeStores", "FakeUnitOfWork", "Faults",
    "catalogued", "tenant",
]
