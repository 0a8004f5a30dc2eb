"""A TCP forwarder that tests put between a client and a server to break the link on purpose.

Runs an asyncio loop in a daemon thread; every method is called from the test's thread and
returns once the loop has applied it, so a test can act on the new state immediately:

* :meth:`pause` stops forwarding in both directions but keeps every socket open: a half-open
  link, as behind a dead router. The peers see silence, not an error. New connections are
  accepted and held (nothing reaches the server) until :meth:`resume`.
* :meth:`cut` closes every current connection (reset, as when a firewall kills the session);
  with ``refuse=True`` every new connection is reset at once until :meth:`resume`, like a
  server that went away. Without it new connections are forwarded as usual.
* :meth:`resume` forwards again and stops refusing. Data held during a pause is delivered.

Buffers are bounded: each direction reads at most ``chunk_bytes`` at a time and waits for the
other side to drain before reading on, so a paused or slow peer pushes back through TCP flow
control instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["TcpProxy"]

_T = TypeVar("_T")
_CALL_TIMEOUT_S = 10.0
_LINGER_RESET = struct.pack("ii", 1, 0)  # l_onoff=1, l_linger=0: close() sends RST


class TcpProxy:
    """Forward ``127.0.0.1:port`` (``port`` 0: a free one) to ``target_host:target_port``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        port: int = 0,
        chunk_bytes: int = 65_536,
    ) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self._requested_port = port
        self._chunk = chunk_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._port = 0
        # Loop state (touched only on the loop's thread):
        self._forwarding: asyncio.Event | None = None
        self._refusing = False
        self._writers: set[asyncio.StreamWriter] = set()  # both sides of every connection
        self._clients: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connections_total = 0  # accepted client connections, refused ones included

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("proxy not started")
        return self._port

    def start(self) -> TcpProxy:
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._call(self._start_server)
        return self

    def stop(self) -> None:
        """Close the listener and every connection, end the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            self._call(self._shutdown)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CALL_TIMEOUT_S)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop forwarding, keep every socket open (half-open link)."""
        self._call(self._set_forwarding, False)

    def cut(self, *, refuse: bool = False) -> None:
        """Reset every current connection; with ``refuse``, reset new ones until resume()."""
        self._call(self._cut, refuse)

    def resume(self) -> None:
        """Forward again (held data flows) and accept new connections normally."""
        self._call(self._resume)

    @property
    def active_connections(self) -> int:
        """Open client connections (each has a server side once forwarding)."""
        return self._call(self._count_clients)

    # -- loop side -----------------------------------------------------------------------------

    def _call(self, func: Callable[..., Coroutine[Any, Any, _T]], *args: object) -> _T:
        if self._loop is None:
            raise RuntimeError("proxy not started")
        future = asyncio.run_coroutine_threadsafe(func(*args), self._loop)
        return future.result(_CALL_TIMEOUT_S)

    async def _start_server(self) -> None:
        self._forwarding = asyncio.Event()
        self._forwarding.set()
        self._server = await asyncio.start_server(
            self._handle, self.listen_host, self._requested_port, limit=self._chunk
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut(False)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _set_forwarding(self, on: bool) -> None:
        assert self._forwarding is not None
        if on:
            self._forwarding.set()
        else:
            self._forwarding.clear()

    async def _cut(self, refuse: bool) -> None:
        self._refusing = refuse
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _resume(self) -> None:
        self._refusing = False
        await self._set_forwarding(True)

    async def _count_clients(self) -> int:
        return len(self._clients)

    async def _handle(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        assert self._forwarding is not None
        self._tasks.add(task)
        self.connections_total += 1
        self._writers.add(client)
        self._clients.add(client)
        server: asyncio.StreamWriter | None = None
        try:
            if self._refusing:
                _reset(client)
                return
            await self._forwarding.wait()  # paused: hold the new client, connect nothing
            if client not in self._writers:  # cut while held
                return
            try:
                server_reader, server = await asyncio.open_connection(
                    *self.target, limit=self._chunk
                )
            except OSError:
                _reset(client)
                return
            self._writers.add(server)
            await asyncio.gather(
                self._pump(client_reader, server), self._pump(server_reader, client)
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for writer in (client, server):
                if writer is not None:
                    self._writers.discard(writer)
                    _reset(writer)
            self._clients.discard(client)
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction until EOF or error; then close both sides."""
        assert self._forwarding is not None
        try:
            while True:
                data = await reader.read(self._chunk)
                if not data or writer not in self._writers:
                    break
                await self._forwarding.wait()  # paused: hold this one chunk, read no further
                if writer not in self._writers:
                    break
                writer.write(data)
                await writer.drain()  # bounded: wait for the peer before reading more
        except OSError:
            pass
        finally:
            # One side ended: end the connection as a whole, like a real peer would see it.
            _reset(writer)
            self._writers.discard(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close at once with RST (SO_LINGER 0), dropping unsent data, like a killed link."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()
