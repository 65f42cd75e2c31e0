"""The one exception root. Adapters translate library errors into these two kinds."""


class TenantServiceError(Exception):
    """Root of every error this service raises on purpose."""


class TransientError(TenantServiceError):
    """Retrying later may succeed (connection lost, lock timeout, broker unavailable)."""


class StatementTimeout(TransientError):
    """A statement ran past the transaction's own statement timeout. Transient in general, but
    a use case that set that budget itself (a migration) may decide it will never fit."""


class PermanentError(TenantServiceError):
    """Retrying will not help; the caller turns it into a *Failed result or a dead letter."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


#: the reason of a PermanentError raised when a job's lease is no longer its runner's (a fenced
#: write refused): the runner abandons the job, it reports nothing
LEASE_LOST = "lease_lost"
