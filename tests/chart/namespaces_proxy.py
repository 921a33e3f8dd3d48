"""A loopback proxy in front of the API emulator that also serves /api/v1/namespaces.

kmock 0.8 cannot parse `/api/v1/namespaces` (cluster-scoped core objects), and
kopf in namespaced mode lists and watches namespaces. This proxy answers those
two requests itself (a NamespaceList of the given names; a watch that stays open
without events, like a real one with no namespace changes) and records them;
everything else goes to the emulator unchanged, streamed (watches included).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import free_port

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class NamespacesProxy:
    def __init__(self, upstream: str, namespaces: list[str]) -> None:
        self.upstream = upstream.rstrip("/")
        self.namespaces = namespaces
        #: (user agent, verb) of each namespaces request the proxy answered itself
        self.answered: list[tuple[str, str]] = []
        self.stopping = asyncio.Event()

    async def start(self) -> str:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.stopping.set()
        await self.session.close()
        await self.runner.cleanup()

    def _closed(self, request: web.Request) -> bool:
        return self.stopping.is_set() or request.transport is None or request.transport.is_closing()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/api/v1/namespaces" and request.method == "GET":
            return await self._namespaces(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        body = await request.read()
        async with self.session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                        data=body or None) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS | {"content-encoding"}})
            await response.prepare(request)
            while True:
                try:
                    chunk = await asyncio.wait_for(upstream.content.readany(), 0.2)
                except asyncio.TimeoutError:
                    if self._closed(request):
                        break
                    continue
                if not chunk:
                    break
                try:
                    await response.write(chunk)
                except (ConnectionResetError, RuntimeError):
                    break
            return response

    async def _namespaces(self, request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch", "").lower() in ("true", "1")
        self.answered.append((request.headers.get("User-Agent", ""), "watch" if watch else "list"))
        if not watch:
            items: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": name, "uid": f"ns-{name}", "resourceVersion": "1", "labels": {"kubernetes.io/metadata.name": name}},
                "status": {"phase": "Active"}} for name in self.namespaces]
            return web.json_response({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "1"}, "items": items})
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        while not self._closed(request):
            await asyncio.sleep(0.2)
        return response
