"""tenantctl's API client with a fake transport: refusals become one clear line and an exit
code, lists follow the cursor with the filters sent to the API, operations are polled."""

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tenantctl import api_client
from tenantctl.api_client import ApiClient, ApiError
from tenantctl.cli import app
from tenantctl.output import CliError, ExitCode


def _problem(status: int, code: str, detail: str, **extra: Any) -> httpx.Response:
    body = {"type": f"urn:tenant-service:problem:{code}", "title": code, "status": status}
    headers = {"Retry-After": "7"} if status == 429 else {}
    return httpx.Response(
        status,
        json={**body, "detail": detail, **extra},
        headers=headers,
    )


def _client(handler: Any) -> ApiClient:
    return ApiClient(
        "http://api.test", "tok", transport=httpx.MockTransport(handler), sleep=lambda _: None
    )


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (
            _problem(401, "invalid_token", "Signature has expired."),
            ExitCode.USAGE,
            ["token was refused", "TENANTCTL_TOKEN", "expired"],
        ),
        (
            _problem(403, "insufficient_scope", "needs it", required_scope="tenants:erase"),
            ExitCode.USAGE,
            ["lacks the scope tenants:erase"],
        ),
        (_problem(404, "not_found", "No tenant 'acme'."), ExitCode.NOT_FOUND, ["No tenant"]),
        (
            _problem(409, "operation_running", "A backup is running."),
            ExitCode.FAILED,
            ["conflict", "backup is running"],
        ),
        (
            _problem(429, "rate_limited", "Too many."),
            ExitCode.FAILED,
            ["rate limited", "retry after 7s"],
        ),
        (
            _problem(422, "invalid_request", "The request is malformed."),
            ExitCode.USAGE,
            ["refused (422)"],
        ),
        (httpx.Response(502, text="<html>bad gateway</html>"), ExitCode.FAILED, ["failed (502)"]),
    ],
)
def test_refusals_become_clear_errors(
    answer: httpx.Response, code: ExitCode, words: list[str]
) -> None:
    client = _client(lambda request: answer)
    with pytest.raises(ApiError) as caught:
        client.call("POST", "/v1/tenants/acme:erase", {"archive": False})
    assert caught.value.code == code and caught.value.status == answer.status_code
    for word in words:
        assert word in str(caught.value)


def test_an_unreachable_api_is_a_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ApiError) as caught:
        _client(refuse).call("GET", "/v1/tenants")
    assert caught.value.code == ExitCode.FAILED and "cannot reach" in str(caught.value)


def test_lists_send_the_filters_and_follow_the_cursor() -> None:
    seen: list[dict[str, str]] = []

    def pages(request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        seen.append(query)
        assert request.headers["Authorization"] == "Bearer tok"
        if "page_token" not in query:
            return httpx.Response(
                200, json={"tenants": [{"tenant_id": "a"}], "next_page_token": "T1"}
            )
        return httpx.Response(200, json={"tenants": [{"tenant_id": "b"}], "next_page_token": None})

    rows = list(_client(pages).pages("/v1/tenants", "tenants", status="suspended", plan="pro"))
    assert [r["tenant_id"] for r in rows] == ["a", "b"]
    assert all(q["status"] == "suspended" and q["plan"] == "pro" for q in seen)
    assert [q.get("page_token") for q in seen] == [None, "T1"]
    assert len(list(_client(pages).pages("/v1/tenants", "tenants", limit=1))) == 1


def test_wait_polls_the_operation_until_done() -> None:
    polls = iter([False, False, True])

    def operation(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/operations/abc"
        return httpx.Response(200, json={"name": "operations/abc", "done": next(polls)})

    done = _client(operation).wait({"name": "operations/abc", "done": False}, timeout=60)
    assert done["done"] is True


def _refusal(args: list[str]) -> CliError:
    # CliRunner hands back the exception that tenantctl's main() turns into a line and a code.
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, CliError), (args, result.output, result.exception)
    return result.exception


def test_commands_without_an_api_route_say_they_need_the_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(api_client.URL_VARIABLE, "http://127.0.0.1:1")
    monkeypatch.setenv(api_client.TOKEN_VARIABLE, "tok")
    for pg in ("TENANT_PG_DSN",):
        monkeypatch.delenv(pg, raising=False)
    for args in (
        ["top"],
        ["backup", "verify", "acme"],
        ["dlq", "list"],
        ["watch"],
        ["migrate", "--canary", "1"],
        ["metrics", "acme", "--collect"],
    ):
        refused = _refusal(args)
        assert refused.code == ExitCode.USAGE, (args, refused)
        assert f"tenantctl {args[0]}" in str(refused) and "needs database access" in str(refused)


def test_api_only_commands_say_they_need_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(api_client.URL_VARIABLE, raising=False)
    for args in (["events", "acme"], ["operation", "wait", "abc"]):
        refused = _refusal(args)
        assert refused.code == ExitCode.USAGE and "TENANTCTL_API_URL" in str(refused)


def test_json_bodies_are_sent_as_json() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, json={"body": json.loads(request.content)})

    assert _client(echo).command("/v1/migrations", {"max_failures": 2}) == {
        "body": {"max_failures": 2}
    }
