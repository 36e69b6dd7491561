"""A Kubernetes API server of the project's own, for the tests: HTTP on 127.0.0.1, spoken to by the
unmodified official client (and kubectl).

It serves discovery (/version, /api, /apis and the resource lists), Namespaces, ConfigMaps, Secrets,
Services, Deployments (with /scale and /status), Jobs and CronJobs (stored, not run), Pods (read-only, as
Deployments imply them, with /log): get, list with label
selectors (also across namespaces), create, replace with resourceVersion checks (409 when stale), delete, JSON
patch, merge patch, strategic merge patch and server-side apply (managedFields, conflicts, force), dryRun=All on
every write, defaulting, and 422 for invalid objects. The objects and what the server does with them
live in kube_store.py, whose docstring lists what it does not do.

Every request is recorded in `peer.store.calls` as (verb, path?query), so tests and benchmarks count
API calls: "LIST", "GET", "CREATE", "UPDATE", "PATCH", "APPLY", "DELETE", each with " dry" when dryRun.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ruamel.yaml import YAML

from tests.peers import kube_fields as kf
from tests.peers import kube_openapi, kube_schema
from tests.peers.jsonhttp import Server, send_json
from tests.peers.kube_store import BY_PLURAL, GROUP_VERSIONS, KINDS, ApiError, Kind, Store, _public

VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-recon-peer", "platform": "linux/amd64"}


# the short names a real API server's discovery gives (kubectl logs deploy/NAME resolves them)
SHORT = {"namespaces": "ns", "configmaps": "cm", "services": "svc", "deployments": "deploy", "cronjobs": "cj",
         "pods": "po", "replicasets": "rs"}
_PREFIXES = [(gv, "/api/v1" if gv == "v1" else f"/apis/{gv}") for gv in GROUP_VERSIONS]


def _discovery(path: str) -> dict[str, Any] | None:
    path = path.rstrip("/") or "/"
    if path == "/version":
        return VERSION
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
    if path == "/apis":
        groups = []
        for gv in GROUP_VERSIONS:
            if "/" in gv:
                version = {"groupVersion": gv, "version": gv.split("/")[1]}
                groups.append({"name": gv.split("/")[0], "versions": [version], "preferredVersion": version})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    for gv, prefix in _PREFIXES:
        if path == prefix:
            resources = []
            for k in KINDS:
                if k.group_version != gv:
                    continue
                verbs = ["create", "delete", "get", "list", "patch", "update"]
                resources.append({"name": k.plural, "singularName": k.kind.lower(), "namespaced": k.namespaced,
                                  "kind": k.kind, "verbs": verbs if k.kind != "Pod" else ["get", "list"],
                                  **({"shortNames": [SHORT[k.plural]]} if k.plural in SHORT else {})})
                for sub in k.subresources:
                    kind = "Scale" if sub == "scale" else k.kind
                    resources.append({"name": f"{k.plural}/{sub}", "singularName": "", "namespaced": k.namespaced,
                                      "kind": kind, "verbs": ["get", "patch", "update"],
                                      **({"group": "autoscaling", "version": "v1"} if sub == "scale" else {})})
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
    return None


def _matches_url(kind: Kind, body: Any, apply: bool) -> None:
    """A body's apiVersion and kind must be those of the URL it is sent to, as a real API server checks them
    (k8s.io/apimachinery's decoding: 400 BadRequest). A create may leave them out (the URL's are taken); an apply
    configuration must name them."""
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body is not an object")
    if not apply and not body.get("kind") and not body.get("apiVersion"):
        return
    if not body.get("kind"):
        raise ApiError(400, "BadRequest", f"Object 'Kind' is missing in '{json.dumps(body)[:200]}'")
    if body.get("apiVersion") != kind.group_version:
        raise ApiError(400, "BadRequest", f"the API version in the data ({body.get('apiVersion')}) does not match "
                       f"the expected API version ({kind.group_version})")
    if body["kind"] != kind.kind:
        raise ApiError(400, "BadRequest", f"the kind in the data ({body['kind']}) does not match the expected kind "
                       f"({kind.kind})")


def _route(path: str) -> tuple[Kind, str | None, str, str]:
    """(kind, namespace or None for every namespace, name, subresource) of a resource path."""
    for gv, prefix in _PREFIXES:
        prefix += "/"
        if path.startswith(prefix):
            parts = path[len(prefix):].strip("/").split("/")
            if parts[0] == "namespaces" and len(parts) >= 3:
                ns, parts = parts[1], parts[2:]
            elif parts[0] == "namespaces":
                return BY_PLURAL["v1", "namespaces"], "", parts[1] if len(parts) > 1 else "", ""
            else:
                ns = None
            kind = BY_PLURAL.get((gv, parts[0]))
            if kind is not None and len(parts) <= 3:
                sub = parts[2] if len(parts) == 3 else ""
                if sub and sub not in kind.subresources:
                    break
                return kind, ns, parts[1] if len(parts) > 1 else "", sub
    raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")


def pod_table(pods: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """Pods as the API server prints them for kubectl (a meta.k8s.io/v1 Table): NAME, READY, STATUS (a waiting
    container's reason, else the phase), RESTARTS and AGE, each row with the pod's metadata."""
    columns = [("Name", "name"), ("Ready", ""), ("Status", ""), ("Restarts", ""), ("Age", "")]
    rows = []
    for p in pods:
        statuses = p["status"].get("containerStatuses") or []
        waiting = next((c["state"]["waiting"].get("reason", "") for c in statuses if "waiting" in c.get("state", {})),
                       "")
        rows.append({"cells": [p["metadata"]["name"], f"{sum(c['ready'] for c in statuses)}/{len(statuses)}",
                               waiting or p["status"]["phase"], sum(c.get("restartCount", 0) for c in statuses),
                               _age(p["metadata"]["creationTimestamp"])],
                     "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                "metadata": p["metadata"]}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": version},
            "columnDefinitions": [{"name": n, "type": "integer" if n == "Restarts" else "string", "format": f,
                                   "description": n, "priority": 0} for n, f in columns],
            "rows": rows}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each answer waits 40 ms for the client's delayed ACK
    store: Store

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, code: int, body: dict[str, Any]) -> None:
        warnings, self.warnings = getattr(self, "warnings", []), []
        # RFC 7234's warn-text is a quoted string: its own quotes escaped, as the API server writes them
        send_json(self, code, body, headers=[("Warning", '299 - "' + w.replace('"', '\\"') + '"') for w in warnings])

    def _checked(self, kind: Kind, body: Any, query: dict[str, str], apply: bool) -> Any:
        """Fields the schema does not declare, as fieldValidation says (Strict: 400 naming them; Warn, the
        default: a Warning header each; Ignore: nothing), and in every case dropped, as a real server's decoder
        drops them (https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation)."""
        if not isinstance(body, dict):
            return body
        unknown = kube_schema.unknown_fields({k: v for k, v in body.items() if k != "status"}, (kind.kind,))
        if not unknown:
            return body
        mode = query.get("fieldValidation", "Warn")
        if mode not in ("Strict", "Warn", "Ignore"):
            raise ApiError(400, "BadRequest", f'fieldValidation: Unsupported value: "{mode}": supported values: '
                           '"Ignore", "Strict", "Warn"')
        said = [f"{u}: field not declared in schema" if apply else f'unknown field "{u.lstrip(".")}"'
                for u in unknown]
        if mode == "Strict":
            causes = [{"reason": "FieldValueInvalid", "message": m, "field": u} for m, u in zip(said, unknown,
                                                                                              strict=True)]
            raise ApiError(400, "BadRequest", ("" if apply else "strict decoding error: ") + ", ".join(said), causes,
                           kind.kind, (body.get("metadata") or {}).get("name", ""))
        if mode == "Warn":
            self.warnings = [*getattr(self, "warnings", []), *said]
        return kube_schema.pruned(body, (kind.kind,))

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        raw = self._body()
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if method == "GET" and url.path.startswith("/openapi/"):
                self._openapi(url.path)
                return
            found = _discovery(url.path) if method == "GET" else None
            if found is not None:
                self.store.calls.append(("DISCOVERY", self.path))
                self._send(200, found)
                return
            kind, ns, name, sub = _route(url.path)
            if method == "GET" and not name and query.get("watch") in ("true", "1"):
                self._watch(kind, ns, query)
                return
            if kind.kind == "Pod":
                self._pods(method, ns, name, sub, query, url.path)
                return
            code, body = self._serve(method, kind, ns, name, sub, query, raw, url.path)
            self._send(code, _public(body) if body.get("kind") != kind.kind + "List" else
                       {**body, "items": [_public(i) for i in body["items"]]})
        except ApiError as exc:
            self._send(exc.code, exc.status())
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, ApiError(400, "BadRequest", f"the request is malformed: {exc}").status())

    def _watch(self, kind: Kind, ns: str | None, query: dict[str, str]) -> None:
        """A watch: a chunked stream of {"type": ADDED|MODIFIED|DELETED, "object": …} lines, one per change of an
        object the selectors match, from the resourceVersion asked for (none, or "0": every object ADDED first),
        until timeoutSeconds (kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes).
        Changes are found by comparing the store with what was sent, every 50 ms."""
        self.store.calls.append(("WATCH", self.path))
        since = int(query.get("resourceVersion") or 0)
        stop = time.monotonic() + min(float(query.get("timeoutSeconds") or 1800), 1800)

        def now() -> dict[str, dict[str, Any]]:
            with self.store.lock:
                items = self.store.list(kind, ns, query.get("labelSelector", ""), query.get("fieldSelector", ""))
            return {f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}": _public(i)
                    for i in items["items"]}

        def version(o: dict[str, Any]) -> str:
            return str(o["metadata"]["resourceVersion"])

        # from a version: what changed since is MODIFIED (the client listed it before); from none: all ADDED
        seen = {k: o if int(version(o)) <= since else {"metadata": {"resourceVersion": ""}}
                for k, o in now().items()} if since else {}
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            while time.monotonic() < stop and not self._gone():
                current = now()
                events = [("DELETED", o) for k, o in seen.items() if k not in current]
                events += [("ADDED" if k not in seen else "MODIFIED", o) for k, o in current.items()
                           if k not in seen or version(seen[k]) != version(o)]
                for kind_of, obj in events:
                    line = json.dumps({"type": kind_of, "object": obj}).encode() + b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
                seen = current
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped watching
        self.close_connection = True

    def _gone(self) -> bool:
        """The client closed its end (a watch it no longer reads), or the server is stopping."""
        if getattr(self.server, "stopping", False):
            return True
        readable, _, _ = select.select([self.connection], [], [], 0)
        try:
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True

    def _openapi(self, path: str) -> None:
        """/openapi/v3 (an index of group-versions) and each group-version's document; /openapi/v2 as JSON (a real
        server also answers it in protobuf, which this one refuses with 406, as it would an Accept it lacks)."""
        self.store.calls.append(("OPENAPI", path))
        path = path.rstrip("/")
        if path == "/openapi/v3":
            self._send(200, kube_openapi.v3_index())
            return
        if path == "/openapi/v2":
            if "protobuf" in (self.headers.get("Accept") or "") and "json" not in (self.headers.get("Accept") or ""):
                raise ApiError(406, "NotAcceptable", "only application/json is served here")
            text = kube_openapi.v2()
        else:
            gv = path.removeprefix("/openapi/v3/api/").removeprefix("/openapi/v3/apis/")
            if gv not in GROUP_VERSIONS:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            text = kube_openapi.v3_group(gv)
        raw = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _pods(self, method: str, ns: str | None, name: str, sub: str, query: dict[str, str], path: str) -> None:
        """Pods are read-only here (Store.pods): list, get, and a pod's log as text/plain."""
        if method != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{method} on pods: the test server's pods are read-only")
        self.store.calls.append(("LOG" if sub else "GET" if name else "LIST", path + (f"?{query}" if query else "")))
        if sub == "log":
            assert ns is not None
            tail = int(query["tailLines"]) if "tailLines" in query else None
            text = self.store.log(ns, name, tail).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        pods = self.store.pods(ns, query.get("labelSelector", ""))
        if name:
            found = next((p for p in pods if p["metadata"]["name"] == name), None)
            if found is None:
                raise ApiError(404, "NotFound", f'pods "{name}" not found', kind="Pod", name=name)
            self._send(200, found)
            return
        if "as=Table" in (self.headers.get("Accept") or ""):  # what `kubectl get pods` asks for, and prints
            self._send(200, pod_table(pods, str(self.store.version)))
            return
        self._send(200, {"kind": "PodList", "apiVersion": "v1",
                         "metadata": {"resourceVersion": str(self.store.version)}, "items": pods})

    def _serve(self, method: str, kind: Kind, ns: str | None, name: str, sub: str, query: dict[str, str],
               raw: bytes, path: str) -> tuple[int, dict[str, Any]]:
        store = self.store
        dry = query.get("dryRun") == "All"
        manager = query.get("fieldManager") or self.headers.get("User-Agent", "unknown").split("/", 1)[0]
        ctype = (self.headers.get("Content-Type") or "").split(";")[0]
        verb = {"GET": "GET" if name else "LIST", "POST": "CREATE", "PUT": "UPDATE", "DELETE": "DELETE",
                "PATCH": "APPLY" if ctype == "application/apply-patch+yaml" else "PATCH"}[method]
        store.calls.append((verb + (" dry" if dry else ""), path + (f"?{query}" if query else "")))
        space = ns or ""
        with store.lock:
            if method == "GET" and not name:
                return 200, store.list(kind, ns, query.get("labelSelector", ""), query.get("fieldSelector", ""))
            if method == "POST":
                if name:
                    raise ApiError(405, "MethodNotAllowed", "POST to a named object")
                body = json.loads(raw)
                _matches_url(kind, body, apply=False)
                return 201, store.create(kind, space, self._checked(kind, body, query, False), manager, dry)
            current = store.get(kind, space, name) if method != "PATCH" or ctype != "application/apply-patch+yaml" \
                else None
            if sub == "scale":
                return self._scale(method, kind, space, name, current, raw, ctype, manager, dry)
            if method == "GET":
                assert current is not None
                return 200, current
            if method == "DELETE":
                # DeleteOptions in the body, as kubectl sends them (`delete --dry-run=server`): dryRun and
                # preconditions count as much as the query's (k8s.io/apimachinery DeleteOptions)
                options = json.loads(raw) if raw.strip() else {}
                dry = dry or "All" in (options.get("dryRun") or [])
                assert current is not None
                for key, have in (("uid", current["metadata"].get("uid")),
                                  ("resourceVersion", current["metadata"].get("resourceVersion"))):
                    want = (options.get("preconditions") or {}).get(key)
                    if want is not None and want != have:
                        what = "UID" if key == "uid" else "ResourceVersion"
                        raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.plural} "{name}": '
                                       f"Precondition failed: {what} in precondition: {want}, {what} in object "
                                       f"meta: {have}", kind=kind.kind, name=name)
                propagation = options.get("propagationPolicy") or query.get("propagationPolicy", "")
                left = store.delete(kind, space, name, dry, propagation)
                if left["metadata"].get("deletionTimestamp"):  # it stays until its finalizers are done
                    return 200, left
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                             "details": {"name": name, "kind": kind.plural, "uid": current["metadata"].get("uid")}}
            if method == "PUT":
                return 200, store.update(kind, space, name, self._checked(kind, json.loads(raw), query, False),
                                         manager, dry, sub)
            if ctype == "application/apply-patch+yaml":
                if not query.get("fieldManager"):
                    raise ApiError(400, "BadRequest", "PATCH, application/apply-patch+yaml requires fieldManager")
                config = YAML(typ="safe").load(raw.decode())
                _matches_url(kind, config, apply=True)
                if (config.get("metadata") or {}).get("name", name) != name:
                    raise ApiError(400, "BadRequest", "the name of the object does not match the name in the URL")
                config.setdefault("metadata", {})["name"] = name
                config = self._checked(kind, config, query, True)
                return 200, store.apply(kind, space, name, config, manager, query.get("force") == "true", dry)
            assert current is not None
            patched = self._checked(kind, _patched(current, json.loads(raw), ctype), query, False)
            return 200, store.update(kind, space, name, patched, manager, dry, sub)

    def _scale(self, method: str, kind: Kind, ns: str, name: str, current: dict[str, Any] | None, raw: bytes,
               ctype: str, manager: str, dry: bool) -> tuple[int, dict[str, Any]]:
        assert current is not None
        scale = _scale_of(current)
        if method == "GET":
            return 200, scale
        if method not in ("PUT", "PATCH"):
            raise ApiError(405, "MethodNotAllowed", f"{method} on scale")
        new = json.loads(raw) if method == "PUT" else _patched(scale, json.loads(raw), ctype)
        replicas = (new.get("spec") or {}).get("replicas")
        deployment = {**current, "spec": {**current["spec"], "replicas": replicas}}
        return 200, _scale_of(self.store.update(kind, ns, name, deployment, manager, dry, "scale",
                                                check_version=False))


