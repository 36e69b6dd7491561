"""Waiting for a Deployment's rollout, as `kubectl rollout status` does, by polling its status."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from reconciler.context import Context

if TYPE_CHECKING:
    from providers.kube.client import Cluster


def progress(obj: dict[str, Any]) -> tuple[bool, str]:
    """(done, what is missing) of a Deployment: the controller has seen this generation, every replica
    runs the new template and is available, and no old replica is left."""
    spec, status = obj.get("spec", {}), obj.get("status", {})
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 1):
        return False, "the controller has not seen the new template yet"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return False, f"progress deadline exceeded: {cond.get('message', '')}".rstrip(": ")
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    total = status.get("replicas", 0)
    if updated < want:
        return False, f"{updated} of {want} replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    if available < want:
        return False, f"{available} of {want} updated replicas available"
    return True, ""


def wait_rollout(conn: Cluster, applied: dict[str, Any], timeout: float, ctx: Context, target: str) -> str | None:
    """None when the rollout is done, else what was missing when `timeout` seconds had passed."""
    meta = applied["metadata"]
    deadline = time.monotonic() + timeout
    obj = applied
    missing = "not read yet"
    delay = 0.1
    while True:
        done, missing = progress(obj)
        if done:
            return None
        if "deadline exceeded" in missing or time.monotonic() >= deadline:
            return f"{missing} after {timeout:g}s"
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 2.0)
        found = conn.get("Deployment", meta["namespace"], meta["name"])
        if found is None:
            return "the Deployment was deleted while rolling out"
        obj = found
