"""HTTP servers a hostile client cannot hold open: the progress endpoint and the admission webhook.

Both face clients the operator does not control (any pod can reach the progress port). aiohttp's defaults keep a
connection that never completes its request for an hour (its keep-alive timeout, 3630 s, is also what ends a
request whose headers never end) and accept connections until the process runs out of file descriptors: a
slow-loris client holding a few thousand such connections made a legitimate report time out. Here a server

- closes a connection that has not sent a whole request head within `read_timeout` seconds of connecting (or of
  its last answer), and a TLS handshake not done by then;
- gives a handler the same time to read a body (progress.read_body; kopf reads the webhook's body itself, so the
  webhook's body read is bounded in WebhookServer._serve);
- holds at most `max_connections` connections: one more is closed as soon as it is accepted, so the process keeps
  its file descriptors and a client retries later.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """How long a client may take to send a request, and how many connections a server holds at once."""

    read_timeout: float = 10.0
    max_connections: int = 256


class _Refused(asyncio.Protocol):
    """A connection beyond the cap: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class CappedSite(web.TCPSite):
    """A TCPSite that holds at most `limits.max_connections` connections and bounds TLS handshakes by
    `limits.read_timeout` (aiohttp's own site takes neither)."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int, *, limits: Limits,
                 ssl_context: ssl.SSLContext | None = None, reuse_port: bool | None = None) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port,
                         reuse_address=True if reuse_port else None)
        self.limits = limits
        self.refused = 0

    def _protocol(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None
        if len(server.connections) >= self.limits.max_connections:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning("connection refused port=%s open=%d cap=%d refused=%d", self.port,
                            len(server.connections), self.limits.max_connections, self.refused)
            return _Refused()
        return server()

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner, as TCPSite.start does
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port,
            ssl_handshake_timeout=self.limits.read_timeout if self._ssl_context else None,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]


async def serve(app: web.Application, host: str | None, port: int, limits: Limits,
                ssl_context: ssl.SSLContext | None = None, reuse_port: bool | None = None) -> tuple[web.AppRunner, CappedSite]:
    """Serve `app` on host:port within `limits`; the runner (to clean up) and the site (its bound port)."""
    # keepalive_timeout is aiohttp's idle timer: it runs from the connection (or the last answer) until a whole
    # request head arrived, so it is the read timeout for headers as well as the idle timeout between requests.
    # lingering_time bounds how long a body left unread (a 408, a 413) is drained before the connection closes.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=limits.read_timeout,
                           lingering_time=limits.read_timeout)
    await runner.setup()
    site = CappedSite(runner, host, port, limits=limits, ssl_context=ssl_context, reuse_port=reuse_port)
    await site.start()
    return runner, site
