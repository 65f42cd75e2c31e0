"""The HTTP API in its own ``tenantctl run api`` process, a dev signing key, and tokens."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from api.auth import SCOPES
from api.tokens import ensure_dev_key, mint
from tests.support.waiting import wait_until
from tests.support.workers import READY_TIMEOUT_S, WorkerProcess, free_port

ALL_SCOPES = list(SCOPES)  # the API's own list, so a new scope is granted here too


class DevKeys:
    """An Ed25519 key in ``folder`` and its JWKS; mints tokens the API accepts."""

    def __init__(self, folder: Path, audience: str) -> None:
        self.key, self.jwks_file = ensure_dev_key(folder / "api-key.pem")
        self.audience = audience

    def token(self, sub: str, scopes: list[str] | None = None) -> str:
        return mint(
            self.key,
            sub=sub,
            scopes=ALL_SCOPES if scopes is None else scopes,
            audience=self.audience,
        )

    def headers(self, sub: str, scopes: list[str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, scopes)}"}


class ApiProcess:
    """``tenantctl run api`` on a free port, ready once its own /readyz answers 200."""

    def __init__(
        self, log_path: Path, keys: DevKeys | None, env: Mapping[str, str] | None = None
    ) -> None:
        # keys None: the env names the key source (e.g. TENANT_API_JWKS_URL)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jwks = {"TENANT_API_JWKS_FILE": str(keys.jwks_file)} if keys else {}
        self.worker = WorkerProcess(
            ["api"],
            log_path,
            env={"TENANT_API_PORT": str(self.port), **jwks, **(env or {})},
        )

    async def start(self) -> None:
        await self.worker.start()

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
                    return (await client.get("/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(ready, READY_TIMEOUT_S, what="api /readyz")

    async def stop(self) -> None:
        code = await self.worker.terminate(60)
        assert code == 0, f"api exited with {code}:\n{self.worker.log_tail()}"

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, **kwargs)
