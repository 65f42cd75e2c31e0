"""How long a record that keeps failing transiently is tried before it is given up.

A record is given up only when BOTH budgets are spent: enough attempts (so a burst of quick
failures does not end it) and enough time since its first failure (so a dependency that is down
for a while does not end it either). Pure: callers pass the counts and the age.
"""

from dataclasses import dataclass

RETRIES_EXHAUSTED = "retries_exhausted"


@dataclass(frozen=True)
class RedeliveryBudget:
    max_attempts: int
    max_age_s: float

    def exhausted(self, attempts: int, age_s: float) -> bool:
        """True once ``attempts`` tries and ``age_s`` seconds since the first failure are both spent."""
        return attempts >= self.max_attempts and age_s >= self.max_age_s


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """The wait before a parked record's next try: exponential in its attempts, capped."""
    return min(max_s, base_s * float(2 ** min(attempts, 30)))
