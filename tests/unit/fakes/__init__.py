"""In-memory fakes of the service ports (stores.py: the unit of work's; jobs.py: the job side's;
backups.py / metrics.py: what backups, restores and the metrics tick use outside a unit)."""

from tests.unit.fakes.builders import catalogued, tenant
from tests.unit.fakes.jobs import FakeJobLeases, FakeJobs
from tests.unit.fakes.stores import (
    FakeKeyspace,
    FakeState,
    FakeStores,
    FakeUnitOfWork,
    Faults,
)

__all__ = [
    "FakeJobLeases", "FakeJobs", "FakeKeyspace", "FakeState", "FakeStores", "FakeUnitOfWork",
    "Faults", "catalogued", "tenant",
]
