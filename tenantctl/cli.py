"""tenantctl: request and inspect tenants, follow events, run workers, drive the local stack.

Data goes to stdout, everything else to stderr; errors are one line and an exit code from
tenantctl.output.ExitCode (``--debug`` shows the traceback).
"""

import asyncio
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from domain.lifecycle import TenantStatus
from runtime.logging import configure_logging
from tenantctl import api_client, api_mode, ops
from tenantctl.common import REPO_ROOT, print_result, settings
from tenantctl.output import (
    JSON_HELP,
    ExitCode,
    NotFound,
    Usage,
    describe,
    err,
    notice,
    out,
    print_json,
    rfc3339,
)

app = typer.Typer(
    help="Operate the Tenant Service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without a metavar, read the same in the README
)
# The worker roles of runtime.roles.ROLE_BUILDERS (a unit test keeps them equal); importing it
# here would load every consumer for a `tenantctl status`.
ROLES = ("provisioner", "relay", "backup", "scheduler", "metrics", "api")
DEV_KEY_FILE = Path.home() / ".cache" / "tenant-service" / "api-dev-key.pem"
_debug = False

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
WaitFlag = Annotated[
    bool, typer.Option("--wait", help="Wait for the result event and print it on stdout")
]
TenantArg = Annotated[str, typer.Argument(metavar="TENANT_ID", help="The tenant id")]


Timeout = Annotated[float, typer.Option(help="Seconds to wait with --wait (then exit 3)", min=0.1)]


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected error")
    ] = False,
) -> None:
    global _debug
    _debug = debug
    api_mode.invoked = ctx.invoked_subcommand
    if ctx.invoked_subcommand == "trace":  # reads Kafka and the database directly
        api_mode.refuse_without_route("tenantctl trace")
    if ctx.invoked_subcommand != "run" and not debug:
        # aiokafka warns on stderr while it retries (e.g. a topic not created yet); a command's
        # own one-line error says what went wrong. Workers keep their structured logs.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


@app.command()
def request(
    tenant_id: TenantArg,
    plan: Annotated[str | None, typer.Option(help="Plan; default TENANT_DEFAULT_PLAN")] = None,
    wait: WaitFlag = False,
    timeout: Timeout = 60.0,
) -> None:
    """Publish TenantRequested for TENANT_ID (through the HTTP API when TENANTCTL_API_URL and
    TENANTCTL_TOKEN are set)."""
    if api_client.configured():
        api_mode.request(tenant_id, plan, wait, timeout)
        return
    s = settings()
    envelope, result = asyncio.run(
        ops.request_tenant(s, tenant_id, plan or s.default_plan, wait, timeout)
    )
    print_result(envelope, result, wait, timeout)


@app.command()
def status(tenant_id: TenantArg, as_json: JsonFlag = False) -> None:
    """Show one tenant's registry row."""
    if api_client.configured():
        record = api_mode.tenant(tenant_id)
    else:
        record = asyncio.run(ops.tenant_status(settings(), tenant_id))
    if record is None:
        raise NotFound(f"unknown tenant {tenant_id!r}")
    if as_json:
        print_json(record)
        return
    tenant_table([record])


@app.command("list")
def list_tenants(
    as_json: JsonFlag = False,
    status_: Annotated[
        TenantStatus | None, typer.Option("--status", help="Only tenants in this status")
    ] = None,
    plan: Annotated[str | None, typer.Option(help="Only tenants on this plan")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Include erased tenants (tombstones)")
    ] = False,
) -> None:
    """List the tenants in the registry (erased ones only with --all)."""
    if api_client.configured():
        records = api_mode.tenants(status_.value if status_ else None, plan, all_)
    else:
        records = asyncio.run(ops.list_tenants(settings(), status_, plan, include_erased=all_))
    if as_json:
        print_json(records)
        return
    tenant_table(records)


