"""Operations: what a command's answer is made of, and how its result events settle it.

Pure rules, no I/O. A command publishes one request event per tenant it touches; its operation is
done when every request has its result, and failed when any result is a ``*Failed`` event.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

# Request type -> (success result, failure result). Every request gets exactly one of the two.
RESULTS_OF: dict[str, tuple[str, str]] = {
    "TenantRequested": ("TenantProvisioned", "TenantProvisioningFailed"),
    "TenantDeactivated": ("TenantSuspended", "TenantSuspendFailed"),
    "TenantReactivated": ("TenantResumed", "TenantResumeFailed"),
    "TenantEraseRequested": ("TenantErased", "TenantEraseFailed"),
    "BackupDue": ("BackupCompleted", "BackupFailed"),
    "RestoreRequested": ("RestoreCompleted", "RestoreFailed"),
    "TenantMigrationDue": ("TenantMigrated", "TenantMigrationFailed"),
}


@dataclass(frozen=True)
class Settled:
    """The outcome of an operation once all its requests are answered."""

    result: dict[str, Any] | None
    error: dict[str, Any] | None


def request_hash(method: str, route: str, body: Any) -> str:
    """Fingerprint of a request, for Idempotency-Key reuse: same route and same JSON body (key
    order and whitespace do not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {route}\n{canonical}".encode()).hexdigest()


def settle(event_ids: list[str], answers: dict[str, tuple[str, dict[str, Any]]]) -> Settled | None:
    """``answers`` maps a request event id to its result (type, data). None while any request
    is unanswered; then the result (one request: its event; many: a summary) or the error."""
    if any(e not in answers for e in event_ids):
        return None
    failures = {e: answers[e] for e in event_ids if answers[e][0].endswith("Failed")}
    if len(event_ids) == 1:
        type_, data = answers[event_ids[0]]
        if failures:
            return Settled(None, _error(type_, data))
        return Settled({"type": type_, **data}, None)
    summary = {
        "requests": len(event_ids),
        "succeeded": len(event_ids) - len(failures),
        "failed": len(failures),
    }
    if failures:
        details = [{"type": t, **d} for t, d in failures.values()]
        return Settled(None, {**_error("PartialFailure", {}), **summary, "details": details})
    return Settled(summary, None)


def _error(type_: str, data: dict[str, Any]) -> dict[str, Any]:
    reason = str(data.get("reason") or "failed")
    detail = data.get("detail")
    message = f"{type_}: {reason}" + (f" ({detail})" if detail else "")
    return {"code": reason, "type": type_, "message": message, "details": [data] if data else []}
