"""A strict layer in front of the API emulator: what a real API server does with custom resources and kmock does not.

kmock stores whatever it is sent. A real kube-apiserver, for objects of a CRD:

- answers 422 (Invalid) for an object that breaks the CRD's openAPIV3Schema, naming the fields;
- prunes every field of spec and status its structural schema does not declare (unless
  x-kubernetes-preserve-unknown-fields), and fills in the schema's defaults;
- stores JSON numbers as Go does: a whole-number float below 1e21 (2.0) comes back as an integer (2), an
  integer beyond int64 as a float64; NaN and Infinity are refused (400), as Go's JSON decoder refuses them;
- with the status subresource on: ignores status in writes to the object, and everything but
  status in writes to /status;
- sets metadata.generation to 1 on create and bumps it on every change of spec, and only then;
- gives a created object a uid and a creationTimestamp (kept where a test set them, so it can
  name owners);
- runs mutating admission on create (the webhooks a test installs, such as Kueue's, which
  suspends every MPIJob that carries a queue-name label);
- deletes with `preconditions.uid` only the object of that uid (409 otherwise), and with
  `propagationPolicy: Foreground` keeps the object, with deletionTimestamp and the
  foregroundDeletion finalizer, until the garbage collector has removed its dependents (here: a
  short while), then removes it.

And for every resource: a list with a `labelSelector` answers only the matching objects (kmock
ignores selectors); a write whose body is over 3 MiB is answered 413 RequestEntityTooLarge (the API
server's MaxRequestBodyBytes; one over 1 MiB, which the real server takes up to its 1.5 MiB object
limit, is refused by aiohttp's own limit here, also with a 413); a create in a namespace marked terminating (:meth:`terminate`) is
answered 403 Forbidden with the cause NamespaceTerminating, as the NamespaceLifecycle admission
plugin does, and the namespace reads `status.phase: Terminating`. This proxy does each of those on loopback in front of kmock; every other
request (watches included) is forwarded unchanged, so the real operator and the real kubernetes
client see a server that behaves like the real one in these respects. A write is applied here
(merge patch, RFC 7386), checked, and forwarded to kmock as the equivalent merge patch, so kmock's
watch events, and reactions tests install on kmock, still apply.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from typing import Any, Callable

import jsonschema
import yaml
from aiohttp import web

from tests.chart.namespaces_proxy import HOP_HEADERS, NamespacesProxy

#: A custom resource path: namespaced (`.../namespaces/<ns>/<plural>/...`) or cluster-scoped (`.../<plural>/...`).
_PATH = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)"
                   r"(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$")


def crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """The openAPIV3Schema of one served version of a CRD object."""
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


#: The range of a Go int64: a JSON integer beyond it is decoded as a float64.
INT64 = 2**63 - 1
#: Go's encoding/json writes a float64 below this without an exponent (1e20 as 100000000000000000000), at or above
#: it with one (1e+21): a client reads the first as an integer, the second as a float.
GO_EXPONENT_FROM = 1e21


class BadRequest(ValueError):
    """A body the API server's JSON decoder refuses (it answers 400)."""


def _refuse_constant(name: str) -> Any:
    raise BadRequest(f"invalid character '{name[0]}' looking for beginning of value")


def _float64(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"json: cannot unmarshal number {text[:40]} into Go value of type float64")
    return value


def decoded(body: bytes) -> Any:
    """A request body as the API server's decoder reads it: bare NaN and Infinity, and numbers beyond float64, are
    refused (BadRequest), where Python's json would read them."""
    try:
        return json.loads(body or b"{}", parse_constant=_refuse_constant, parse_float=_float64)
    except BadRequest:
        raise
    except ValueError as exc:  # malformed JSON, or an integer of more digits than Python reads
        raise BadRequest(str(exc)) from None


def normalised(value: Any) -> Any:
    """JSON numbers as a client reads them back from the API server: an integer beyond int64 becomes a float64 (Go's
    decoder), refused where even that cannot hold it; a whole-number float below 1e21 comes back as an integer
    (Go's encoder writes 2.0 as 2 and 1e20 as 100000000000000000000), one from 1e21 up stays a float. (Written apart
    from the operator's own reconcile.plan.canonical on purpose: this models the server, that one copes with it.)"""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > INT64:
        try:
            value = float(value)
        except OverflowError:
            raise BadRequest("json: cannot unmarshal number into Go value of type float64") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest("json: unsupported value: NaN or Inf")
        return int(value) if value.is_integer() and abs(value) < GO_EXPONENT_FROM else value
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


#: The largest request body the API server decodes (kube-apiserver's MaxRequestBodyBytes, 3 MiB).
MAX_REQUEST_BYTES = 3 * 1024 * 1024
#: A namespaced path of any resource: its namespace and resource (plural, with the group for a custom one).
_NAMESPACED = re.compile(r"^/apis?/(?:(?P<group>[^/]+)/)?v[^/]*/namespaces/(?P<namespace>[^/]+)/(?P<resource>[^/]+)")


