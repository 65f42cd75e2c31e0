"""tenantctl over the HTTP API: with TENANTCTL_API_URL and TENANTCTL_TOKEN set, the commands
that have an API route use it, so an operator needs a token and no database credentials."""

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

URL_VARIABLE, TOKEN_VARIABLE = "TENANTCTL_API_URL", "TENANTCTL_TOKEN"


class ApiError(Exception):
    """A problem+json answer (or no answer at all)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")
        self.status, self.problem = status, problem


def configured() -> bool:
    return bool(os.environ.get(URL_VARIABLE) and os.environ.get(TOKEN_VARIABLE))


def call(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request to the API (the CLI is synchronous: nothing else waits on this thread)."""
    url = os.environ[URL_VARIABLE].rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (operator's URL)
    request.add_header("Authorization", f"Bearer {os.environ[TOKEN_VARIABLE]}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return dict(json.loads(answer.read()))
    except urllib.error.HTTPError as e:
        try:
            problem = json.loads(e.read())
        except ValueError:
            problem = {"detail": str(e)}
        raise ApiError(e.code, problem) from None
    except OSError as e:
        raise ApiError(0, {"title": "unreachable", "detail": str(e)}) from None


def tenant_status(tenant_id: str) -> dict[str, Any] | None:
    try:
        return call("GET", f"/v1/tenants/{tenant_id}")
    except ApiError as e:
        if e.status == 404:
            return None
        raise


def list_tenants() -> list[dict[str, Any]]:
    tenants: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = call("GET", "/v1/tenants?page_size=200" + (f"&page_token={token}" if token else ""))
        tenants += page["tenants"]
        token = page["next_page_token"]
        if token is None:
            return tenants


def request_tenant(tenant_id: str, plan: str | None, wait: bool, timeout: float) -> dict[str, Any]:
    """POST /v1/tenants; with ``wait``, poll the operation until done or ``timeout``."""
    body: dict[str, Any] = {"tenant_id": tenant_id, **({"plan": plan} if plan else {})}
    operation = call("POST", "/v1/tenants", body)
    deadline = time.monotonic() + timeout
    while wait and not operation["done"] and time.monotonic() < deadline:
        time.sleep(0.5)  # polling an operation is the API's contract (AIP-151)
        operation = call("GET", f"/v1/{operation['name']}")
    return operation
