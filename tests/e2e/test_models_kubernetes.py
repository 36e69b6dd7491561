"""Models on Kubernetes, end to end through the recon CLI and the official client.

Against the project's own API server (tests/peers/kube_api.py) on 127.0.0.1, or against a real
cluster when RECON_TEST_KUBECONFIG names a kubeconfig: each test then works in a namespace of its
own, made and deleted here. RECON_TEST_KUBE_IMAGES gives two images the cluster can pull that answer
HTTP 200 at /health on $PORT (the peer runs no containers: any image is fine there, and one on a
host under .invalid never becomes available, as an image that cannot be pulled).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import recon
from tests.peers import kube_api

REAL = os.environ.get("RECON_TEST_KUBECONFIG")
IMAGES = (os.environ.get("RECON_TEST_KUBE_IMAGES") or "registry.local/recon/churn:1,registry.local/recon/churn:2")
IMAGE1, IMAGE2 = IMAGES.split(",")[:2]
STUCK = "registry.invalid/recon/never:1"  # the .invalid TLD never resolves: the pull fails on any cluster
SECRET = "s3cr3t-value-42"


@dataclass
class Cluster:
    kubeconfig: Path
    namespace: str
    peer: kube_api.KubePeer | None
    apps: Any
    core: Any

    def deployment(self, name: str) -> dict[str, Any]:
        resp = self.apps.read_namespaced_deployment(name, self.namespace, _preload_content=False)
        return json.loads(resp.data)  # type: ignore[no-any-return]

    def names(self, kind: str) -> list[str]:
        api = self.apps if kind == "deployment" else self.core
        resp = getattr(api, f"list_namespaced_{kind}")(self.namespace, label_selector="app.kubernetes.io/managed-by"
                                                       "=recon", _preload_content=False)
        return sorted(i["metadata"]["name"] for i in json.loads(resp.data)["items"])

    def calls(self, verb: str) -> int:
        assert self.peer is not None
        return self.peer.count(verb)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    from kubernetes import client, config

    peer = None
    if REAL:
        kubeconfig = Path(REAL)
    else:
        peer = kube_api.start()
        kubeconfig = peer.kubeconfig(tmp_path / "kubeconfig")
    api = config.new_client_from_config(str(kubeconfig))
    namespace = f"recon-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    made = Cluster(kubeconfig, namespace, peer, client.AppsV1Api(api), core)
    try:
        yield made
    finally:
        if peer is None or made.peer is not None:  # (a test may stop the peer)
            core.delete_namespace(namespace)
        api.close()
        if made.peer is not None:
            made.peer.stop()


def _spec(tmp: Path, c: Cluster, name: str = "churn", image: str = IMAGE1, replicas: int = 2,
          version: str = "v1", k8s: str = "", extra: str = "") -> None:
    (tmp / "specs").mkdir(exist_ok=True)
    (tmp / "specs" / f"{name}.yaml").write_text(
        f"apiVersion: recon/v1\nkind: Model\nmetadata: {{name: {name}, labels: {{team: risk}}}}\nspec:\n"
        f"  runtime: kubernetes\n  image: {image}\n  replicas: {replicas}\n  port: 8080\n"
        f"  kubernetes: {{kubeconfig: {c.kubeconfig}, namespace: {c.namespace}{', ' + k8s if k8s else ''}}}\n"
        f"  env: {{MODEL_VERSION: {version}, API_TOKEN: {{valueFrom: {{env: CHURN_TOKEN}}}}}}\n"
        f"  resources: {{cpus: 0.5, memory: 256m{'' if REAL else ', gpus: 1'}}}\n"  # (a real cluster may have no GPU)
        "  health: {path: /health}\n" + extra)


ENV = {"CHURN_TOKEN": SECRET}


def test_apply_replan_change_and_the_dry_run_never_writes(tmp_path: Path, cluster: Cluster) -> None:
    _spec(tmp_path, cluster, extra="")
    planned = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV)
    assert planned.rc == 2, planned.text
    for kind in ("configmap", "secret", "deployment", "service"):
        assert f"+ create  Model/churn/{kind} @ k8s/{cluster.namespace}" in planned.out, planned.out
    assert "spec.template.spec.containers[name=model].image" in planned.out
    assert "(secret) " in planned.out
    as_json = recon("plan", "--json", cwd=tmp_path, env=ENV)
    assert SECRET not in planned.text + as_json.text
    assert cluster.names("deployment") == [] and cluster.names("secret") == []  # the plans wrote nothing
    if cluster.peer:
        assert cluster.calls("APPLY") == 0 and cluster.calls("APPLY dry") == 8  # 4 objects, 2 plans

    applied = recon("apply", "--auto-approve", cwd=tmp_path, env=ENV)
    assert applied.rc == 0, applied.text
    assert SECRET not in applied.text
    assert "rolled out: 2 replicas available" in applied.out
    dep = cluster.deployment("churn")
    assert dep["status"]["availableReplicas"] == 2 and dep["metadata"]["labels"]["team"] == "risk"
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi",
                                                **({} if REAL else {"nvidia.com/gpu": "1"})}
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "256Mi"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert [m["manager"] for m in dep["metadata"]["managedFields"] if m["operation"] == "Apply"] == ["recon"]

    if cluster.peer:
        before = list(cluster.peer.store.calls)
    again = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV)
    assert again.rc == 0, again.text  # defaulted and server-set fields never show as changes
    if cluster.peer:
        made = [v for v, _ in cluster.peer.store.calls[len(before):]]
        # one LIST per kind and namespace, no dry run; the server's version once (which schema merges its fields)
        assert sorted(made) == ["DISCOVERY"] + ["LIST"] * 4, made

    _spec(tmp_path, cluster, image=IMAGE2, version="v2")
    changed = recon("plan", cwd=tmp_path, env=ENV)
    assert f"spec.template.spec.containers[name=model].image: {IMAGE1} → {IMAGE2}" in changed.out, changed.out
    assert "data.MODEL_VERSION: v1 → v2" in changed.out
    assert "a rolling update of the pods" in changed.out
    assert "~ update  Model/churn/service" not in changed.out  # untouched objects stay out of the plan
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    assert cluster.deployment("churn")["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE2
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV).rc == 0

    # a changed secret rolls the pods (the template's config digest), and still never shows
    rotated = recon("plan", cwd=tmp_path, env={"CHURN_TOKEN": "another-s3cret"})
    assert "~ update  Model/churn/secret" in rotated.out and "recon.dev/config-digest" in rotated.out
    assert "another-s3cret" not in rotated.text and SECRET not in rotated.text


def test_a_proxy_in_the_environment_is_taken_as_kubectl_takes_it(tmp_path: Path, cluster: Cluster) -> None:
    """The official client sends even a cluster on 127.0.0.1 to the environment's HTTP(S)_PROXY (Python's rules),
    where kubectl goes direct: with a proxy on a runner, `recon plan` "cannot reach" a local cluster kubectl
    reads. Now the proxy is taken as Go takes it (providers/proxies.py): never for loopback, NO_PROXY honoured.
    The proxy here is a closed port: whatever went to it would fail."""
    from urllib.parse import urlsplit

    from kubernetes import config as kube_config

    server = urlsplit(kube_config.new_client_from_config(str(cluster.kubeconfig)).configuration.host).hostname
    dead = "http://127.0.0.1:9"
    env = {**ENV, **{k: dead for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")},
           **({"NO_PROXY": server} if REAL else {})}  # a real cluster is not on loopback: NO_PROXY names it
    _spec(tmp_path, cluster, replicas=1)
    applied = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert applied.rc == 0 and "rolled out: 1 replicas available" in applied.out, applied.text
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0
    if not REAL:  # and a cluster the proxy should reach is sent to it, as kubectl sends it
        config = json.loads(cluster.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"http://cluster.recon.test:{urlsplit(dead).port}"
        (tmp_path / "remote").write_text(json.dumps(config))
        _spec(tmp_path, cluster, replicas=1)
        spec = tmp_path / "specs" / "churn.yaml"
        spec.write_text(spec.read_text().replace(str(cluster.kubeconfig), str(tmp_path / "remote")))
        refused = recon("plan", cwd=tmp_path, env=env)
        assert refused.rc == 1 and f"cannot be reached through the proxy {dead}: " in refused.err, refused.text


def test_a_manual_scale_is_a_conflict_until_forced_or_left_unmanaged(tmp_path: Path, cluster: Cluster) -> None:
    _spec(tmp_path, cluster)
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    cluster.apps.patch_namespaced_deployment_scale("churn", cluster.namespace, {"spec": {"replicas": 5}},
                                                   field_manager="kubectl")
    conflict = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV)
    assert conflict.rc == 2 and "conflict: kubectl owns .spec.replicas" in conflict.out, conflict.text
    assert "spec.replicas: 5 → 2" in conflict.out and "--force-conflicts" in conflict.out
    refused = recon("apply", "--auto-approve", cwd=tmp_path, env=ENV)
    assert refused.rc == 1 and "kubectl owns .spec.replicas" in refused.out, refused.text
    assert cluster.deployment("churn")["spec"]["replicas"] == 5

    forced = recon("plan", "--force-conflicts", "--out", "plan.json", cwd=tmp_path, env=ENV)
    assert "owner of spec.replicas: kubectl → recon" in forced.out, forced.out
    assert recon("apply", "plan.json", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0  # the saved plan forces
    assert cluster.deployment("churn")["spec"]["replicas"] == 2
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV).rc == 0

    # replicas left to someone else (an autoscaler): kubectl scale takes them, and the plan stays empty
    _spec(tmp_path, cluster, k8s="manageReplicas: false")
    cluster.apps.patch_namespaced_deployment_scale("churn", cluster.namespace, {"spec": {"replicas": 4}},
                                                   field_manager="kubectl")
    unmanaged = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV)
    assert unmanaged.rc == 0, unmanaged.text
    assert cluster.deployment("churn")["spec"]["replicas"] == 4


def test_operational_actions_on_a_deployment(tmp_path: Path, cluster: Cluster) -> None:
    """recon do on Kubernetes: health and logs of the pods (the Secret's values masked), a rollout restart waited
    for that leaves the plan empty, and a scale (field manager recon-do) that the next plan shows as drift, not as
    a conflict, and whose apply takes replicas back; each action audited."""
    _spec(tmp_path, cluster)
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    health = recon("do", "health", "churn", "--json", cwd=tmp_path, env=ENV)
    got = json.loads(health.out)
    assert health.rc == 0 and got["ok"] and [o["text"].split(" ")[0] for o in got["output"]] == ["ready"] * 2, \
        health.text
    logs = recon("do", "logs", "Model/churn", "--tail", "50", cwd=tmp_path, env=ENV)
    assert logs.rc == 0 and "2 pods" in logs.err, logs.text
    assert SECRET not in logs.text
    if cluster.peer:  # (what a real image prints is its own)
        assert logs.out.count("env API_TOKEN=(secret API_TOKEN)") == 2 and "env MODEL_VERSION=v1" in logs.out
        # a stock kubectl reads the same pods and log from the test server, and shows what recon masks
        kubectl = shutil.which("kubectl")
        assert kubectl, "kubectl is missing: run scripts/setup (Debian's kubectl)"
        raw = subprocess.run([kubectl, "--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace, "logs",
                              "deploy/churn", "--tail", "50"], capture_output=True, text=True, timeout=60, check=False)
        assert raw.returncode == 0 and f"env API_TOKEN={SECRET}" in raw.stdout, raw.stdout + raw.stderr

    restarted = recon("do", "restart", "churn", "--yes", cwd=tmp_path, env=ENV)
    assert restarted.rc == 0 and "restarted (a rollout restart); rolled out: 2" in restarted.err, restarted.text
    template = cluster.deployment("churn")["spec"]["template"]["metadata"]
    assert "kubectl.kubernetes.io/restartedAt" in template.get("annotations", {})
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV).rc == 0  # a restart is no drift

    scaled = recon("do", "scale", "churn", "--replicas", "4", "--yes", cwd=tmp_path, env=ENV)
    assert scaled.rc == 0 and "the spec says replicas: 2" in scaled.err, scaled.text
    assert cluster.deployment("churn")["spec"]["replicas"] == 4
    replan = recon("plan", "--json", cwd=tmp_path, env=ENV)
    (change,) = [c for c in json.loads(replan.out)["changes"] if c["action"] != "noop"]
    assert change["drift"] and {"path": "spec.replicas", "before": 4, "after": 2} in change["fields"], change
    assert "conflict" not in change["reason"]
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    assert cluster.deployment("churn")["spec"]["replicas"] == 2
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV).rc == 0
    runs = json.loads(recon("audit", "--json", cwd=tmp_path).out)
    assert [r["action"] for r in runs if r["command"] == "do"] == ["scale", "restart", "logs", "health"]


def test_a_deployment_whose_selector_must_change_is_replaced(tmp_path: Path, cluster: Cluster) -> None:
    """Issue 20 (3): a Deployment's spec.selector cannot change once set; a real server answers 422, and the test
    server accepted the change. The plan now says replace, naming the field, and apply deletes and creates it."""
    _spec(tmp_path, cluster)
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    made = cluster.deployment("churn")
    cluster.apps.delete_namespaced_deployment("churn", cluster.namespace)
    other = {"apiVersion": "apps/v1", "kind": "Deployment",  # (a finalizer: its deletion takes a moment)
             "metadata": {"name": "churn", "labels": made["metadata"]["labels"], "finalizers": ["example.com/hold"]},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "older"}},
                      "template": {"metadata": {"labels": {"app": "older"}},
                                   "spec": {"containers": [{"name": "model", "image": IMAGE1}]}}}}
    cluster.apps.create_namespaced_deployment(cluster.namespace, other)  # made by an older tool, another selector
    # (its fields are another manager's: the conflict comes first, as on a real server, so recon takes them)
    planned = recon("plan", "--detailed-exitcode", "--force-conflicts", cwd=tmp_path, env=ENV)
    assert planned.rc == 2 and "-/+ replace Model/churn/deployment" in planned.out, planned.text
    assert "spec.selector cannot change once set: apply deletes the Deployment and creates it again" in planned.out
    release = threading.Timer(1.0, lambda: cluster.apps.patch_namespaced_deployment(
        "churn", cluster.namespace, {"metadata": {"finalizers": None}}))
    release.start()
    applied = recon("apply", "--auto-approve", "--force-conflicts", cwd=tmp_path, env=ENV)
    release.join()
    assert applied.rc == 0, applied.text  # it waited for the old one to go before making it anew
    assert cluster.deployment("churn")["spec"]["selector"] == made["spec"]["selector"]
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV).rc == 0


def test_quantities_the_server_writes_back_otherwise_are_no_change(tmp_path: Path, cluster: Cluster) -> None:
    """Issue 20 (6): memory 1024m is applied as 1024Mi and a real server stores 1Gi; recon compared the two as
    text, so every plan dry-ran the Deployment again (and on the test server, which kept 1024Mi, it did not)."""
    _spec(tmp_path, cluster)
    text = (tmp_path / "specs" / "churn.yaml").read_text().replace("memory: 256m", "memory: 1024m")
    (tmp_path / "specs" / "churn.yaml").write_text(text.replace("cpus: 0.5", "cpus: 2.0"))
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    limits = cluster.deployment("churn")["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["memory"] == "1Gi" and limits["cpu"] == "2"
    before = len(cluster.peer.store.calls) if cluster.peer else 0
    again = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV)
    assert again.rc == 0, again.text
    if cluster.peer:
        made = [v for v, _ in cluster.peer.store.calls[before:]]
        assert sorted(made) == ["DISCOVERY"] + ["LIST"] * 4, made  # nothing to dry-run: 1Gi is the 1024Mi applied


def test_objects_still_being_deleted_are_waited_for_and_never_deleted_twice(tmp_path: Path, cluster: Cluster) -> None:
    """Issue 20 (9): deletion is not always at once (finalizers). A Model's ConfigMap being deleted is planned as
    made again once it is gone, and apply waits for that; a pruned object held by a finalizer is shown as being
    deleted, not deleted again."""
    _spec(tmp_path, cluster)
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    hold = {"metadata": {"finalizers": ["example.com/hold"]}}
    cluster.core.patch_namespaced_config_map("churn", cluster.namespace, hold)
    cluster.core.delete_namespaced_config_map("churn", cluster.namespace)
    planned = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV)
    assert planned.rc == 2 and "+ create  Model/churn/configmap" in planned.out, planned.text
    assert "the ConfigMap churn is being deleted (waiting for its finalizers: example.com/hold)" in planned.out
    release = threading.Timer(1.0, lambda: cluster.core.patch_namespaced_config_map(
        "churn", cluster.namespace, {"metadata": {"finalizers": None}}))
    release.start()
    applied = recon("apply", "--auto-approve", cwd=tmp_path, env=ENV)
    release.join()
    assert applied.rc == 0, applied.text
    made = cluster.core.read_namespaced_config_map("churn", cluster.namespace)
    assert made.metadata.deletion_timestamp is None and made.data["MODEL_VERSION"] == "v1"
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV).rc == 0

    cluster.core.patch_namespaced_config_map("churn", cluster.namespace, hold)  # then the Model leaves the specs
    (tmp_path / "specs" / "churn.yaml").unlink()
    _spec(tmp_path, cluster, name="other")
    assert recon("apply", "--prune", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    again = recon("plan", "--prune", cwd=tmp_path, env=ENV)
    assert "its ConfigMap" in again.out and "is being deleted (waiting for its finalizers: example.com/hold)" in \
        again.out and "- delete  Model/churn/configmap" not in again.out, again.text
    cluster.core.patch_namespaced_config_map("churn", cluster.namespace, {"metadata": {"finalizers": None}})


def test_a_stuck_rollout_fails_and_rolls_back(tmp_path: Path, cluster: Cluster) -> None:
    """Issue 20 (7): the test server had no progress deadline, so the branch where the cluster itself says a
    rollout failed (Progressing: ProgressDeadlineExceeded) never ran. recon sets progressDeadlineSeconds to its
    rolloutTimeout, and reports the cluster's verdict."""
    _spec(tmp_path, cluster, k8s="rolloutTimeout: 3")
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    assert cluster.deployment("churn")["spec"]["progressDeadlineSeconds"] == 3
    _spec(tmp_path, cluster, image=STUCK, k8s="rolloutTimeout: 3")
    stuck = recon("apply", "--auto-approve", cwd=tmp_path, env=ENV)
    assert stuck.rc == 1 and "the rollout did not finish: progress deadline exceeded" in stuck.out, stuck.text
    assert "has timed out progressing" in stuck.out and "set kubernetes.rollback: true" in stuck.out
    assert cluster.deployment("churn")["spec"]["template"]["spec"]["containers"][0]["image"] == STUCK

    _spec(tmp_path, cluster, image=IMAGE2, k8s="rolloutTimeout: 3")  # a good image finishes the rollout
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    _spec(tmp_path, cluster, image=STUCK, k8s="rolloutTimeout: 3, rollback: true")
    back = recon("apply", "--auto-approve", cwd=tmp_path, env=ENV)
    assert back.rc == 1 and "rolled back: the previous template is restored" in back.out, back.text
    assert "progress deadline exceeded" in back.out
    assert cluster.deployment("churn")["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE2
    again = recon("plan", cwd=tmp_path, env=ENV)  # the spec still wants the stuck image: the plan says so
    assert f"image: {IMAGE2} → {STUCK}" in again.out, again.out


def test_a_new_pod_that_keeps_exiting_fails_the_rollout_at_its_third_restart(tmp_path: Path, cluster: Cluster) -> None:
    """A new template whose process exits at once: the kubelet restarts it with back-off (CrashLoopBackOff) and
    recon waited for the whole progress deadline (rolloutTimeout, 300 s by default) before it said "progress
    deadline exceeded". Now the third restart of a pod of the new ReplicaSet fails the rollout, naming the pod,
    the container and its last exit code; the previous template is restored and the old replicas keep serving.
    (On the test server restarts come 0.3 s apart; a real kubelet's back-off makes it about a minute.)"""
    crash = "  command: [sh, -c, 'echo dying; exit 3']\n"
    _spec(tmp_path, cluster, k8s="rolloutTimeout: 600, rollback: true")
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    _spec(tmp_path, cluster, k8s="rolloutTimeout: 600, rollback: true", extra=crash)
    got = recon("apply", "--auto-approve", cwd=tmp_path, env=ENV)
    assert got.rc == 1 and "keeps exiting: restarted" in got.out and "last exit code 3" in got.out, got.text
    assert "rolled back: the previous template is restored" in got.out and "progress deadline" not in got.out
    assert f"kubectl logs -n {cluster.namespace} churn-" in got.out and "--previous" in got.out
    live = cluster.deployment("churn")["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in live, live  # the template before it
    again = recon("plan", cwd=tmp_path, env=ENV)  # the spec still wants the command: the plan says so
    assert again.rc == 0 and "command" in again.out, again.out


def test_prune_only_with_the_flag(tmp_path: Path, cluster: Cluster) -> None:
    _spec(tmp_path, cluster)
    _spec(tmp_path, cluster, name="scorer", replicas=1)
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    (tmp_path / "specs" / "scorer.yaml").unlink()
    kept = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV)
    assert kept.rc == 0 and cluster.names("deployment") == ["churn", "scorer"], kept.text
    pruned = recon("plan", "--prune", cwd=tmp_path, env=ENV)
    for kind in ("configmap", "secret", "deployment", "service"):
        assert f"- delete  Model/scorer/{kind}" in pruned.out, pruned.out
    assert recon("apply", "--prune", "--auto-approve", cwd=tmp_path, env=ENV).rc == 0
    assert cluster.names("deployment") == ["churn"] and cluster.names("secret") == ["churn-env"]
    assert recon("plan", "--prune", "--detailed-exitcode", cwd=tmp_path, env=ENV).rc == 0


def test_a_missing_namespace_and_an_unreachable_server_are_one_clear_message(tmp_path: Path,
                                                                           cluster: Cluster) -> None:
    _spec(tmp_path, cluster)
    text = (tmp_path / "specs" / "churn.yaml").read_text().replace(cluster.namespace, "nowhere")
    (tmp_path / "specs" / "churn.yaml").write_text(text)
    missing = recon("plan", cwd=tmp_path, env=ENV)
    assert missing.rc == 1 and "the namespace nowhere does not exist" in missing.text, missing.text
    assert "Traceback" not in missing.text
    if cluster.peer:  # a server that answers, but not as the Kubernetes API
        wrong = tmp_path / "wrong-kubeconfig"
        wrong.write_text(cluster.kubeconfig.read_text().replace(cluster.peer.url, cluster.peer.url + "/elsewhere"))
        (tmp_path / "specs" / "churn.yaml").write_text(text.replace(str(cluster.kubeconfig), str(wrong)))
        listed = recon("plan", cwd=tmp_path, env=ENV)
        assert listed.rc == 1 and "cannot list the Deployments of namespace nowhere (404" in listed.text, listed.text
        assert "Traceback" not in listed.text and "internal error" not in listed.text
        (tmp_path / "specs" / "churn.yaml").write_text(text)
        cluster.peer.stop()
        gone = recon("plan", cwd=tmp_path, env=ENV)
        assert gone.rc == 1 and "cannot be reached" in gone.text and "Traceback" not in gone.text, gone.text
        cluster.peer = None


def test_validate_checks_the_objects_against_the_kubernetes_schemas(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Offline: no cluster and no secrets needed."""
    from providers.kube import schemas
    from providers.kube.manifests import Obj

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "m.yaml").write_text(
        "apiVersion: recon/v1\nkind: Model\nmetadata: {name: churn}\nspec:\n  runtime: kubernetes\n"
        f"  image: {IMAGE1}\n  port: 8080\n  env: {{A: b, T: {{valueFrom: {{env: UNSET_TOKEN}}}}}}\n"
        "  resources: {gpus: 1}\n")
    ok = cli("validate", "specs")
    assert ok.rc == 0 and "4 Kubernetes objects valid against the schemas of Kubernetes 1." in ok.out, ok.text

    build = schemas.build

    def broken(*args: Any, **kwargs: Any) -> list[Obj]:
        made = build(*args, **kwargs)
        next(o for o in made if o.kind == "Deployment").config["spec"]["replicas"] = "two"
        return made

    monkeypatch.setattr(schemas, "build", broken)
    bad = cli("validate", "specs")
    assert bad.rc == 1 and "specs/m.yaml:4:1: spec: the Deployment recon makes of it is not valid Kubernetes" in bad.err
    assert "spec.replicas: 'two' is not of type" in bad.err and "Traceback" not in bad.text


def test_the_example_on_the_test_cluster(tmp_path: Path, cluster: Cluster) -> None:
    """examples/model-kubernetes, in this test's namespace, the cluster found through $KUBECONFIG."""
    from tests.conftest import ROOT

    text = (ROOT / "examples" / "model-kubernetes" / "model.yaml").read_text()
    assert "namespace: ml\n" in text
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "model.yaml").write_text(text.replace("namespace: ml\n", f"namespace: {cluster.namespace}\n")
                                                .replace("registry.example/ml/churn-model:1.3.0", IMAGE1))
    env = {"KUBECONFIG": str(cluster.kubeconfig), "CHURN_API_KEY": SECRET}
    applied = recon("apply", "ex", "--auto-approve", cwd=tmp_path, env=env)
    assert applied.rc == 0 and SECRET not in applied.text, applied.text
    dep = cluster.deployment("churn-model")
    assert dep["spec"]["replicas"] == 3 and dep["status"]["availableReplicas"] == 3
    assert recon("plan", "ex", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0


def test_two_projects_in_one_namespace_never_plan_or_prune_each_other(tmp_path: Path, cluster: Cluster) -> None:
    """Issue 19 (4): a project's plan listed another project's Model as "no spec declares it", and its --prune would
    delete it. Objects carry their stack (repository and spec root); plan and prune see only their own."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _spec(one, cluster, name="churn")
    _spec(two, cluster, name="scorer", replicas=1)
    assert recon("apply", "--auto-approve", cwd=one, env=ENV).rc == 0
    assert recon("apply", "--auto-approve", cwd=two, env=ENV).rc == 0
    for cwd in (one, two):
        got = recon("plan", "--prune", "--detailed-exitcode", cwd=cwd, env=ENV)
        assert got.rc == 0 and "no spec declares" not in got.out, got.text
    (one / "specs" / "churn.yaml").write_text((one / "specs" / "churn.yaml").read_text().replace(
        "name: churn,", "name: fraud,"))  # churn leaves project one's specs
    pruned = recon("apply", "--prune", "--auto-approve", cwd=one, env=ENV)
    assert pruned.rc == 0 and "Model/churn/deployment" in pruned.out and "Model/scorer" not in pruned.out, pruned.text
    assert cluster.names("deployment") == ["fraud", "scorer"]
    # the same Model name in both: the second project is refused, naming the first
    _spec(two, cluster, name="fraud")
    clash = recon("plan", cwd=two, env=ENV)
    assert clash.rc == 1 and "was made from another project" in clash.err and str(one) in clash.err, clash.text
    assert "Traceback" not in clash.err


def test_an_object_another_hand_made_under_the_model_s_name_is_planned_as_it_is_applied(
        tmp_path: Path, cluster: Cluster) -> None:
    """A ConfigMap made with kubectl under a Model's name (no recon label, so not in the plan's list) was
    planned as "create"; the apply then met it: the ConfigMap failed with a conflict, and the Deployment rolled
    anyway, its pods reading the other team's values. The plan says the object is there and whose fields
    conflict, shows none of its live values, and the Deployment waits for its ConfigMap."""
    cluster.core.create_namespaced_config_map(cluster.namespace, {
        "metadata": {"name": "churn"}, "data": {"MODEL_VERSION": "postgres://admin:their-password@db/x"}},
        field_manager="kubectl")
    _spec(tmp_path, cluster)
    planned = recon("plan", cwd=tmp_path, env=ENV)
    assert planned.rc == 0, planned.text
    assert f"~ update  Model/churn/configmap @ k8s/{cluster.namespace}" in planned.out, planned.out
    assert "recon did not make" in planned.out and "kubectl owns" in planned.out, planned.out
    assert "their-password" not in planned.text
    applied = recon("apply", "--auto-approve", cwd=tmp_path, env=ENV)
    assert applied.rc == 1 and "their-password" not in applied.text, applied.text
    assert "conflict: kubectl owns" in applied.out, applied.out
    assert "its ConfigMap was not applied" in applied.out, applied.out
    assert cluster.names("deployment") == [], "the Deployment rolled without its ConfigMap"
    forced = recon("apply", "--auto-approve", "--force-conflicts", cwd=tmp_path, env=ENV)
    assert forced.rc == 0, forced.text
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=ENV).rc == 0
