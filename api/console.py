"""The operator console: one static page that calls this API with the operator's own token.

The page carries no data and needs no token to load; everything it shows comes from the /v1
routes, under the scopes of the bearer token typed into it (kept in the tab's sessionStorage).
Left out of the OpenAPI document: it is a page for people, not a route for clients.
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()
PAGE = Path(__file__).resolve().parent / "static" / "console.html"


@router.get("/console", include_in_schema=False)
def console() -> HTMLResponse:
    """The console page (a plain def: FastAPI reads the file in its thread pool, off the loop)."""
    # Its own script only, no framing, no referrer: a token typed into it stays in it.
    return HTMLResponse(
        PAGE.read_text(),
        headers={
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline';"
            " style-src 'unsafe-inline'; frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )
