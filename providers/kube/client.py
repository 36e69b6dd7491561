"""Calls to a Kubernetes API server through the official client, with raw JSON answers.

Answers are not turned into the client's model classes: recon compares plain JSON, and for hundreds
of objects the conversion would cost more than the calls.
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.context import Context
from providers.proxies import proxy_for
from specs.errors import TransportError
from specs.model import env_kubeconfig

APPLY = "application/apply-patch+yaml"
MANAGER = "recon"
ACTIONS = "recon-do"  # the field manager of `recon do` (a scale, a restart): recon's own, though not its specs'
_API = {"Deployment": ("apps", "deployments"), "Service": ("core", "services"), "ConfigMap": ("core", "configmaps"),
        "Secret": ("core", "secrets"), "Pod": ("core", "pods"), "ReplicaSet": ("apps", "replicasets")}
KINDS = ("Deployment", "Service", "ConfigMap", "Secret")  # what a Model is made of


class ApiFailure(Exception):
    """The API server answered with an error Status."""

    def __init__(self, code: int, reason: str, message: str, causes: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes


@dataclass(frozen=True)
class Where:
    """A cluster as a spec names it: a kubeconfig file (None: the usual places) and a context."""

    kubeconfig: str | None
    context: str | None

    @property
    def key(self) -> str:
        return f"k8s:{self.kubeconfig or ''}:{self.context or ''}"

    @property
    def path(self) -> str:
        """The kubeconfig file the client reads: the spec's, else KUBECONFIG's, else ~/.kube/config."""
        return self.kubeconfig or env_kubeconfig() or str(Path.home() / ".kube" / "config")


def server_of(where: Where) -> str:
    """The API server URL a kubeconfig and context lead to (read without the client, for lock keys): the same
    cluster under two context names, or two kubeconfig files, is one cluster. The Where's key when it cannot be
    read (the run then fails on connecting, with the reason)."""
    from ruamel.yaml import YAML

    path = where.path
    try:
        data = YAML(typ="safe", pure=False).load(Path(path).read_text(encoding="utf-8")) or {}
        context = where.context or data.get("current-context")
        ctx = next(c["context"] for c in data.get("contexts") or [] if c.get("name") == context)
        cluster = next(c["cluster"] for c in data.get("clusters") or [] if c.get("name") == ctx.get("cluster"))
        return str(cluster["server"]).rstrip("/")
    except Exception:
        if not Path(path).is_file() and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443')}"
        return where.key


def _unreadable(exc: Exception) -> str:
    """Why the client could not read a kubeconfig, in one line (a YAML error by its line and column)."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        at = exc.problem_mark
        return f"it is not valid YAML: {exc.problem} at line {at.line + 1}, column {at.column + 1}"
    if isinstance(exc, TypeError | AttributeError | KeyError | IndexError):
        return f"it is not a kubeconfig the client can read ({type(exc).__name__}: {exc})"
    return " ".join(str(exc).split())