@app.command()
def deactivate(tenant_id: TenantArg, wait: WaitFlag = False, timeout: Timeout = 60.0) -> None:
    """Suspend a tenant (TenantDeactivated): access revoked, sessions ended, data kept."""
    from contracts.events import TenantDeactivated
    from tenantctl import lifecycle_ops

    if api_client.configured():
        api_mode.lifecycle(tenant_id, "suspend", None, wait, timeout)
        return
    print_result(
        *asyncio.run(
            lifecycle_ops.request(settings(), TenantDeactivated(tenant_id=tenant_id), wait, timeout)
        ),
        wait,
        timeout,
    )


@app.command()
def reactivate(tenant_id: TenantArg, wait: WaitFlag = False, timeout: Timeout = 60.0) -> None:
    """Resume a suspended tenant (TenantReactivated)."""
    from contracts.events import TenantReactivated
    from tenantctl import lifecycle_ops

    if api_client.configured():
        api_mode.lifecycle(tenant_id, "resume", None, wait, timeout)
        return
    print_result(
        *asyncio.run(
            lifecycle_ops.request(settings(), TenantReactivated(tenant_id=tenant_id), wait, timeout)
        ),
        wait,
        timeout,
    )


@app.command()
def erase(
    tenant_id: TenantArg,
    archive: Annotated[
        bool, typer.Option("--archive", help="Final backup under operator keys")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this destroys the tenant")] = False,
    wait: WaitFlag = False,
    timeout: Timeout = 600.0,
) -> None:
    """Erase a tenant for good (TenantEraseRequested): schema, role, keys, backups."""
    from contracts.events import TenantEraseRequested
    from tenantctl import lifecycle_ops

    if not yes:
        raise Usage("erasing destroys the tenant's data: pass --yes")
    if api_client.configured():
        api_mode.lifecycle(tenant_id, "erase", {"archive": archive}, wait, timeout)
        return
    print_result(
        *asyncio.run(
            lifecycle_ops.request(
                settings(),
                TenantEraseRequested(tenant_id=tenant_id, archive=archive),
                wait,
                timeout,
            )
        ),
        wait,
        timeout,
    )


@app.command()
def migrate(
    to: Annotated[int | None, typer.Option("--to", help="Target version (default latest)")] = None,
    canary: Annotated[int, typer.Option(help="Tenants migrated first; the rest wait")] = 0,
    max_failures: Annotated[int, typer.Option(help="Halt the rollout past this many")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait per wave")] = 3600.0,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Through the API: wait for the operation")
    ] = True,
) -> None:
    """Roll tenant schema migrations out as TenantMigrationDue events (progress on stderr).
    Through the API: one operation for every tenant below the target (no canary waves)."""
    from tenantctl import lifecycle_ops

    if api_client.configured():
        if canary:
            api_mode.refuse_without_route("tenantctl migrate --canary")
        api_mode.migrate(to, max_failures, wait, timeout)
        return
    summary = asyncio.run(lifecycle_ops.rollout(settings(), err, to, canary, max_failures, timeout))
    if not summary["tenants"]:
        notice(f"nothing to migrate: no tenant is below version {summary['target']}")
    print_json(summary)
    if summary.get("halted") or summary.get("timed_out"):
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def watch(
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest event, not the next one")
    ] = False,
    limit: Annotated[int, typer.Option(help="Stop after this many events (0 = follow)")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON event per line (the default off a terminal)")
    ] = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="One tab-separated line per event, no live table")
    ] = False,
) -> None:
    """Follow tenants.events until Ctrl-C or SIGTERM: a live table on a terminal, else JSON lines."""
    from tenantctl import watch_ops

    if as_json and plain:
        raise Usage("--json and --plain exclude each other")
    mode: watch_ops.Mode = (
        "json" if as_json else "plain" if plain else "live" if out.is_terminal else "json"
    )
    watch_ops.run(settings(), mode, from_beginning, limit)