def _age(stamp: str) -> str:
    """A timestamp's age as kubectl shows it (45s, 12m, 3h, 2d)."""
    from datetime import UTC, datetime

    seconds = int((datetime.now(UTC) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    labels = obj["spec"].get("selector", {}).get("matchLabels", {})
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                          "creationTimestamp") if k in obj["metadata"]},
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}


def _patched(current: dict[str, Any], patch: Any, ctype: str) -> dict[str, Any]:
    if ctype == "application/json-patch+json":
        return kf.json_patch(current, patch)  # type: ignore[no-any-return]
    if ctype == "application/merge-patch+json":
        return kf.json_merge(current, patch)  # type: ignore[no-any-return]
    if ctype == "application/strategic-merge-patch+json":
        return kf.merge(current, patch)  # type: ignore[no-any-return]
    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}")


@dataclass
class KubePeer:
    server: Server
    store: Store
    stopping: threading.Event

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path: Path, context: str = "peer", namespace: str = "default") -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "peer", "cluster": {"server": self.url}}],
            "users": [{"name": "peer", "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": "peer", "user": "peer", "namespace": namespace}}],
        }))
        return path

    def count(self, verb: str) -> int:
        return sum(1 for v, _ in self.store.calls if v == verb)

    def stop(self) -> None:
        self.stopping.set()
        self.server.stopping = True  # type: ignore[attr-defined]  # (open watches end)
        self.server.shutdown()
        self.server.server_close()


def start(settle: float = 0.2) -> KubePeer:
    """The server on a free port of 127.0.0.1, its Deployment controller ticking in the background."""
    store = Store(settle=settle)
    handler = type("Handler", (_Handler,), {"store": store})
    server = Server(("127.0.0.1", 0), handler)
    stopping = threading.Event()

    def controller() -> None:
        while not stopping.wait(0.05):
            store.tick()

    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=controller, daemon=True).start()
    return KubePeer(server, store, stopping)