def too_large() -> web.Response:
    """The 413 Status the API server answers a request body over MAX_REQUEST_BYTES with."""
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": f"Request entity too large: limit is {MAX_REQUEST_BYTES}",
                              "reason": "RequestEntityTooLarge", "code": 413}, status=413)


def namespace_terminating(resource: str, name: str, namespace: str) -> web.Response:
    """The 403 Status of the NamespaceLifecycle admission plugin to a create in a namespace being deleted."""
    subject = f'{resource} "{name}"' if name else resource
    return web.json_response({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": f"{subject} is forbidden: unable to create new content in namespace {namespace} because it is "
                   "being terminated",
        "details": {"name": name, "kind": resource, "causes": [{
            "reason": "NamespaceTerminating", "type": "NamespaceTerminating",
            "message": f"namespace {namespace} is being terminated", "field": "metadata.namespace"}]},
    }, status=403)


def bad_request(message: str) -> web.Response:
    """A 400 Status, as the API server answers a body its JSON decoder refuses."""
    return web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                              "message": message, "reason": "BadRequest", "code": 400}, status=400)


#: A mutating admission webhook: (resource plural, the object being created) -> the object to store.
Admission = Callable[[str, dict[str, Any]], dict[str, Any]]
#: How long the garbage collector takes to remove a foreground-deleted object's dependents here.
FOREGROUND_SECONDS = 0.3


