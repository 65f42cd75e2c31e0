"""What every tenantctl command shares: its settings, and how a published request ends."""

from pathlib import Path
from typing import Any

import typer

from runtime.settings import Settings, SettingsError, load_settings
from tenantctl import ops
from tenantctl.output import CliError, ExitCode, Usage, notice, print_json

REPO_ROOT = Path(__file__).resolve().parent.parent


def settings(*, api_mode_ok: bool = False) -> Settings:
    """The settings, or a one-line error that says where .env was looked for. With
    TENANTCTL_API_URL set, a command that reaches for them has no API route: it says so
    (``api_mode_ok``: the command needs no database of the operator's, e.g. a worker)."""
    if not api_mode_ok:
        from tenantctl.api_mode import refuse_without_route

        refuse_without_route()
    try:
        return load_settings()
    except SettingsError as e:
        env_file = Path.cwd() / ".env"
        where = (
            f"read {env_file}"
            if env_file.is_file()
            else f"no .env in {Path.cwd()}: run tenantctl from the repository root"
            f" ({REPO_ROOT}), where `scripts/stack up` writes it, or export the variables"
        )
        raise Usage(f"{' '.join(str(e).split())} ({where})") from None


def print_result(envelope: Any, result: Any, wait: bool, timeout: float) -> None:
    """The outcome of a published request: the event id, or with --wait the result event."""
    notice(f"published {envelope.type} id={envelope.id}")
    if not wait:
        print(envelope.id, flush=True)  # a script can follow it: tenantctl watch | grep
        return
    if result is None:
        raise CliError(f"no result within {timeout:.0f}s", ExitCode.TIMEOUT)
    if isinstance(result, ops.DeadLettered):
        print_json(result.summary)
        raise CliError(f"{envelope.type} was dead-lettered: {result.describe()}")
    print_json(result.model_dump(mode="json"))
    if result.type.endswith("Failed"):
        raise typer.Exit(ExitCode.FAILED)
