"""A strict layer in front of the API emulator: what a real API server does with custom resources and kmock does not.

kmock stores whatever it is sent. A real kube-apiserver, for objects of a CRD:

- answers 422 (Invalid) for an object that breaks the CRD's openAPIV3Schema, naming the fields;
- prunes every field of spec and status its structural schema does not declare (unless
  x-kubernetes-preserve-unknown-fields), and fills in the schema's defaults;
- stores JSON numbers as Go does: a whole-number float (2.0) comes back as 2;
- with the status subresource on: ignores status in writes to the object, and everything but
  status in writes to /status;
- sets metadata.generation to 1 on create and bumps it on every change of spec, and only then.

This proxy does each of those for the resources it is given CRD schemas for, on loopback in front
of kmock; every other request (watches included) is forwarded unchanged, so the real operator and
the real kubernetes client see a server that behaves like the real one in these respects. A write
is applied here (merge patch, RFC 7386), checked, and forwarded to kmock as the equivalent merge
patch, so kmock's watch events, and reactions tests install on kmock, still apply.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import yaml
from aiohttp import web

from tests.chart.namespaces_proxy import HOP_HEADERS, NamespacesProxy

_PATH = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)"
                   r"(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$")


def crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """The openAPIV3Schema of one served version of a CRD object."""
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


def normalised(value: Any) -> Any:
    """JSON numbers as the API server stores them: whole-number floats become integers. (Written apart from the
    operator's own reconcile.plan.canonical on purpose: this models the server, that one copes with it.)"""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: normalised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalised(item) for item in value]
    return value


def pruned(value: Any, schema: dict[str, Any]) -> Any:
    """`value` without the fields the structural `schema` does not declare, with its defaults filled in."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None:
            out = {key: pruned(item, properties[key]) for key, item in value.items() if key in properties}
            for key, sub in properties.items():
                if key not in out and "default" in sub:
                    out[key] = sub["default"]
            return out
        if isinstance(schema.get("additionalProperties"), dict):
            return {key: pruned(item, schema["additionalProperties"]) for key, item in value.items()}
        return value if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("additionalProperties") else {}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [pruned(item, schema["items"]) for item in value]
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def merge_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `old` into `new` (null for removed fields)."""
    diff: dict[str, Any] = {}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            inner = merge_diff(old[key], value)
            if inner:
                diff[key] = inner
        elif old.get(key) != value or key not in old:
            diff[key] = value
    diff.update({key: None for key in old if key not in new})
    return diff


def invalid(kind: str, name: str, errors: list[str]) -> web.Response:
    """A 422 Status, as the API server answers a schema violation."""
    message = f'{kind} "{name}" is invalid: ' + "; ".join(errors[:10])
    return web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                              "message": message, "reason": "Invalid", "code": 422}, status=422)


class StrictApiServer(NamespacesProxy):
    """kmock behind the API server's custom-resource semantics, for the resources given (plural -> CRD object)."""

    def __init__(self, upstream: str, crds: dict[str, dict[str, Any]]) -> None:
        super().__init__(upstream, [])
        self.crds = crds
        self.validators = {plural: jsonschema.Draft4Validator(crd_schema(crd, crd["spec"]["versions"][0]["name"]))
                           for plural, crd in crds.items()}
        #: (method, path, message) of every write it refused with 422
        self.refused: list[tuple[str, str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route = _PATH.match(request.path)
        if route is None or route["plural"] not in self.crds or request.method not in ("POST", "PATCH"):
            return await super().handle(request)
        return await self._write(request, route)

    async def _get(self, route: re.Match[str], headers: dict[str, str]) -> dict[str, Any] | None:
        url = f"{self.upstream}/apis/{route['group']}/{route['version']}/namespaces/{route['namespace']}/" \
              f"{route['plural']}/{route['name']}"
        async with self.session.get(url, headers=headers) as answer:
            return await answer.json() if answer.status == 200 else None

    async def _write(self, request: web.Request, route: re.Match[str]) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        sent = json.loads(await request.read() or b"{}")
        crd = self.crds[route["plural"]]
        kind = crd["spec"]["names"]["kind"]
        has_status = any("status" in (v.get("subresources") or {}) for v in crd["spec"]["versions"])
        old = None
        if request.method == "PATCH":
            if "merge-patch" not in headers.get("Content-Type", "application/merge-patch+json"):
                return web.json_response({"kind": "Status", "code": 415, "message": "only merge patches"}, status=415)
            old = await self._get(route, {"Accept": "application/json"})
            if old is None:
                return await self.handle_forward(request, headers, json.dumps(sent).encode())
            new = merge_patch(old, sent)
        else:
            new = sent
        if has_status:
            if route["sub"] == "status":
                new = {**(old or {}), "status": new.get("status")} if new.get("status") is not None else dict(old or {})
            else:
                new = {**new}
                new.pop("status", None)
                if old and "status" in old:
                    new["status"] = old["status"]
        schema = crd_schema(crd, route["version"])
        new = normalised(new)
        for part in ("spec", "status"):
            if part in new:
                new[part] = pruned(new[part], schema["properties"].get(part, {"x-kubernetes-preserve-unknown-fields": True}))
        meta = dict(new.get("metadata") or {})
        if old is None:
            meta["generation"] = 1
        else:
            before = (old.get("metadata") or {}).get("generation") or 1
            meta["generation"] = before + (1 if new.get("spec") != old.get("spec") else 0)
        new["metadata"] = meta
        errors = [f"{'.'.join(map(str, e.absolute_path)) or '<object>'}: {e.message}"
                  for e in self.validators[route["plural"]].iter_errors(new)]
        if errors:
            self.refused.append((request.method, request.path, errors[0]))
            return invalid(kind, route["name"] or meta.get("name", ""), errors)
        body = json.dumps(new if old is None else merge_diff(old, new)).encode()
        return await self.handle_forward(request, {**headers, "Content-Type": (
            "application/json" if old is None else "application/merge-patch+json")}, body)

    async def handle_forward(self, request: web.Request, headers: dict[str, str], body: bytes) -> web.Response:
        async with self.session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                        data=body) as upstream:
            return web.Response(status=upstream.status, body=await upstream.read(), headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS | {"content-encoding"}})


def load_crd(path: Any) -> dict[str, Any]:
    return yaml.safe_load(path.read_text() if hasattr(path, "read_text") else path)


__all__ = ["StrictApiServer", "load_crd", "merge_diff", "merge_patch", "normalised", "pruned"]
