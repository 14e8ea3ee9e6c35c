"""Hostile HTTP clients for the exporter's abuse tests and ``bench/hostile_soak.py``: many keep-alive
connections sending requests back to back from one loopback address (a peer of their own), counting the
answers. Loopback only; bounded by the number of connections and by the block that runs them."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable


class Flood:
    """``connections`` keep-alive connections from ``source`` (an address of 127.0.0.0/8 other than Prometheus',
    so a peer of its own) sending ``request(n)`` back to back until the block ends; answers counted by status."""

    def __init__(self, port: int, connections: int, request: Callable[[int], bytes], source: str = "127.0.0.2") -> None:
        self.port, self.connections, self.request, self.source = port, connections, request, source
        self.statuses: collections.Counter[int] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    async def _main(self) -> None:
        await asyncio.gather(*(self._one(i) for i in range(self.connections)))

    async def _one(self, index: int) -> None:
        n = index
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(self.source, 0))
            except OSError:
                await asyncio.sleep(0.05)
                continue
            try:
                while not self._stop.is_set():
                    n += self.connections
                    writer.write(self.request(n))
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                    status = int(head.split(b" ", 2)[1])
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), None)
                    if length is None:
                        break
                    await reader.readexactly(length)
                    self.statuses[status] += 1
            except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass
            finally:
                writer.close()


