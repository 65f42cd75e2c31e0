"""/metrics, /healthz and /readyz on a tiny asyncio HTTP server (no framework needed for three
GET routes; the event loop is never blocked by it)."""

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from runtime import metrics

log = structlog.get_logger(__name__)

Probe = Callable[[], Awaitable[None]]


class HealthServer:
    def __init__(self, host: str, port: int, probes: Mapping[str, Probe], timeout_s: float = 2.0):
        self._host, self._port = host, port
        self._probes = probes
        self._timeout = timeout_s
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("http_listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def readiness(self) -> dict[str, str]:
        async def check(name: str, probe: Probe) -> tuple[str, str]:
            try:
                await asyncio.wait_for(probe(), self._timeout)
                metrics.DEPENDENCY_UP.labels(name).set(1)
                return name, "ok"
            except Exception as e:
                metrics.DEPENDENCY_UP.labels(name).set(0)
                detail = str(e) if isinstance(e, RuntimeError) else type(e).__name__
                return name, f"error: {detail}"

        results = await asyncio.gather(*(check(n, p) for n, p in self._probes.items()))
        return dict(results)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers are not needed
            parts = request_line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            status, ctype, body = await self._route(path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _route(self, path: str) -> tuple[str, str, bytes]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            checks = await self.readiness()
            ok = all(v == "ok" for v in checks.values())
            body = json.dumps({"status": "ok" if ok else "unavailable", "checks": checks})
            return (
                ("200 OK" if ok else "503 Service Unavailable"),
                "application/json",
                body.encode(),
            )
        return "404 Not Found", "text/plain", b"not found"