class Cluster:
    """One cluster: the official client's ApiClient (kubeconfig, authentication, TLS) with paths built here.
    The typed APIs (AppsV1Api, CoreV1Api) are not used: importing them builds some 300 model classes,
    over a second per run, and recon reads plain JSON anyway."""

    def __init__(self, where: Where) -> None:
        from kubernetes import config
        from kubernetes.client.api_client import ApiClient
        from kubernetes.client.configuration import Configuration

        conf = Configuration()
        path = where.path
        named = f" (context {where.context})" if where.context else ""
        try:
            if Path(path).is_file() or where.kubeconfig:
                config.load_kube_config(config_file=path, context=where.context, client_configuration=conf)
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=conf)
            else:
                raise TransportError(f"no kubeconfig at {path} and not inside a cluster: set KUBECONFIG, or "
                                     "kubernetes.kubeconfig in the Model")
        except TransportError:
            raise
        except Exception as exc:  # the client reads any text it is given: YAML errors, a list where a map goes
            raise TransportError(f"the kubeconfig {path}{named} cannot be used: {_unreadable(exc)}") from None
        self.server = conf.host
        if getattr(conf, "_proxy_from_env", conf.proxy is None):  # not the kubeconfig's own proxy-url
            # the environment's proxy as kubectl takes it (providers/proxies.py): never for a cluster on loopback
            conf.proxy, conf.no_proxy = proxy_for(conf.host), None
        self.via = f" through the proxy {conf.proxy}" if conf.proxy else ""
        conf.connection_pool_maxsize = 32
        conf.retries = 1
        self.api = ApiClient(configuration=conf)
        self._schema: str | None = None

    def close(self) -> None:
        self.api.close()

    def _send(self, method: str, kind: str, namespace: str, name: str = "", query: list[tuple[str, str]] | None = None,
              body: Any = None, content_type: str = "application/json", sub: str = "") -> Any:
        """The response, its body not read yet."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        group, plural = _API[kind]
        prefix = "/apis/apps/v1" if group == "apps" else "/api/v1"
        path = f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")
        headers = {"Accept": "application/json", **({"Content-Type": content_type} if body is not None else {})}
        try:
            args = self.api.param_serialize(method, path, query_params=query or [], header_params=headers, body=body,
                                            auth_settings=["BearerToken"])
            return self.api.call_api(*args)
        except ApiException as exc:
            raise TransportError(f"the Kubernetes API at {self.server} cannot be reached: {exc.reason}",
                                 transient=True) from None
        except (HTTPError, OSError) as exc:
            raise TransportError(f"the Kubernetes API at {self.server} cannot be reached{self.via}: {exc}",
                                 transient=True) from None

    def _call(self, method: str, kind: str, namespace: str, name: str = "", query: list[tuple[str, str]] | None = None,
              body: Any = None, content_type: str = "application/json", sub: str = "") -> dict[str, Any]:
        from urllib3.exceptions import HTTPError

        resp = self._send(method, kind, namespace, name, query, body, content_type, sub)
        try:
            data = resp.read()
        except (HTTPError, OSError) as exc:
            raise TransportError(f"the Kubernetes API at {self.server} cannot be reached: {exc}",
                                 transient=True) from None
        return self._answer(resp, data)

    def _answer(self, resp: Any, data: bytes) -> dict[str, Any]:
        try:
            answer = json.loads(data or b"{}")
        except ValueError:
            answer = {"message": data[:200].decode(errors="replace")}
        if resp.status >= 400:
            raise ApiFailure(resp.status, answer.get("reason", resp.reason or ""), answer.get("message", ""),
                             (answer.get("details") or {}).get("causes") or [])
        return answer

    def schema(self) -> str:
        """The Kubernetes version whose published schema says how this cluster merges fields (semantics.py):
        asked once per run (GET /version)."""
        if self._schema is None:
            from kubernetes.client.exceptions import ApiException
            from urllib3.exceptions import HTTPError

            from providers.kube import semantics

            try:
                args = self.api.param_serialize("GET", "/version", header_params={"Accept": "application/json"},
                                                auth_settings=["BearerToken"])
                resp = self.api.call_api(*args)
                version = str(self._answer(resp, resp.read()).get("gitVersion", ""))
            except (ApiException, HTTPError, OSError, ApiFailure):
                version = ""  # a server that does not say: the newest schema
            self._schema = semantics.choose(version)
        return self._schema

    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self._call("GET", kind, namespace, query=[("labelSelector", selector)]).get(
            "items") or []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", kind, namespace, name)
        except ApiFailure as exc:
            if exc.code == 404:
                return None
            raise

    def apply(self, kind: str, config: dict[str, Any], force: bool, dry_run: bool) -> dict[str, Any]:
        meta = config["metadata"]
        query = [("fieldManager", MANAGER), *([("force", "true")] if force else []),
                 *([("dryRun", "All")] if dry_run else [])]
        return self._call("PATCH", kind, meta["namespace"], meta["name"], query, config, APPLY)

    def patch(self, kind: str, namespace: str, name: str, body: dict[str, Any], sub: str = "",
              content_type: str = "application/strategic-merge-patch+json") -> dict[str, Any]:
        """A patch by `recon do` (field manager recon-do), e.g. a restart's annotation or a scale."""
        return self._call("PATCH", kind, namespace, name, [("fieldManager", ACTIONS)], body, content_type, sub)

    def pods(self, namespace: str, selector: str) -> builtins.list[dict[str, Any]]:
        return self.list("Pod", namespace, selector)

    def log(self, namespace: str, pod: str, query: builtins.list[tuple[str, str]]) -> Iterator[bytes]:
        """A pod's log, line by line, as the server sends it (with follow=true: until it ends the stream)."""
        resp = self._send("GET", "Pod", namespace, pod, query, sub="log")
        if resp.status >= 400:
            self._answer(resp, resp.read())
        buf = b""
        for chunk in resp.response.stream(4096):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            yield from lines
        if buf:
            yield buf

    def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            self._call("DELETE", kind, namespace, name, body={"propagationPolicy": "Background"})
        except ApiFailure as exc:
            if exc.code != 404:
                raise


class Session:
    """The Kubernetes provider's session: a client per cluster, and the LISTs of a read (one per kind and
    namespace, shared by orphans() and read())."""

    def __init__(self) -> None:
        self.clusters: dict[str, Cluster] = {}
        self.lists: dict[str, Any] = {}

    def close(self) -> None:
        for conn in self.clusters.values():
            conn.close()
        self.clusters.clear()
        self.lists.clear()


def session(ctx: Context) -> Session:
    return ctx.session("kubernetes", Session)


def cluster(ctx: Context, where: Where) -> Cluster:
    clusters = session(ctx).clusters
    conn = clusters.get(where.key)
    if conn is None:
        conn = clusters[where.key] = Cluster(where)
    return conn
