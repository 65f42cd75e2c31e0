"""tenantctl's backup commands: ``backup create|verify``, ``backups``, ``restore``, ``keys``."""

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from tenantctl.output import JSON_HELP, ExitCode, notice, out, print_json, rfc3339


class _BackupGroup(TyperGroup):
    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        # `backup acme` was the old spelling; a subcommand name is never read as a tenant id,
        # so `backup verify` without an id is a usage error, not a backup of tenant "verify".
        try:
            return super().resolve_command(ctx, args)
        except Exception as e:
            if args and hasattr(e, "message"):
                e.message += f" To back up tenant {args[0]!r}: tenantctl backup create {args[0]}"
            raise


app = typer.Typer(
    cls=_BackupGroup,
    help="Back up a tenant now, or run a restore drill.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
keys_app = typer.Typer(help="The backup master key.", no_args_is_help=True, rich_markup_mode=None)
TenantArg = Annotated[str, typer.Argument(metavar="TENANT_ID", help="The tenant id")]
BackupOpt = Annotated[str, typer.Option("--backup", help="Backup id, or latest")]
WaitFlag = Annotated[
    bool, typer.Option("--wait", help="Wait for the result (progress on stderr) and print it")
]
Timeout = Annotated[float, typer.Option(help="Seconds to wait with --wait (then exit 3)", min=0.1)]


@app.command("create")
def backup_create(tenant_id: TenantArg, wait: WaitFlag = False, timeout: Timeout = 3600.0) -> None:
    """Back up a tenant now (BackupDue, trigger manual)."""
    from tenantctl import api_mode, backup_ops
    from tenantctl.common import print_result, settings
    from tenantctl.output import err

    if api_mode.configured():
        api_mode.lifecycle(tenant_id, "backup", None, wait, timeout)
        return
    envelope, result = asyncio.run(
        backup_ops.request_backup(settings(), tenant_id, wait, timeout, err)
    )
    print_result(envelope, result, wait, timeout)


@app.command("verify")
def backup_verify(tenant_id: TenantArg, backup_id: BackupOpt = "latest") -> None:
    """Restore drill into a scratch database; prints the report, exit 0 when it matches."""
    from tenantctl import backup_ops
    from tenantctl.common import settings

    report = asyncio.run(backup_ops.drill(settings(), tenant_id, backup_id))
    print_json(report)
    if not report.get("ok"):
        raise typer.Exit(ExitCode.FAILED)


@app.command("fetch")
def backup_fetch(
    tenant_id: TenantArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the dump and restore.sh to")],
    backup_id: BackupOpt = "latest",
) -> None:
    """Fetch a backup, verify its sha256, decrypt it: a pg_restore dump plus restore.sh."""
    from tenantctl import backup_fetch as fetch
    from tenantctl.common import settings

    raise typer.Exit(fetch.main(settings(), tenant_id, backup_id, out_dir))


def backups(
    tenant_id: TenantArg,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List a tenant's catalogued backups, newest first."""
    from rich.table import Table

    from tenantctl import api_mode, backup_ops
    from tenantctl.common import settings

    if api_mode.configured():
        rows = api_mode.backups(tenant_id)
    else:
        rows = asyncio.run(backup_ops.list_backups(settings(), tenant_id))
    if as_json:
        print_json(rows)
        return
    table = Table("backup", "finished", "MB", "version", "target", "drill", "uri")
    for r in rows:
        drill = "-" if r["last_drill_ok"] is None else ("ok" if r["last_drill_ok"] else "FAILED")
        table.add_row(
            r["backup_id"],
            rfc3339(r["finished_at"])[:19],
            f"{r['bytes'] / 1e6:.2f}",
            str(r["schema_version"]),
            r["target"],
            drill,
            r["uri"],
        )
    out.print(table)


def restore(
    tenant_id: TenantArg,
    backup_id: BackupOpt = "latest",
    wait: WaitFlag = False,
    timeout: Timeout = 3600.0,
) -> None:
    """Restore a tenant from a backup (RestoreRequested); the old schema is kept for a while."""
    from tenantctl import api_mode, backup_ops
    from tenantctl.common import print_result, settings
    from tenantctl.output import err

    if api_mode.configured():
        api_mode.lifecycle(tenant_id, "restore", {"backup_id": backup_id}, wait, timeout)
        return
    envelope, result = asyncio.run(
        backup_ops.request_restore(settings(), tenant_id, backup_id, wait, timeout, err)
    )
    print_result(envelope, result, wait, timeout)


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
    from tenantctl.common import settings
    from tenantctl.output import CliError, err

    try:
        n = asyncio.run(backup_ops.rotate_master(settings(), identity, to, err))
    except PermanentError as e:  # nothing was changed: the transaction rolled back
        code = ExitCode.USAGE if e.reason == "invalid_recipient" else ExitCode.FAILED
        raise CliError(f"not rotated ({e.reason}): {e}", code) from None
    notice(f"re-wrapped {n} tenant key(s); master is now {to[:16]}...")


def register(root: typer.Typer) -> None:
    """Add the backup commands to tenantctl."""
    root.add_typer(app, name="backup")
    root.command()(backups)
    root.command()(restore)
    root.add_typer(keys_app, name="keys")
