"""tenantctl: request and inspect tenants, follow events, run workers, drive the local stack."""

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from runtime.logging import configure_logging
from runtime.settings import Settings, load_settings
from tenantctl import api_client, ops

app = typer.Typer(
    help="Operate the Tenant Service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_KEY_FILE = Path.home() / ".cache" / "tenant-service" / "api-dev-key.pem"


def _settings() -> Settings:
    try:
        return load_settings()
    except SystemExit as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None


@app.command()
def request(
    tenant_id: str,
    plan: Annotated[str | None, typer.Option(help="Plan; default TENANT_DEFAULT_PLAN")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result and print it")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 60.0,
) -> None:
    """Publish TenantRequested for TENANT_ID (through the HTTP API when TENANTCTL_API_URL and
    TENANTCTL_TOKEN are set)."""
    if api_client.configured():
        _api_request(tenant_id, plan, wait, timeout)
        return
    settings = _settings()
    envelope, result = asyncio.run(
        ops.request_tenant(settings, tenant_id, plan or settings.default_plan, wait, timeout)
    )
    _print_result(envelope, result, wait, timeout)


@app.command()
def status(tenant_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show one tenant's registry row."""
    if api_client.configured():
        record = _api(lambda: api_client.tenant_status(tenant_id))
    else:
        record = asyncio.run(ops.tenant_status(_settings(), tenant_id))
    if record is None:
        console.print(f"[red]unknown tenant {tenant_id!r}[/red]")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(record, default=str, indent=2))
        return
    _table([record])


@app.command("list")
def list_tenants(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every tenant in the registry."""
    if api_client.configured():
        records = _api(api_client.list_tenants)
    else:
        records = asyncio.run(ops.list_tenants(_settings()))
    if as_json:
        print(json.dumps(records, default=str, indent=2))
        return
    _table(records)


@app.command(context_settings={"allow_extra_args": False})
def backup(
    args: Annotated[
        list[str], typer.Argument(help="TENANT_ID, or: verify TENANT_ID, or: fetch TENANT_ID")
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the result, with progress")
    ] = False,
    backup_id: Annotated[
        str, typer.Option("--backup", help="verify/fetch: which backup")
    ] = "latest",
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 3600.0,
    out: Annotated[Path | None, typer.Option("--out", help="fetch: folder to write to")] = None,
) -> None:
    """Back up a tenant now (BackupDue), or `backup verify TENANT_ID` for a restore drill,
    or `backup fetch TENANT_ID --out DIR` for a verified, decrypted dump plus restore.sh."""
    from tenantctl import backup_ops

    settings = _settings()
    if len(args) == 2 and args[0] == "fetch":
        from tenantctl import backup_fetch

        if out is None:
            raise typer.BadParameter("fetch needs --out DIR")
        raise typer.Exit(backup_fetch.main(settings, args[1], backup_id, out))
    if len(args) == 2 and args[0] == "verify":
        report = asyncio.run(backup_ops.drill(settings, args[1], backup_id))
        print(json.dumps(report, indent=2, default=str))
        raise typer.Exit(0 if report.get("ok") else 1)
    if len(args) != 1:
        raise typer.BadParameter("expected TENANT_ID or: verify TENANT_ID")
    envelope, result = asyncio.run(
        backup_ops.request_backup(settings, args[0], wait, timeout, console)
    )
    _print_result(envelope, result, wait, timeout)


@app.command()
def backups(tenant_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List a tenant's catalogued backups, newest first."""
    from tenantctl import backup_ops

    rows = asyncio.run(backup_ops.list_backups(_settings(), tenant_id))
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    table = Table("backup", "finished", "MB", "version", "target", "drill", "uri")
    for r in rows:
        drill = "-" if r["last_drill_ok"] is None else ("ok" if r["last_drill_ok"] else "FAILED")
        table.add_row(
            r["backup_id"],
            str(r["finished_at"])[:19],
            f"{r['bytes'] / 1e6:.2f}",
            str(r["schema_version"]),
            r["target"],
            drill,
            r["uri"],
        )
    console.print(table)


@app.command()
def restore(
    tenant_id: str,
    backup_id: Annotated[str, typer.Option("--backup", help="Backup id or latest")] = "latest",
    wait: Annotated[bool, typer.Option("--wait")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 3600.0,
) -> None:
    """Restore a tenant from a backup (RestoreRequested); the old schema is kept for a while."""
    from tenantctl import backup_ops

    envelope, result = asyncio.run(
        backup_ops.request_restore(_settings(), tenant_id, backup_id, wait, timeout, console)
    )
    _print_result(envelope, result, wait, timeout)


def _api(action: Any) -> Any:
    try:
        return action()
    except api_client.ApiError as e:
        console.print(f"[red]API: {e}[/red]")
        raise typer.Exit(2) from None


def _api_request(tenant_id: str, plan: str | None, wait: bool, timeout: float) -> None:
    operation = _api(lambda: api_client.request_tenant(tenant_id, plan, wait, timeout))
    console.print(f"{operation['name']} event id={operation['event_id']}", style="dim")
    if not wait:
        return
    print(json.dumps(operation, indent=2))
    if not operation["done"]:
        console.print(f"[red]no result within {timeout:.0f}s[/red]")
        raise typer.Exit(3)
    if "error" in operation:
        raise typer.Exit(1)


def _print_result(envelope: Any, result: Any, wait: bool, timeout: float) -> None:
    console.print(f"published {envelope.type} id={envelope.id}", style="dim")
    if not wait:
        return
    if result is None:
        console.print(f"[red]no result within {timeout:.0f}s[/red]")
        raise typer.Exit(3)
    print(json.dumps(result.model_dump(mode="json"), indent=2))
    if result.type.endswith("Failed"):
        raise typer.Exit(1)


@app.command()
def deactivate(
    tenant_id: str, wait: Annotated[bool, typer.Option("--wait")] = False, timeout: float = 60.0
) -> None:
    """Suspend a tenant (TenantDeactivated): access revoked, sessions ended, data kept."""
    from contracts.events import TenantDeactivated
    from tenantctl import lifecycle_ops

    _print_result(
        *asyncio.run(
            lifecycle_ops.request(
                _settings(), TenantDeactivated(tenant_id=tenant_id), wait, timeout
            )
        ),
        wait,
        timeout,
    )


@app.command()
def reactivate(
    tenant_id: str, wait: Annotated[bool, typer.Option("--wait")] = False, timeout: float = 60.0
) -> None:
    """Resume a suspended tenant (TenantReactivated)."""
    from contracts.events import TenantReactivated
    from tenantctl import lifecycle_ops

    _print_result(
        *asyncio.run(
            lifecycle_ops.request(
                _settings(), TenantReactivated(tenant_id=tenant_id), wait, timeout
            )
        ),
        wait,
        timeout,
    )


@app.command()
def erase(
    tenant_id: str,
    archive: Annotated[
        bool, typer.Option("--archive", help="Final backup under operator keys")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this destroys the tenant")] = False,
    wait: Annotated[bool, typer.Option("--wait")] = False,
    timeout: float = 600.0,
) -> None:
    """Erase a tenant for good (TenantEraseRequested): schema, role, keys, backups."""
    from contracts.events import TenantEraseRequested
    from tenantctl import lifecycle_ops

    if not yes:
        raise typer.BadParameter("erasing destroys the tenant's data: pass --yes")
    _print_result(
        *asyncio.run(
            lifecycle_ops.request(
                _settings(),
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
) -> None:
    """Roll tenant schema migrations out as TenantMigrationDue events, with live progress."""
    from tenantctl import lifecycle_ops

    summary = asyncio.run(
        lifecycle_ops.rollout(_settings(), console, to, canary, max_failures, timeout)
    )
    print(json.dumps(summary, indent=2))
    if summary.get("halted") or summary.get("timed_out"):
        raise typer.Exit(1)


keys_app = typer.Typer(help="The backup master key.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("rotate-master")
def keys_rotate_master(
    identity: Annotated[
        Path, typer.Option("--identity", help="The CURRENT master's age identity file")
    ],
    to: Annotated[str, typer.Option("--to", help="The new master's age recipient (age1...)")],
) -> None:
    """Re-wrap every tenant key to a new master, in one transaction, and pin it.

    Then give the workers TENANT_BACKUP_MASTER_RECIPIENT (and restore workers the new
    identity file) and restart them: a worker on the old master refuses to make new keys.
    Backups need no re-encryption: they are encrypted to the tenant keys.
    """
    from domain.errors import PermanentError
    from tenantctl import backup_ops

    try:
        n = asyncio.run(backup_ops.rotate_master(_settings(), identity, to, console))
    except PermanentError as e:  # nothing was changed: the transaction rolled back
        console.print(f"[red]not rotated ({e.reason}):[/red] {e}")
        raise typer.Exit(2) from None
    console.print(f"re-wrapped {n} tenant key(s); master is now {to[:16]}...")


dlq_app = typer.Typer(help="Dead letters in tenants.dlq.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show every dead letter with its reason and origin."""
    from tenantctl import dlq_ops

    letters = [d.summary() for d in asyncio.run(dlq_ops.read_all(_settings()))]
    if as_json:
        print(json.dumps(letters, indent=2))
        return
    table = Table("id", "reason", "source", "group", "key", "event id", "detail")
    for d in letters:
        table.add_row(
            str(d["id"]),
            str(d["reason"]),
            str(d["source"]),
            str(d["group"]),
            str(d["key"])[:20],
            str(d["event_id"])[:12],
            str(d["detail"])[:60],
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="partition:offset; repeatable")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter")] = False,
) -> None:
    """Republish dead letters to their source topic (after a fix), original bytes unchanged."""
    from tenantctl import dlq_ops

    if not ids and not all_:
        raise typer.BadParameter("pass --id partition:offset (repeatable) or --all")
    replayed = asyncio.run(dlq_ops.replay(_settings(), ids or None))
    console.print(f"replayed {len(replayed)}: {', '.join(replayed)}")


@app.command()
def watch(
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    limit: Annotated[int, typer.Option(help="Stop after this many events (0 = follow)")] = 0,
) -> None:
    """Follow tenants.events as a readable live table (Ctrl-C to stop)."""
    try:
        asyncio.run(ops.watch_events(_settings(), console, from_beginning, limit))
    except KeyboardInterrupt:
        pass


@app.command()
def run(
    roles: Annotated[
        list[str],
        typer.Argument(help="provisioner, relay, backup, scheduler, metrics, api, or all"),
    ],
) -> None:
    """Run worker roles in this process until SIGTERM/SIGINT."""
    from runtime.tracing import configure_tracing
    from runtime.worker import expand_roles, run_worker

    settings = _settings()
    configure_logging(settings.log_level)
    stop_tracing = configure_tracing(settings, "+".join(roles))
    try:
        asyncio.run(run_worker(settings, expand_roles(roles)))
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

    settings = _settings()
    if hs256:
        if settings.api_hs256_secret is None:
            raise typer.BadParameter("--hs256 needs TENANT_API_HS256_SECRET")
        signer: Any = settings.api_hs256_secret.get_secret_value()
    else:
        signer, jwks_file = ensure_dev_key(key)
        Console(stderr=True).print(f"verify with TENANT_API_JWKS_FILE={jwks_file}", style="dim")
    print(
        mint(
            signer,
            sub=sub,
            scopes=scope,
            audience=settings.api_jwt_audience,
            issuer=settings.api_jwt_issuer,
            ttl_s=ttl,
        )
    )


@app.command()
def stack(action: Annotated[str, typer.Argument(help="up | down | status")]) -> None:
    """Drive the local stack (scripts/stack): Kafka, PostgreSQL, Redis on loopback."""
    script = REPO_ROOT / "scripts" / "stack"
    raise typer.Exit(subprocess.call([str(script), action], env=os.environ.copy()))


@app.command()
def metrics(tenant_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a tenant's latest metrics snapshot (Redis, else the Postgres history)."""
    from tenantctl import metrics_ops

    origin, snapshot = asyncio.run(metrics_ops.latest_snapshot(_settings(), tenant_id))
    if snapshot is None:
        console.print(f"[red]no metrics for {tenant_id!r} yet[/red]")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(snapshot, default=str, indent=2))
        return
    table = Table("metric", "value", title=f"{tenant_id} (from {origin})")
    for key, value in snapshot.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def top(
    by: Annotated[str, typer.Option(help="size | connections | dead_tuples")] = "size",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
) -> None:
    """Tenants of the latest metrics tick, largest first."""
    from tenantctl import metrics_ops

    if by not in metrics_ops.TOP_COLUMNS:
        raise typer.BadParameter("--by must be size, connections or dead_tuples")
    rows = asyncio.run(metrics_ops.top_tenants(_settings(), by, limit))
    table = Table(
        "tenant",
        "plan",
        "MB",
        "tables",
        "live",
        "dead",
        "bloat MB",
        "cache hit",
        "conns",
        "redis KB",
        "window",
        title=f"top {limit} by {by}",
    )
    for r in rows:
        hit = "-" if r["cache_hit_ratio"] is None else f"{r['cache_hit_ratio']:.1%}"
        table.add_row(
            str(r["tenant_id"]),
            str(r["plan"]),
            f"{r['size_bytes'] / 1e6:.2f}",
            str(r["table_count"]),
            str(r["live_tuples"]),
            str(r["dead_tuples"]),
            f"{r['bloat_bytes'] / 1e6:.2f}",
            hit,
            str(r["connections"]),
            f"{r['redis_bytes'] / 1e3:.1f}",
            str(r["window_start"])[:19],
        )
    console.print(table)


def _table(records: list[dict[str, object]]) -> None:
    table = Table("tenant", "status", "plan", "schema", "version", "created", "updated")
    for r in records:
        table.add_row(
            str(r["tenant_id"]),
            str(r["status"]),
            str(r["plan"]),
            str(r["schema_name"]),
            str(r["schema_version"]),
            str(r["created_at"])[:19],
            str(r["updated_at"])[:19],
        )
    console.print(table)


def _register() -> None:
    from tenantctl import trace_cmds

    trace_cmds.register(app)


_register()


def main() -> None:
    from tenantctl.output import CliError, err

    try:
        app(prog_name="tenantctl")
    except CliError as e:  # an expected failure: one line on stderr, its exit code
        err.print(f"tenantctl: error: {e}", highlight=False, markup=False, soft_wrap=True)
        raise SystemExit(int(e.code)) from None


if __name__ == "__main__":
    main()
