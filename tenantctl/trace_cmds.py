"""tenantctl's ``trace`` command: a flow's causal chain across every topic, as a tree."""

import asyncio
from typing import Annotated

import typer

from tenantctl.output import JSON_HELP, NotFound, out, print_json


def trace(
    query: Annotated[
        str,
        typer.Argument(
            metavar="ID", help="A correlation id, an event id (its whole flow) or a W3C trace id"
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Print the causal chain (causationid -> id) of one flow across the request topics, results,
    dead letters and replays, with each hop's time and the group that handled it."""
    from runtime.settings import load_settings
    from tenantctl import trace_ops

    sightings = asyncio.run(trace_ops.read_sightings(load_settings()))
    roots = trace_ops.build_tree(trace_ops.select(sightings, query))
    if not roots:
        raise NotFound(f"no event with correlation, event or trace id {query!r} in any topic")
    if as_json:
        print_json([r.as_dict() for r in roots])
        return
    for line in trace_ops.render(roots):
        out.print(line, highlight=False, markup=False)


def register(root: typer.Typer) -> None:
    """Add the trace command to tenantctl."""
    root.command("trace")(trace)
