"""A TCP gate in front of a real server: connection refused while closed, forwarded while open.

Simulates a dependency that is down and comes back (Kafka's bootstrap, an S3 endpoint) without
touching the shared server itself. ``cut_silently()`` instead simulates a network that swallows
packets: nothing is forwarded any more and nothing is closed (no FIN, no RST), so neither end
learns from TCP that the other is gone.
"""

import asyncio


class TcpGate:
    def __init__(self, port: int, upstream: tuple[str, int]) -> None:
        self.port, self._upstream = port, upstream
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._silent = False
        self._held: list[asyncio.StreamWriter] = []  # sockets kept open, unread, once cut

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        self._silent = False  # cancelled pipes close their sockets again
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._pipes):
            task.cancel()
        for writer in self._held:
            writer.close()
        self._held.clear()

    async def cut_silently(self) -> None:
        """Stop forwarding in both directions, keeping every socket open; new connections are
        accepted and never answered. Undone only by close()."""
        self._silent = True
        for task in list(self._pipes):
            task.cancel()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._silent:
            self._held.append(writer)
            return
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if self._silent:
                self._held.append(dst)
            else:
                dst.close()
