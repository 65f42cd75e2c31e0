"""tenantctl over the HTTP API: with TENANTCTL_API_URL and TENANTCTL_TOKEN set, the commands
that have an API route use it, so an operator needs a token and no database credentials.

Every refusal becomes a CliError with one line that says what to do and an exit code: a bad or
under-scoped token or a malformed request is a usage error (nothing was published), an unknown
tenant or operation is "not found", a conflict, a rate limit or an unreachable API is a failure.
"""

import os
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from tenantctl.output import CliError, ExitCode

URL_VARIABLE, TOKEN_VARIABLE = "TENANTCTL_API_URL", "TENANTCTL_TOKEN"
POLL_S = 0.5  # polling an operation is the API's contract (AIP-151)


class ApiError(CliError):
    """A problem+json answer (or no answer at all), as one line and an exit code."""

    def __init__(self, status: int, problem: dict[str, Any], message: str, code: ExitCode):
        super().__init__(f"API: {message}", code)
        self.status, self.problem = status, problem


def configured() -> bool:
    return bool(os.environ.get(URL_VARIABLE) and os.environ.get(TOKEN_VARIABLE))


class ApiClient:
    """A synchronous client (the CLI has nothing else to do while it waits)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=30,
            transport=transport,
        )
        self._sleep = sleep

    @classmethod
    def from_env(cls) -> "ApiClient":
        return cls(os.environ[URL_VARIABLE], os.environ[TOKEN_VARIABLE])

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any
    ) -> dict[str, Any]:
        """One request; a non-2xx answer raises ApiError."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            answer = self._http.request(method, path, json=body, params=query)
        except httpx.HTTPError as e:
            raise ApiError(
                0,
                {},
                f"cannot reach {self._http.base_url}: {e or type(e).__name__}",
                ExitCode.FAILED,
            ) from None
        if answer.is_success:
            return dict(answer.json())
        raise refusal(answer)

    def pages(
        self, path: str, field: str, limit: int | None = None, **params: Any
    ) -> Iterator[Any]:
        """The items of a paged list, following next_page_token (at most ``limit``)."""
        token: str | None = None
        seen = 0
        while True:
            page = self.call("GET", path, page_size=200, page_token=token, **params)
            for item in page[field]:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield item
            token = page.get("next_page_token")
            if token is None:
                return

    def command(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a command; its 202 answer is an operation."""
        return self.call("POST", path, body)

    def wait(self, operation: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Poll the operation until it is done or ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while not operation["done"] and time.monotonic() < deadline:
            self._sleep(POLL_S)
            operation = self.call("GET", f"/v1/{operation['name']}")
        return operation


def refusal(answer: httpx.Response) -> ApiError:
    """The ApiError of a non-2xx answer."""
    try:
        problem = dict(answer.json())
    except ValueError:
        problem = {"detail": answer.text[:200]}
    status = answer.status_code
    detail = str(problem.get("detail") or problem.get("title") or answer.reason_phrase)
    if status == 401:
        return ApiError(
            status,
            problem,
            f"the token was refused (401): {detail} Check {TOKEN_VARIABLE} (mint a new one if it"
            " expired).",
            ExitCode.USAGE,
        )
    if status == 403:
        scope = problem.get("required_scope", "?")
        return ApiError(
            status, problem, f"the token lacks the scope {scope} (403): {detail}", ExitCode.USAGE
        )
    if status == 404:
        return ApiError(status, problem, f"not found (404): {detail}", ExitCode.NOT_FOUND)
    if status == 409:
        return ApiError(status, problem, f"conflict (409): {detail}", ExitCode.FAILED)
    if status == 429:
        after = answer.headers.get("Retry-After", "?")
        return ApiError(
            status, problem, f"rate limited (429): retry after {after}s. {detail}", ExitCode.FAILED
        )
    if 400 <= status < 500:
        return ApiError(status, problem, f"request refused ({status}): {detail}", ExitCode.USAGE)
    return ApiError(status, problem, f"the API failed ({status}): {detail}", ExitCode.FAILED)


def tenant_path(tenant_id: str, action: str = "") -> str:
    """``/v1/tenants/{id}`` (``:action`` appended), the id escaped as a path segment."""
    return f"/v1/tenants/{quote(tenant_id, safe='')}{action}"
