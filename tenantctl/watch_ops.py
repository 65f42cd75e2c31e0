"""``tenantctl watch``: follow tenants.events as a live table, JSON lines or plain lines.

Off a terminal every event is written and flushed as it arrives, so a pipe sees it at once;
SIGTERM and SIGINT stop the watch cleanly (exit 0) in every mode.
"""

import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine
from typing import Any, Literal

from rich.live import Live
from rich.table import Table

from adapters.kafka.event_reader import EventReader
from contracts.envelope import Envelope
from runtime.settings import Settings
from tenantctl.output import err, out, print_json, rfc3339

Mode = Literal["live", "json", "plain"]
COLUMNS = ("time", "type", "tenant", "correlation", "details")


def details(env: Envelope) -> str:
    """``key=value`` pairs of the event's data, without the tenant id (it has its own column)."""
    return " ".join(f"{k}={v}" for k, v in env.data.items() if k != "tenant_id")


def row(env: Envelope) -> tuple[str, ...]:
    return (rfc3339(env.time), env.type, env.subject, env.correlationid, details(env))


def run(settings: Settings, mode: Mode, from_beginning: bool, limit: int) -> None:
    """Follow until ``limit`` events, SIGTERM or SIGINT."""
    asyncio.run(_until_signalled(_follow(settings, mode, from_beginning, limit)))


async def _until_signalled(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _follow(settings: Settings, mode: Mode, from_beginning: bool, limit: int) -> None:
    seen = 0
    async with EventReader(settings.kafka, from_beginning=from_beginning) as reader:
        if mode == "live":
            await _live(reader, limit)
            return
        if mode == "plain":
            _line(COLUMNS)
        async for env in reader:
            if mode == "json":
                print_json(env.model_dump(mode="json"), lines=True)
            else:
                _line(row(env))
            seen += 1
            if limit and seen >= limit:
                return


def _line(cells: tuple[str, ...]) -> None:
    sys.stdout.write("\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells) + "\n")
    sys.stdout.flush()


async def _live(reader: EventReader, limit: int) -> None:
    rows: list[tuple[str, ...]] = []

    def render() -> Table:
        table = Table(*COLUMNS, title="tenants.events")
        for r in rows[-30:]:
            table.add_row(r[0][11:19], r[1], r[2], r[3][:8], r[4])
        return table

    err.print("following tenants.events; Ctrl-C to stop", style="dim")
    with Live(render(), console=out, refresh_per_second=4) as live:
        async for env in reader:
            rows.append(row(env))
            live.update(render())
            if limit and len(rows) >= limit:
                return
