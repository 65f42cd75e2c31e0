"""The API's keys from the issuer's JWKS URL, served over real HTTP on a loopback port: not
ready until the issuer answers, a rotated key accepted, an unknown kid refused as problem+json,
and a flood of unknown kids costing the issuer far fewer fetches than tokens."""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web

from api.tokens import ensure_dev_key
from runtime.settings import Settings
from tests.support.api import ALL_SCOPES, ApiProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack


class Issuer:
    """A JWKS endpoint on 127.0.0.1: answers 503 while ``down``, counts the fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.down, self.fetches = True, 0
        self.url = ""

    async def jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.down:
            return web.Response(status=503, text="issuer down")
        return web.json_response({"keys": self.keys})


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    served = Issuer()
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", served.jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    served.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    yield served
    await runner.cleanup()


def _signer(folder: Path, kid: str) -> tuple[Any, dict[str, Any]]:
    key, jwks_file = ensure_dev_key(folder / f"{kid}.pem")
    jwk = json.loads(jwks_file.read_text())["keys"][0] | {"kid": kid}
    return key, jwk


def _token(key: Any, kid: str, audience: str) -> str:
    claims = {"sub": "rotating", "scope": " ".join(ALL_SCOPES), "aud": audience}
    claims |= {"exp": 4_000_000_000}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


async def test_keys_from_a_jwks_url_rotate_and_unknown_kids_are_refused(
    issuer: Issuer, settings: Settings, tmp_path: Path, log_dir: Path, session_worker: object
) -> None:
    first, first_jwk = _signer(tmp_path, "first")
    second, second_jwk = _signer(tmp_path, "second")
    api = ApiProcess(
        log_dir / "api-jwks-url.log",
        None,
        env={
            "TENANT_API_JWKS_URL": issuer.url,
            "TENANT_API_JWKS_ALLOW_HTTP_LOOPBACK": "true",
            "TENANT_API_JWKS_TTL_S": "3600",  # only a rotation (an unknown kid) refetches
            "TENANT_API_JWKS_MIN_REFRESH_S": "1",
        },
    )
    await api.worker.start()  # the worker, not the API's /readyz: the issuer is down
    try:
        async with api.client() as client:

            def bearer(key: Any, kid: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {_token(key, kid, settings.api_jwt_audience)}"}

            # The issuer is down at start: the API serves, is not ready, and refuses tokens.
            assert (await client.get("/healthz")).status_code == 200
            readyz = await client.get("/readyz")
            assert readyz.status_code == 503 and readyz.json()["checks"]["jwks"] != "ok"
            refused = await client.get("/v1/tenants", headers=bearer(first, "first"))
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"

            issuer.keys, issuer.down = [first_jwk], False

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await wait_until(ready, 30, what="api ready once the issuer answers")
            ok = await client.get("/v1/tenants", headers=bearer(first, "first"))
            assert ok.status_code == 200, ok.text

            # Rotation: the issuer now publishes the second key only.
            issuer.keys = [second_jwk]

            async def rotated() -> bool:
                answer = await client.get("/v1/tenants", headers=bearer(second, "second"))
                return answer.status_code == 200

            await wait_until(rotated, 30, what="a token of the rotated key accepted")
            gone = await client.get("/v1/tenants", headers=bearer(first, "first"))
            assert gone.status_code == 401 and "first" in gone.json()["detail"]

            # Unknown kids: each refused as problem+json; the issuer is not asked per token.
            before = issuer.fetches
            flood = 30
            for n in range(flood):
                answer = await client.get("/v1/tenants", headers=bearer(second, f"bogus-{n}"))
                assert answer.status_code == 401
                assert answer.headers["content-type"] == "application/problem+json"
                assert answer.json()["type"].endswith("invalid_token")
            assert issuer.fetches - before < flood / 2, issuer.fetches - before
    finally:
        await api.stop()
