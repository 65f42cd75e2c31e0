"""What tenantctl does through the HTTP API (TENANTCTL_API_URL and TENANTCTL_TOKEN set): each
command with an API route calls it here, with the same output as its database twin, and a
command without one says it needs database access instead of reaching for credentials."""

from datetime import datetime
from typing import Annotated, Any

import typer

from tenantctl.api_client import URL_VARIABLE, ApiClient, configured, tenant_path
from tenantctl.output import CliError, ExitCode, Usage, notice, print_json

__all__ = ["configured", "refuse_without_route"]

invoked: str | None = None  # the command tenantctl runs (its callback records it), for messages


def refuse_without_route(what: str = "") -> None:
    """In API mode, stop a command that has no API route with a clear line (never fall back on
    database settings the operator may not have)."""
    if not configured():
        return
    name = what or f"tenantctl {invoked or ''}".strip()
    raise Usage(
        f"{name} has no API route: it needs database access (the TENANT_PG_* settings);"
        f" unset {URL_VARIABLE} to run it against the database"
    )


def _client() -> ApiClient:
    return ApiClient.from_env()


def submit(
    path: str,
    body: dict[str, Any] | None,
    wait: bool,
    timeout: float,
    client: ApiClient | None = None,
) -> None:
    """POST a command; print its event id, or with ``wait`` the finished operation."""
    client = client or _client()
    operation = client.command(path, body)
    notice(f"{operation['name']} event id={operation['event_id']}")
    if not wait:
        print(operation["event_id"], flush=True)
        return
    show_operation(client.wait(operation, timeout), timeout)


def show_operation(operation: dict[str, Any], timeout: float) -> None:
    """Print an operation; exit 3 if it is not done, 1 if it ended in an error."""
    print_json(operation)
    if not operation["done"]:
        raise CliError(f"{operation['name']} not done within {timeout:.0f}s", ExitCode.TIMEOUT)
    if "error" in operation:
        raise typer.Exit(ExitCode.FAILED)


def operation(operation_id: str, wait: bool, timeout: float) -> None:
    """Show an operation (``operations/<id>`` or the bare id); with ``wait`` poll until done."""
    client = _client()
    name = operation_id if operation_id.startswith("operations/") else f"operations/{operation_id}"
    found = client.call("GET", f"/v1/{name}")
    if wait:
        show_operation(client.wait(found, timeout), timeout)
    else:
        print_json(found)


def request(tenant_id: str, plan: str | None, wait: bool, timeout: float) -> None:
    body: dict[str, Any] = {"tenant_id": tenant_id, **({"plan": plan} if plan else {})}
    submit("/v1/tenants", body, wait, timeout)


def lifecycle(
    tenant_id: str, action: str, body: dict[str, Any] | None, wait: bool, timeout: float
) -> None:
    """suspend, resume, erase, backup or restore: POST /v1/tenants/{id}:<action>."""
    submit(tenant_path(tenant_id, f":{action}"), body, wait, timeout)


def migrate(to: int | None, max_failures: int, wait: bool, timeout: float) -> None:
    body: dict[str, Any] = {"max_failures": max_failures}
    if to is not None:
        body["target_version"] = to
    submit("/v1/migrations", body, wait, timeout)


def tenant(tenant_id: str) -> dict[str, Any] | None:
    from tenantctl.api_client import ApiError

    try:
        return _dated(_client().call("GET", tenant_path(tenant_id)))
    except ApiError as e:
        if e.status == 404:
            return None
        raise


def tenants(status: str | None, plan: str | None, include_erased: bool) -> list[dict[str, Any]]:
    """The registry through the API: status and plan filtered by the API, a page at a time."""
    rows = _client().pages("/v1/tenants", "tenants", status=status, plan=plan)
    # The API lists tombstones too; like the database listing, they show only when asked for.
    return [_dated(r) for r in rows if include_erased or status or r["status"] != "erased"]


def backups(tenant_id: str) -> list[dict[str, Any]]:
    return [_dated(r) for r in _client().pages(tenant_path(tenant_id, "/backups"), "backups")]


def metrics_history(tenant_id: str, limit: int) -> list[dict[str, Any]]:
    path = tenant_path(tenant_id, "/metrics")
    return [_dated(r) for r in _client().pages(path, "metrics", limit=limit)]


def events(tenant_id: str, types: list[str] | None, limit: int | None) -> list[dict[str, Any]]:
    path = tenant_path(tenant_id, "/events")
    return list(_client().pages(path, "events", limit=limit, type=types or None))


_TIMES = (
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "last_drill_at",
    "window_start",
    "collected_at",
)


def _dated(row: dict[str, Any]) -> dict[str, Any]:
    """The API's RFC 3339 strings as datetimes, as the database rows have them."""
    return {
        k: datetime.fromisoformat(v) if k in _TIMES and isinstance(v, str) else v
        for k, v in row.items()
    }


def _needs_api(what: str) -> None:
    if not configured():
        raise Usage(f"{what} reads through the HTTP API: set {URL_VARIABLE} and TENANTCTL_TOKEN")


def events_command(
    tenant_id: Annotated[str, typer.Argument(metavar="TENANT_ID", help="The tenant id")],
    type_: Annotated[
        list[str] | None, typer.Option("--type", help="Only this event type (repeatable)")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many events")] = None,
) -> None:
    """A tenant's timeline through the API: its result events, oldest first, one JSON per line."""
    _needs_api("tenantctl events")
    for event in events(tenant_id, type_, limit):
        print_json(event, lines=True)


operation_app = typer.Typer(
    help="Operations of the HTTP API (what its commands answer).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
OperationArg = Annotated[
    str, typer.Argument(metavar="OPERATION", help="operations/<id> or the id (printed on stderr)")
]


@operation_app.command("get")
def operation_get(operation_id: OperationArg) -> None:
    """Show an operation as it is now."""
    _needs_api("tenantctl operation")
    operation(operation_id, False, 0)


@operation_app.command("wait")
def operation_wait(
    operation_id: OperationArg,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait (then exit 3)")] = 600.0,
) -> None:
    """Poll an operation until it is done; print it (exit 1 if it ended in an error)."""
    _needs_api("tenantctl operation")
    operation(operation_id, True, timeout)


def register(root: typer.Typer) -> None:
    """Add the API-only commands to tenantctl."""
    root.command("events")(events_command)
    root.add_typer(operation_app, name="operation")
