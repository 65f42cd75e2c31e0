"""tenantctl's metrics commands: ``metrics`` (one tenant) and ``top``."""

import asyncio
from enum import StrEnum
from typing import Annotated

import typer

from tenantctl.output import (
    JSON_HELP,
    CliError,
    ExitCode,
    NotFound,
    notice,
    out,
    print_json,
    rfc3339,
)

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


class Rank(StrEnum):
    SIZE = "size"
    CONNECTIONS = "connections"
    DEAD_TUPLES = "dead_tuples"


def metrics(
    tenant_id: Annotated[str, typer.Argument(metavar="TENANT_ID", help="The tenant id")],
    as_json: JsonFlag = False,
    collect: Annotated[
        bool,
        typer.Option("--collect", help="Run a metrics tick now and show its snapshot"),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait with --collect (then exit 3)", min=0.1)
    ] = 120.0,
    history: Annotated[
        int, typer.Option(min=0, help="Through the API: the last N snapshots of the history")
    ] = 0,
) -> None:
    """Show a tenant's latest metrics snapshot (Redis, else the Postgres history)."""
    from tenantctl import api_mode, metrics_ops, ops
    from tenantctl.common import settings

    if api_mode.configured() and not collect:
        _api_metrics(tenant_id, history, as_json)
        return
    if history:
        raise CliError(
            "--history reads through the HTTP API: set TENANTCTL_API_URL and TENANTCTL_TOKEN",
            ExitCode.USAGE,
        )
    s = settings()
    if asyncio.run(ops.tenant_status(s, tenant_id)) is None:
        raise NotFound(f"unknown tenant {tenant_id!r}")
    if collect:
        if asyncio.run(metrics_ops.collect(s, tenant_id, timeout)) is None:
            raise CliError(
                f"no TenantMetricsCollected for {tenant_id!r} within {timeout:.0f}s"
                " (is a `tenantctl run metrics` worker running?)",
                ExitCode.TIMEOUT,
            )
    origin, snapshot = asyncio.run(metrics_ops.latest_snapshot(s, tenant_id))
    if snapshot is None:
        raise CliError(
            f"no metrics for {tenant_id!r} yet; the next tick is due at"
            f" {rfc3339(metrics_ops.next_tick(s))} (every {s.metrics_interval}s, with"
            " `tenantctl run scheduler`), or collect now: tenantctl metrics"
            f" {tenant_id} --collect",
            ExitCode.NOT_FOUND,
        )
    if as_json:
        print_json(snapshot)
        return
    from rich.table import Table

    notice(f"{tenant_id}: from {origin}")
    table = Table("metric", "value")
    for key, value in snapshot.items():
        table.add_row(key, str(value))
    out.print(table)


def _api_metrics(tenant_id: str, history: int, as_json: bool) -> None:
    from rich.table import Table

    from tenantctl import api_mode

    rows = api_mode.metrics_history(tenant_id, max(history, 1))
    if not history:
        if not rows:
            raise CliError(f"no metrics for {tenant_id!r} yet", ExitCode.NOT_FOUND)
        if as_json:
            print_json(rows[0])
            return
        notice(f"{tenant_id}: from the history (API)")
        table = Table("metric", "value")
        for key, value in rows[0].items():
            table.add_row(key, str(value))
        out.print(table)
        return
    if as_json:
        print_json(rows)
        return
    table = Table("window", "MB", "tables", "live", "dead", "conns", "redis KB")
    for r in rows:
        table.add_row(
            rfc3339(r["window_start"])[:19],
            f"{r['size_bytes'] / 1e6:.2f}",
            str(r["table_count"]),
            str(r["live_tuples"]),
            str(r["dead_tuples"]),
            str(r["connections"]),
            f"{r['redis_bytes'] / 1e3:.1f}",
        )
    out.print(table)


def top(
    by: Annotated[Rank, typer.Option(help="Rank by this figure")] = Rank.SIZE,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many tenants")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Tenants of the latest metrics tick, largest first."""
    from rich.table import Table

    from tenantctl import metrics_ops
    from tenantctl.common import settings

    s = settings()
    rows = asyncio.run(metrics_ops.top_tenants(s, by.value, limit))
    if as_json:
        print_json(rows)
        return
    if not rows:
        notice(f"no metrics tick yet; the next is due at {rfc3339(metrics_ops.next_tick(s))}")
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
            rfc3339(r["window_start"])[:19],
        )
    out.print(table)


def register(root: typer.Typer) -> None:
    """Add the metrics commands to tenantctl."""
    root.command()(metrics)
    root.command()(top)
