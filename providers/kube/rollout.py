"""Waiting for a Deployment's rollout, as `kubectl rollout status` does, by polling its status."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from providers.kube.client import Cluster

State = Literal["done", "waiting", "failed"]


def progress(obj: dict[str, Any]) -> tuple[State, str]:
    """Where a Deployment's rollout is, and what is missing: done when the controller has seen this
    generation, every replica runs the new template and is available, and no old replica is left;
    failed when the controller gave up (its progress deadline passed)."""
    spec, status = obj.get("spec", {}), obj.get("status", {})
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 1):
        return "waiting", "the controller has not seen the new template yet"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "failed", f"progress deadline exceeded: {cond.get('message', '')}".rstrip(": ")
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    total = status.get("replicas", 0)
    if updated < want:
        return "waiting", f"{updated} of {want} replicas updated"
    if total > updated:
        return "waiting", f"{total - updated} old replicas pending termination"
    if available < want:
        return "waiting", f"{available} of {want} updated replicas available"
    return "done", ""


GRACE = 5.0  # seconds past its progress deadline the cluster may take to say so


def wait_rollout(conn: Cluster, applied: dict[str, Any], timeout: float) -> tuple[str | None, dict[str, Any]]:
    """(None, the Deployment) when its rollout is done, else (what was missing when it failed or when
    `timeout` seconds had passed, the Deployment as last read). A Deployment whose progress deadline is no
    later than `timeout` is given GRACE more, for its controller to report ProgressDeadlineExceeded itself."""
    meta = applied["metadata"]
    if applied.get("spec", {}).get("progressDeadlineSeconds", 600) <= math.ceil(timeout):
        timeout += GRACE
    deadline = time.monotonic() + timeout
    obj = applied
    delay = 0.1
    while True:
        state, missing = progress(obj)
        if state == "done":
            return None, obj
        if state == "failed":
            return missing, obj
        if time.monotonic() >= deadline:
            return f"{missing} after {timeout:g}s", obj
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 2.0)
        found = conn.get("Deployment", meta["namespace"], meta["name"])
        if found is None:
            return "the Deployment was deleted while rolling out", obj
        obj = found