def selected(labels: dict[str, str], selector: str) -> bool:
    """Whether `labels` match a label selector of equality terms (`a=b`, `a==b`, `a!=b`, `a`, `!a`), as the API
    server reads the labelSelector parameter."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class StrictApiServer(NamespacesProxy):
    """kmock behind the API server's custom-resource semantics, for the resources given (plural -> CRD object)."""

    def __init__(self, upstream: str, crds: dict[str, dict[str, Any]], admission: list[Admission] | None = None,
                 namespaces: dict[str, dict[str, str]] | None = None,
                 builtins: dict[tuple[str, str], Callable[[dict[str, Any]], list[str]]] | None = None) -> None:
        super().__init__(upstream, namespaces or {})
        self.crds = crds
        #: Built-in kinds whose creates are checked, by (group, plural): their schema check (Kubernetes' own, strict:
        #: tests/schemas.py), answering 422 naming the field as the API server's validation does.
        self.builtins = dict(builtins or {})
        self.admission = list(admission or [])
        self.validators = {plural: jsonschema.Draft4Validator(crd_schema(crd, crd["spec"]["versions"][0]["name"]))
                           for plural, crd in crds.items()}
        #: (method, path, message) of every write it refused with 422
        self.refused: list[tuple[str, str, str]] = []
        #: (user agent, object name, propagationPolicy) of every delete of a custom resource it answered
        self.deletes: list[tuple[str, str, str | None]] = []
        #: Namespaces being deleted (:meth:`terminate`): creates in them are refused.
        self.terminating: set[str] = set()

    def terminate(self, namespace: str) -> None:
        """Mark a namespace as being deleted (its finalizers not done yet): it reads Terminating, creates get 403."""
        self.terminating.add(namespace)

    def _namespace(self, name: str) -> dict[str, Any]:
        namespace = super()._namespace(name)
        if name in self.terminating:
            namespace["metadata"]["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            namespace["status"] = {"phase": "Terminating"}
        return namespace

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method in ("POST", "PUT", "PATCH"):
            refused = await self._refused_write(request)
            if refused is not None:
                return refused
        if request.method == "GET" and "labelSelector" in request.query and request.query.get("watch") not in ("true", "1"):
            return await self._selected_list(request)
        route = _PATH.match(request.path)
        if route is not None and route["plural"] in self.crds and request.method == "DELETE" and route["name"]:
            return await self._delete(request, route)
        if (route is not None and (route["group"], route["plural"]) in self.builtins and request.method == "POST"
                and not route["name"]):
            return await self._create_builtin(request, route)
        if route is None or route["plural"] not in self.crds or request.method not in ("POST", "PATCH"):
            return await super().handle(request)
        return await self._write(request, route)

    async def _refused_write(self, request: web.Request) -> web.Response | None:
        """What the API server answers before it looks at a write at all: a body over its limit (413), a create in a
        namespace being deleted (403 NamespaceTerminating)."""
        if (request.content_length or 0) > MAX_REQUEST_BYTES:  # (the client always sends Content-Length)
            return too_large()
        where = _NAMESPACED.match(request.path)
        if request.method != "POST" or where is None or where["namespace"] not in self.terminating:
            return None
        resource = where["resource"] if not where["group"] else f"{where['resource']}.{where['group']}"
        try:
            name = str((json.loads(await request.read() or b"{}").get("metadata") or {}).get("name") or "")
        except ValueError:
            name = ""
        return namespace_terminating(resource, name, where["namespace"])

    async def _selected_list(self, request: web.Request) -> web.StreamResponse:
        query = {k: v for k, v in request.query.items() if k != "labelSelector"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self.session.get(self.upstream + request.path, params=query, headers=headers) as upstream:
            if upstream.status != 200:
                return web.Response(status=upstream.status, body=await upstream.read(),
                                    content_type=upstream.content_type)
            answer = await upstream.json()
        selector = request.query["labelSelector"]
        answer["items"] = [item for item in answer.get("items") or []
                           if selected((item.get("metadata") or {}).get("labels") or {}, selector)]
        return web.json_response(answer)

    async def _delete(self, request: web.Request, route: re.Match[str]) -> web.StreamResponse:
        options = json.loads(await request.read() or b"{}")
        self.deletes.append((request.headers.get("User-Agent", ""), route["name"], options.get("propagationPolicy")))
        old = await self._get(route, {"Accept": "application/json"})
        if old is None:
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                      "code": 404, "message": f'{route["plural"]} "{route["name"]}" not found'}, status=404)
        want = (options.get("preconditions") or {}).get("uid")
        have = (old.get("metadata") or {}).get("uid")
        if want and want != have:
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                                      "code": 409, "message": f"Precondition failed: UID in precondition: {want}, "
                                                              f"UID in object meta: {have}"}, status=409)
        url = f"{self.upstream}{request.path}"
        if options.get("propagationPolicy") != "Foreground":
            async with self.session.delete(url) as upstream:
                return web.Response(status=upstream.status, body=await upstream.read(), content_type="application/json")
        if (old.get("metadata") or {}).get("deletionTimestamp"):
            return web.json_response(old)
        marked = {"metadata": {"deletionTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "finalizers": ["foregroundDeletion"]}}
        async with self.session.patch(url, json=marked, headers={"Content-Type": "application/merge-patch+json"}) as upstream:
            answer = await upstream.json()

        async def collect() -> None:
            """The garbage collector, done with the dependents: drops its finalizer, and the object goes."""
            await asyncio.sleep(FOREGROUND_SECONDS)
            async with self.session.patch(url, json={"metadata": {"finalizers": None}},
                                          headers={"Content-Type": "application/merge-patch+json"}):
                pass
            async with self.session.delete(url):
                pass

        asyncio.get_running_loop().create_task(collect())
        return web.json_response(answer)

    async def _get(self, route: re.Match[str], headers: dict[str, str]) -> dict[str, Any] | None:
        scope = f"namespaces/{route['namespace']}/" if route["namespace"] else ""
        url = f"{self.upstream}/apis/{route['group']}/{route['version']}/{scope}{route['plural']}/{route['name']}"
        async with self.session.get(url, headers=headers) as answer:
            return await answer.json() if answer.status == 200 else None

    async def _write(self, request: web.Request, route: re.Match[str]) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            sent = decoded(await request.read())
        except BadRequest as exc:
            return bad_request(str(exc))
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
        try:
            new = normalised(new)
        except BadRequest as exc:
            return bad_request(str(exc))
        for part in ("spec", "status"):
            if part in new:
                new[part] = pruned(new[part], schema["properties"].get(part, {"x-kubernetes-preserve-unknown-fields": True}))
        meta = dict(new.get("metadata") or {})
        if old is None:
            for admit in self.admission:
                new = admit(route["plural"], new)
                meta = dict(new.get("metadata") or {})
            meta["generation"] = 1
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
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

    async def _create_builtin(self, request: web.Request, route: re.Match[str]) -> web.StreamResponse:
        """A create of a built-in kind: its schema checked (422 naming the field), a uid and a creationTimestamp given,
        as the API server gives every object."""
        try:
            sent = decoded(await request.read())
        except BadRequest as exc:
            return bad_request(str(exc))
        meta = dict(sent.get("metadata") or {})
        errors = self.builtins[(route["group"], route["plural"])](sent)
        if errors:
            self.refused.append((request.method, request.path, errors[0]))
            return invalid(str(sent.get("kind") or route["plural"]), str(meta.get("name") or ""), errors)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        return await self.handle_forward(request, headers, json.dumps({**sent, "metadata": meta}).encode())

    async def handle_forward(self, request: web.Request, headers: dict[str, str], body: bytes) -> web.Response:
        async with self.session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                        data=body) as upstream:
            return web.Response(status=upstream.status, body=await upstream.read(), headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS | {"content-encoding"}})


def load_crd(path: Any) -> dict[str, Any]:
    return yaml.safe_load(path.read_text() if hasattr(path, "read_text") else path)


__all__ = ["BadRequest", "MAX_REQUEST_BYTES", "StrictApiServer", "decoded", "load_crd", "merge_diff", "merge_patch",
           "namespace_terminating", "normalised", "pruned", "too_large"]
