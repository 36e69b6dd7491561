"""`recon do` on a Model's Deployment: restart (a rollout restart, as kubectl's), scale, logs and health of its
pods. Writes go as field manager recon-do, so what the specs own stays recon's; a scale that moves replicas away
from the spec is then drift the next plan shows, and its apply takes the field back without a conflict."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from providers.context import Context
from providers.contract import Output
from providers.kube.client import ApiFailure, Cluster, cluster
from providers.kube.rollout import selector_of, wait_rollout
from providers.secrets import masker
from specs.actions import LogsParams, Params, ScaleParams


class ActionFailed(Exception):
    pass


def act(ctx: Context, action: str, d: Any, params: Params, emit: Callable[[Output], None]) -> str:
    """`d` is the Model's Deployment (a KubeObject); what was done, or ActionFailed saying why not."""
    conn = cluster(ctx, d.where)
    ns, name = d.obj.namespace, d.obj.name
    live = conn.get("Deployment", ns, name)
    if live is None:
        raise ActionFailed(f"no Deployment {ns}/{name}: the Model is not applied there yet (recon apply)")
    if action == "restart":
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patched = conn.patch("Deployment", ns, name, {"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": at}}}}})
        return _rolled(conn, patched, d, "restarted (a rollout restart)")
    if action == "scale":
        assert isinstance(params, ScaleParams)
        was = conn.patch("Deployment", ns, name, {"spec": {"replicas": params.replicas}}, sub="scale",
                         content_type="application/merge-patch+json")
        got = conn.get("Deployment", ns, name) or {}
        return _rolled(conn, got, d, f"scaled to {was.get('spec', {}).get('replicas', params.replicas)} replicas")
    pods = conn.pods(ns, selector_of(live))
    if action == "health":
        return _health(pods, emit)
    assert isinstance(params, LogsParams)
    return _logs(ctx, conn, d, pods, params, emit)


def _rolled(conn: Cluster, obj: dict[str, Any], d: Any, what: str) -> str:
    problem, last = wait_rollout(conn, obj, d.settings.rolloutTimeout)
    if problem is not None:
        raise ActionFailed(f"{what}, but the rollout did not finish: {problem}")
    return f"{what}; rolled out: {last.get('status', {}).get('availableReplicas', 0)} replicas available"


def _health(pods: list[dict[str, Any]], emit: Callable[[Output], None]) -> str:
    """Each pod's readiness (its readiness probe is the Model's health check), now, as the API server reports it."""
    bad = 0
    for pod in pods:
        status = pod.get("status", {})
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or [])
        bad += not ready
        emit(Output(pod["metadata"]["name"], ("ready" if ready else "NOT READY") +
                    f" ({status.get('phase', '?')}, {restarts} restarts)"))
    if not pods:
        raise ActionFailed("no pods: the Deployment runs no replica")
    if bad:
        raise ActionFailed(f"{len(pods) - bad} of {len(pods)} pods ready")
    return f"{len(pods)} of {len(pods)} pods ready"


def _logs(ctx: Context, conn: Cluster, d: Any, pods: list[dict[str, Any]], p: LogsParams,
          emit: Callable[[Output], None]) -> str:
    mask = _masker(conn, d)
    query = [("tailLines", str(p.tail)), *([("sinceSeconds", str(p.since_seconds))] if p.since_seconds else []),
             *([("follow", "true")] if p.follow else [])]
    if not pods:
        raise ActionFailed("no pods: the Deployment runs no replica")
    lines = [0]
    started = time.monotonic()
    lock = threading.Lock()

    def one(pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        try:
            for raw in conn.log(pod["metadata"]["namespace"], name, query):
                with lock:
                    emit(Output(name, mask(raw.decode(errors="replace"))))
                    lines[0] += 1
        except ApiFailure as exc:
            with lock:
                emit(Output(name, f"(no log: {exc.code} {exc.message})"))

    if p.follow:  # every pod's stream at once, as `kubectl logs -f -l` follows them
        with ThreadPoolExecutor(len(pods)) as pool:
            list(pool.map(one, pods))
    else:
        for pod in pods:
            one(pod)
    return f"{lines[0]} lines from {len(pods)} pods in {time.monotonic() - started:.1f}s"


def _masker(conn: Cluster, d: Any) -> Callable[[str], str]:
    """Hides the values of the Model's Secret (its environment's secrets) in a line."""
    secrets: list[tuple[str, str]] = []
    containers = d.obj.config.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    names = {f["secretRef"]["name"] for c in containers for f in c.get("envFrom", []) if "secretRef" in f}
    names |= {e["valueFrom"]["secretKeyRef"]["name"] for c in containers for e in c.get("env", [])
              if "secretKeyRef" in (e.get("valueFrom") or {})}
    for name in sorted(names):
        got = conn.get("Secret", d.obj.namespace, name) or {}
        secrets += [(key, base64.b64decode(value).decode(errors="replace"))
                    for key, value in (got.get("data") or {}).items()]
    return masker(secrets)
