"""RFC 9457 problem details: every error the API answers is ``application/problem+json``."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "urn:tenant-service:problem:"


_PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}


def _described(text: str) -> dict[str, Any]:
    return {"description": text, "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}}}


# Documented on every /v1 route (RFC 9457 bodies).
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _described("No bearer token, or one that was refused."),
    403: _described("The token lacks the route's scope."),
    404: _described("No such tenant or operation."),
    409: _described("A conflicting operation is running, or nothing to do."),
    413: _described("The body is too large."),
    422: _described("The request is malformed."),
    429: _described("Rate limited: see Retry-After and the RateLimit headers."),
}


class Problem(Exception):
    """Raised anywhere in a request; answered as problem+json with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": _TYPE_BASE + code, "title": code.replace("_", " "), "status": status}
    body |= {"detail": detail, **extra}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def install(app: FastAPI) -> None:
    """Turn our problems, FastAPI's validation errors and Starlette's HTTP errors into problems."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc.status, exc.code, exc.detail, exc.headers, **exc.extra)

    async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()[:20]
        ]
        return problem_response(422, "invalid_request", "The request is malformed.", errors=errors)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
