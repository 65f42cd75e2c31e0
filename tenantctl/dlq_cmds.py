"""tenantctl's dead-letter commands: ``dlq list`` and ``dlq replay``."""

import asyncio
from typing import Annotated

import typer

from tenantctl.output import JSON_HELP, NotFound, Usage, notice, out, print_json

app = typer.Typer(help="Dead letters in tenants.dlq.", no_args_is_help=True, rich_markup_mode=None)


@app.command("list")
def dlq_list(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Show every dead letter with its reason and origin."""
    from rich.table import Table

    from tenantctl import dlq_ops
    from tenantctl.common import settings

    letters = [d.summary() for d in asyncio.run(dlq_ops.read_all(settings()))]
    if as_json:
        print_json(letters)
        return
    table = Table("id", "reason", "source", "group", "key", "event id", "detail")
    for d in letters:
        table.add_row(
            str(d["id"]),
            str(d["reason"]),
            str(d["source"]),
            str(d["group"]),
            str(d["key"])[:20],
            str(d["event_id"]),
            str(d["detail"]),
        )
    out.print(table)


@app.command("replay")
def dlq_replay(
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="A dead letter's partition:offset (repeatable); replayed again"),
    ] = None,
    all_: Annotated[
        bool,
        typer.Option("--all", help="Every dead letter no earlier --all has replayed, once each"),
    ] = False,
) -> None:
    """Republish dead letters to their source topic (after a fix), original bytes unchanged.

    Prints the replayed ids as JSON; --all remembers what it replayed (the committed offsets
    of the consumer group tenantctl-dlq-replay on tenants.dlq), so a rerun replays only new ones.
    """
    from tenantctl import dlq_ops
    from tenantctl.common import settings

    if bool(ids) == all_:
        raise Usage("pass --id partition:offset (repeatable) or --all")
    s = settings()
    if ids:
        for i in ids:
            try:
                dlq_ops.parse_id(i)
            except ValueError as e:
                raise Usage(str(e)) from None
        try:
            done = asyncio.run(dlq_ops.replay_ids(s, ids))
        except KeyError as e:
            raise NotFound(
                f"no dead letter {e.args[0]} in tenants.dlq (see tenantctl dlq list)"
            ) from None
    else:
        done = asyncio.run(dlq_ops.replay_new(s, lambda n: notice(f"replayed {n} so far")))
    notice(f"replayed {len(done.replayed)}; skipped {len(done.skipped)} (unknown source topic)")
    print_json({"replayed": done.replayed, "skipped": done.skipped})


def register(root: typer.Typer) -> None:
    """Add the dlq commands to tenantctl."""
    root.add_typer(app, name="dlq")
