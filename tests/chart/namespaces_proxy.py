"""A loopback proxy in front of the API emulator that also serves /api/v1/namespaces.

kmock 0.8 cannot parse `/api/v1/namespaces` (cluster-scoped core objects), and
kopf lists and watches namespaces (in namespaced mode to follow them, and for the
operator's own namespace watch: policies select namespaces by label). This proxy
answers those requests itself (a NamespaceList of the given names with their
labels; a watch that stays open without events, like a real one with no namespace
changes; a GET of one) and records them; everything else goes to the emulator
unchanged, streamed (watches included).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import free_port

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class NamespacesProxy:
    def __init__(self, upstream: str, namespaces: list[str] | dict[str, dict[str, str]]) -> None:
        self.upstream = upstream.rstrip("/")
        #: Namespace name -> its labels (a list of names: no labels but the name label every namespace has).
        self.namespaces = dict(namespaces) if isinstance(namespaces, dict) else {name: {} for name in namespaces}
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

    def _namespace(self, name: str) -> dict[str, Any]:
        labels = {"kubernetes.io/metadata.name": name, **self.namespaces[name]}
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": name, "uid": f"ns-{name}", "resourceVersion": "1", "labels": labels}, "status": {"phase": "Active"}}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/api/v1/namespaces" and request.method == "GET":
            return await self._namespaces(request)
        if request.path.startswith("/api/v1/namespaces/") and request.path.count("/") == 4 and request.method == "GET":
            name = request.path.rsplit("/", 1)[1]
            self.answered.append((request.headers.get("User-Agent", ""), "get"))
            if name not in self.namespaces:
                return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                          "code": 404, "message": f'namespaces "{name}" not found'}, status=404)
            return web.json_response(self._namespace(name))
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
            items: list[dict[str, Any]] = [self._namespace(name) for name in self.namespaces]
            return web.json_response({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "1"}, "items": items})
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        while not self._closed(request):
            await asyncio.sleep(0.2)
        return response