@app.command()
def run(
    roles: Annotated[
        list[str],
        typer.Argument(metavar="ROLE...", help=f"Worker roles: {', '.join(ROLES)}, or all"),
    ],
) -> None:
    """Run worker roles in this process until SIGTERM/SIGINT (JSON logs on stderr)."""
    import uvloop

    from runtime.tracing import configure_tracing
    from runtime.worker import expand_roles, run_worker

    s = settings(api_mode_ok=True)  # a worker: it has the database settings by definition
    configure_logging(s.log_level)
    stop_tracing = configure_tracing(s, "+".join(roles))
    try:
        # uvloop: asyncio's API at a lower cost per await and per socket read; the consumer
        # path spends about a fifth of a worker's CPU in the event loop and the Kafka client.
        uvloop.run(run_worker(s, expand_roles(roles)))
    finally:
        stop_tracing()  # flushes the spans still buffered


@app.command()
def token(
    sub: Annotated[str, typer.Option(help="The client the token names (becomes the actor)")],
    scope: Annotated[list[str], typer.Option("--scope", help="Repeatable, e.g. tenants:read")],
    key: Annotated[
        Path, typer.Option(help="Ed25519 key file; created with its JWKS beside it if missing")
    ] = DEV_KEY_FILE,
    ttl: Annotated[int, typer.Option(help="Seconds the token is valid")] = 3600,
    hs256: Annotated[
        bool, typer.Option("--hs256", help="Sign with TENANT_API_HS256_SECRET instead")
    ] = False,
) -> None:
    """Mint a development token for the HTTP API (prints it; the JWKS path goes to stderr)."""
    from api.tokens import ensure_dev_key, mint

    s = settings(api_mode_ok=True)  # reads only the token settings
    if hs256:
        if s.api_hs256_secret is None:
            raise Usage("--hs256 needs TENANT_API_HS256_SECRET")
        signer: Any = s.api_hs256_secret.get_secret_value()
    else:
        signer, jwks_file = ensure_dev_key(key)
        notice(f"verify with TENANT_API_JWKS_FILE={jwks_file}")
    print(
        mint(
            signer,
            sub=sub,
            scopes=scope,
            audience=s.api_jwt_audience,
            issuer=s.api_jwt_issuer,
            ttl_s=ttl,
        )
    )


@app.command()
def stack(
    action: Annotated[str, typer.Argument(metavar="ACTION", help="up, down or status")],
) -> None:
    """Drive the local stack (scripts/stack): Kafka, PostgreSQL, Redis on loopback."""
    if action not in ("up", "down", "status"):
        raise Usage(f"unknown stack action {action!r}: up, down or status")
    script = REPO_ROOT / "scripts" / "stack"
    raise typer.Exit(subprocess.call([str(script), action], env=os.environ.copy()))


def tenant_table(records: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("tenant", "status", "plan", "schema", "version", "created", "updated")
    for r in records:
        table.add_row(
            str(r["tenant_id"]),
            str(r["status"]),
            str(r["plan"]),
            str(r["schema_name"]),
            str(r["schema_version"]),
            rfc3339(r["created_at"])[:19],
            rfc3339(r["updated_at"])[:19],
        )
    out.print(table)


def _register() -> None:
    # Command groups live in their own modules; each adds its commands to ``app`` here.
    from tenantctl import backup_cmds, dlq_cmds, metrics_cmds, trace_cmds

    api_mode.register(app)
    backup_cmds.register(app)
    metrics_cmds.register(app)
    dlq_cmds.register(app)
    trace_cmds.register(app)


_register()


def main() -> None:
    """Entry point: run the command; an error is one line on stderr and an exit code."""
    try:
        app(prog_name="tenantctl")
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # noqa: BLE001  (the one place every error becomes a line)
        if _debug:
            traceback.print_exc()
        code, message = describe(e)
        err.print(f"tenantctl: error: {message}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(int(code))


if __name__ == "__main__":
    main()
