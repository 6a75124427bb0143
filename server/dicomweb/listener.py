"""The HTTP port: an ASGI application served by uvicorn on the server's event loop.

The socket is bound here (port 0: any free port, reported back), so a taken port fails
the start with the option's name; uvicorn's own signal handling is not used (the server
stops on its own signals, app.py), so the steps of ``uvicorn.Server.serve`` are run
one by one: start, serve until asked to stop, stop (open connections closed after
``grace`` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

from medcompute.server.errors import FailedPrecondition

__all__ = ["HttpListener"]

log = logging.getLogger(__name__)


class HttpListener:
    def __init__(self, app, address: str, port: int, *, tls_cert=None, tls_key=None,
                 grace: float = 5.0, on_stop=None):
        self.address = address
        self.wanted = port
        self.config = uvicorn.Config(
            app, host=address, port=port, lifespan="off", access_log=False, log_config=None,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            timeout_graceful_shutdown=int(max(1, grace)), server_header=False)
        self.server = uvicorn.Server(self.config)
        self.sockets: list[socket.socket] = []
        self.port = 0
        #: ``async on_stop()``, once the port is closed (the door's audit summaries).
        self.on_stop = on_stop
        self._task: asyncio.Task | None = None

    @property
    def tls(self) -> bool:
        return self.config.ssl_certfile is not None

    async def start(self) -> int:
        """Listen; the bound port."""
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.address, self.wanted))
        except OSError as exc:
            sock.close()
            raise FailedPrecondition(f"cannot listen on {self.address}:{self.wanted}: "
                                     f"{exc.strerror}", "--http-port") from None
        sock.set_inheritable(True)
        self.sockets = [sock]
        self.port = sock.getsockname()[1]
        if not self.config.loaded:
            self.config.load()              # TLS files are read here
        self.server.lifespan = self.config.lifespan_class(self.config)
        await self.server.startup(sockets=self.sockets)
        self._task = asyncio.get_running_loop().create_task(self.server.main_loop())
        return self.port

    async def stop(self) -> None:
        if self._task is None:
            for sock in self.sockets:
                sock.close()
            return
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        connections = list(self.server.server_state.connections)
        await self.server.shutdown(sockets=self.sockets)
        # A TLS connection's close waits for the peer's close_notify, which a client that
        # went away never sends: what is still open after the grace is cut.
        for connection in connections:
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await asyncio.sleep(0)
        for sock in self.sockets:
            sock.close()
        if self.on_stop is not None:
            await self.on_stop()
