"""Waiting for a Deployment's rollout, as `kubectl rollout status` does, by polling its status; and, unlike it,
failing at once when a new pod keeps exiting (CrashLoopBackOff), not at the progress deadline."""

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
# a new pod's container the kubelet restarted this often, and is backing off from, fails the rollout at once (as
# a Docker replica does, providers/docker/replicas.py), not at the progress deadline
CRASHES = 3
REVISION = "deployment.kubernetes.io/revision"


def selector_of(obj: dict[str, Any], **more: str) -> str:
    """A Deployment's spec.selector.matchLabels, and `more` labels, as a label selector (k=v,…)."""
    labels = {**((obj.get("spec", {}).get("selector") or {}).get("matchLabels") or {}), **more}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def current_template(conn: Cluster, obj: dict[str, Any]) -> str:
    """The pod-template-hash of the Deployment's current ReplicaSet ("" while not known): the controller has seen
    its template, so its revision names that ReplicaSet. "" too when the cluster does not let recon list them
    (the progress deadline then decides alone)."""
    from providers.kube.client import ApiFailure

    meta = obj["metadata"]
    revision = (meta.get("annotations") or {}).get(REVISION)
    selector = selector_of(obj)
    seen = obj.get("status", {}).get("observedGeneration", 0) >= meta.get("generation", 1)
    if not (revision and selector and seen):
        return ""
    try:
        current = [rs for rs in conn.list("ReplicaSet", meta["namespace"], selector)
                   if (rs["metadata"].get("annotations") or {}).get(REVISION) == revision
                   and any(ref.get("uid") == meta.get("uid") for ref in rs["metadata"].get("ownerReferences") or [])]
    except ApiFailure:
        return ""
    return str((current[0]["metadata"].get("labels") or {}).get("pod-template-hash") or "") if current else ""


def crashing(conn: Cluster, obj: dict[str, Any], template: str) -> str:
    """What keeps exiting among the pods of the ReplicaSet whose pod-template-hash is `template` (the
    Deployment's current one: pods of older ReplicaSets never fail a rollout that replaces them), "" when
    nothing does: a container in CrashLoopBackOff after CRASHES restarts."""
    from providers.kube.client import ApiFailure

    ns = obj["metadata"]["namespace"]
    try:  # (a cluster that does not let recon list them leaves the progress deadline to decide)
        pods = conn.pods(ns, selector_of(obj, **{"pod-template-hash": template}))
    except ApiFailure:
        return ""
    for pod in pods:
        for c in pod.get("status", {}).get("containerStatuses") or []:
            waiting = (c.get("state") or {}).get("waiting") or {}
            if c.get("restartCount", 0) < CRASHES or waiting.get("reason") != "CrashLoopBackOff":
                continue
            last = (c.get("lastState") or {}).get("terminated") or {}
            why = f" ({last['reason']})" if last.get("reason") not in (None, "", "Error") else ""
            name = pod["metadata"]["name"]
            return (f"pod {name}: its container {c['name']} keeps exiting: restarted {c['restartCount']} times, last "
                    f"exit code {last.get('exitCode', '?')}{why}; its output: kubectl logs -n {ns} {name} -c "
                    f"{c['name']} --previous")
    return ""


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
    looked = time.monotonic()  # when the current ReplicaSet's pods were last looked at (every second or so)
    templates: dict[str, str] = {}  # the current ReplicaSet's pod-template-hash by revision, once found
    while True:
        state, missing = progress(obj)
        if state == "done":
            return None, obj
        if state == "failed":
            return missing, obj
        if time.monotonic() - looked >= 1.0:
            looked = time.monotonic()
            revision = (obj["metadata"].get("annotations") or {}).get(REVISION, "")
            if not templates.get(revision):
                templates[revision] = current_template(conn, obj)
            crash = crashing(conn, obj, templates[revision]) if templates[revision] else ""
            if crash:
                return crash, obj
        if time.monotonic() >= deadline:
            return f"{missing} after {timeout:g}s", obj
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 2.0)
        found = conn.get("Deployment", meta["namespace"], meta["name"])
        if found is None:
            return "the Deployment was deleted while rolling out", obj
        obj = found
