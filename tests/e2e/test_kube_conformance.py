"""The Kubernetes test API server as a stock kubectl (Debian's) and plain HTTP see it (issue 20): each
expectation is what a real API server answers, with where that is documented."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers import kube_api

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "img:1"}]}
"""


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[tuple[kube_api.KubePeer, Path]]:
    p = kube_api.start()
    try:
        yield p, p.kubeconfig(tmp_path / "kubeconfig")
    finally:
        p.stop()


def kubectl(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    found = shutil.which("kubectl")
    assert found, "kubectl is missing: run scripts/setup (Debian's kubectl)"
    return subprocess.run([found, "--kubeconfig", str(config), *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def http(peer: kube_api.KubePeer, method: str, path: str, body: Any, ctype: str = "application/json"
         ) -> tuple[int, dict[str, Any]]:
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    req = urllib.request.Request(peer.url + path, data=data, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_delete_with_a_server_dry_run_deletes_nothing_and_preconditions_hold(
        peer: tuple[kube_api.KubePeer, Path]) -> None:
    """kubectl delete --dry-run=server sends DeleteOptions{dryRun: [All]} in the body; the object stays
    (kubernetes.io/docs/reference/using-api/api-concepts/#dry-run). A precondition on uid or resourceVersion
    that does not hold is 409 (DeleteOptions.preconditions)."""
    server, config = peer
    assert kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=DEPLOYMENT).returncode == 0
    dry = kubectl(config, "delete", "deployment", "web", "--dry-run=server")
    assert dry.returncode == 0 and "(server dry run)" in dry.stdout, dry.stdout + dry.stderr
    assert kubectl(config, "get", "deployment", "web").returncode == 0  # still there
    status, said = http(server, "DELETE", "/apis/apps/v1/namespaces/default/deployments/web",
                        {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-its-uid"}})
    assert status == 409 and "Precondition failed: UID in precondition: not-its-uid" in said["message"], said
    gone = kubectl(config, "delete", "deployment", "web")
    assert gone.returncode == 0 and 'deployment.apps "web" deleted' in gone.stdout
    assert kubectl(config, "get", "deployment", "web").returncode != 0


def test_secret_string_data_is_folded_into_data(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """stringData is write-only: merged into data, base64-encoded, and never returned
    (kubernetes.io/docs/concepts/configuration/secret/#restriction-names-data)."""
    _, config = peer
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: default}\nstringData: {token: abc}\n"
    assert kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=secret).returncode == 0
    got = json.loads(kubectl(config, "get", "secret", "s", "-o", "json").stdout)
    assert got["data"] == {"token": "YWJj"} and "stringData" not in got


def test_a_body_of_another_kind_or_version_than_its_url_is_refused(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """A real server decodes the body against the URL's group, version and kind: another apiVersion, another
    kind or none is 400 BadRequest; an apply that pins a resourceVersion that moved is 409 Conflict."""
    server, _ = peer
    base = "/api/v1/namespaces/default/configmaps"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    assert http(server, "POST", base, cm)[0] == 201
    for body, said in (({**cm, "kind": "Secret", "metadata": {"name": "d"}}, "the kind in the data (Secret)"),
                       ({**cm, "apiVersion": "apps/v1", "metadata": {"name": "d"}}, "the API version in the data"),
                       ({k: v for k, v in cm.items() if k != "kind"}, "Object 'Kind' is missing")):
        status, answer = http(server, "PATCH", f"{base}/c?fieldManager=t", json.dumps(body),
                              "application/apply-patch+yaml")
        assert status == 400 and said in answer["message"], answer
        if "kind" in body:  # a create may leave both out (the URL's are taken), never name others
            status, answer = http(server, "POST", base, body)
            assert status == 400 and said in answer["message"], answer
    bare = {"metadata": {"name": "e"}, "data": {"a": "1"}}
    assert http(server, "POST", base, bare)[0] == 201
    stale = {**cm, "metadata": {"name": "c", "resourceVersion": "1"}, "data": {"a": "2"}}
    status, answer = http(server, "PATCH", f"{base}/c?fieldManager=t", json.dumps(stale),
                          "application/apply-patch+yaml")
    assert status == 409 and "the object has been modified" in answer["message"], answer


def test_fields_that_cannot_change_once_set_are_422(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """A Deployment's spec.selector (apps/v1 ValidateDeploymentUpdate: "field is immutable") and a Service's
    clusterIP once allocated (core/v1 ValidateServiceUpdate: "may not change once set") stay; a change is 422."""
    _, config = peer
    assert kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=DEPLOYMENT).returncode == 0
    moved = DEPLOYMENT.replace("{app: web}", "{app: web2}")
    got = kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=moved)
    assert got.returncode != 0 and "spec.selector" in got.stderr and "field is immutable" in got.stderr, got.stderr
    service = ("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n"
               "spec: {selector: {app: web}, ports: [{port: 80}]}\n")
    assert kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=service).returncode == 0
    ip = kubectl(config, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-",  # the same IP: fine
                   stdin=service.replace("ports:", f"clusterIP: {ip}, ports:")).returncode == 0
    other = service.replace("ports:", "clusterIP: 10.96.200.200, ports:")
    got = kubectl(config, "apply", "--server-side", "--validate=false", "--force-conflicts", "-f", "-", stdin=other)
    assert got.returncode != 0 and "may not change once set" in got.stderr, got.stderr


def test_quantities_are_validated_and_stored_in_canonical_form(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """A resource quantity is stored as resource.Quantity writes it back: 1024Mi as 1Gi, 0.5 as 500m; one that is
    not a quantity is 422 (k8s.io/apimachinery/pkg/api/resource: quantities must match the regular expression)."""
    _, config = peer
    sized = DEPLOYMENT.replace('image: "img:1"}', 'image: "img:1", resources: {limits: {memory: 1024Mi, cpu: "0.5"}, '
                               'requests: {memory: 1536Mi, cpu: "2000m"}}}')
    got = kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=sized)
    assert got.returncode == 0, got.stderr
    stored = json.loads(kubectl(config, "get", "deployment", "web", "-o", "json").stdout)
    resources = stored["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"limits": {"memory": "1Gi", "cpu": "500m"}, "requests": {"memory": "1536Mi", "cpu": "2"}}
    bad = kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-",
                  stdin=sized.replace("memory: 1024Mi", 'memory: "2 gigs"'))
    assert bad.returncode != 0 and "quantities must match the regular expression" in bad.stderr, bad.stderr


def test_an_apply_that_drops_a_container_removes_it(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """Server-side apply removes what the applier stopped applying and nobody else owns: the whole element of a
    keyed list (containers by name), defaulted fields with it; the test server left an element without its name
    and answered 422 (kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy)."""
    _, config = peer
    two = DEPLOYMENT.replace('containers: [{name: web, image: "img:1"}]',
                             'containers: [{name: web, image: "img:1"}, {name: side, image: "img:2"}]')
    assert kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=two).returncode == 0
    got = kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=DEPLOYMENT)
    assert got.returncode == 0, got.stderr
    stored = json.loads(kubectl(config, "get", "deployment", "web", "-o", "json").stdout)
    assert [c["name"] for c in stored["spec"]["template"]["spec"]["containers"]] == ["web"]


def test_a_field_another_manager_removed_is_nobody_s(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """A field removed by an update leaves every manager's set (structured-merge-diff), so the applier that set
    it owns nothing of it and applying it again is no conflict."""
    _, config = peer
    labelled = DEPLOYMENT.replace("metadata: {name: web, namespace: default}",
                                  "metadata: {name: web, namespace: default, labels: {tier: a}}")
    assert kubectl(config, "apply", "--server-side", "--field-manager", "team", "--validate=false", "-f", "-",
                   stdin=labelled).returncode == 0
    assert kubectl(config, "label", "deployment", "web", "tier-").returncode == 0
    stored = json.loads(kubectl(config, "get", "deployment", "web", "-o", "json", "--show-managed-fields").stdout)
    team = next(e for e in stored["metadata"]["managedFields"] if e["manager"] == "team")
    assert "f:labels" not in team["fieldsV1"].get("f:metadata", {}), team
    again = kubectl(config, "apply", "--server-side", "--field-manager", "team", "--validate=false", "-f", "-",
                    stdin=labelled)
    assert again.returncode == 0, again.stderr


def test_finalizers_foreground_deletion_and_terminating_namespaces(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """Deletion is not always at once (kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/):
    an object with finalizers gets a deletionTimestamp and stays until they are removed; foreground cascading
    adds foregroundDeletion until its dependents are gone; a namespace turns Terminating, refuses new content,
    and goes once its contents have."""
    import time

    _, config = peer
    held = DEPLOYMENT.replace("metadata: {name: web, namespace: default}",
                              "metadata: {name: web, namespace: default, finalizers: [example.com/hold]}")
    assert kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=held).returncode == 0
    assert kubectl(config, "delete", "deployment", "web", "--wait=false").returncode == 0
    stored = json.loads(kubectl(config, "get", "deployment", "web", "-o", "json").stdout)
    assert stored["metadata"]["deletionTimestamp"] and stored["metadata"]["finalizers"] == ["example.com/hold"]
    assert kubectl(config, "patch", "deployment", "web", "--type=merge", "-p",
                   '{"metadata": {"finalizers": null}}').returncode == 0

    def gone(*what: str) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if kubectl(config, "get", *what).returncode != 0:
                return True
            time.sleep(0.1)
        return False

    assert gone("deployment", "web")
    assert kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=DEPLOYMENT).returncode == 0
    assert kubectl(config, "delete", "deployment", "web", "--cascade=foreground", "--wait=false").returncode == 0
    assert gone("deployment", "web")

    assert kubectl(config, "create", "namespace", "scratch").returncode == 0
    kept = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: scratch, finalizers: [example.com/hold]}\n"
    assert kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=kept).returncode == 0
    assert kubectl(config, "delete", "namespace", "scratch", "--wait=false").returncode == 0
    time.sleep(0.5)  # the namespace controller has run: the ConfigMap is being deleted, held by its finalizer
    phase = kubectl(config, "get", "namespace", "scratch", "-o", "jsonpath={.status.phase}")
    refused = kubectl(config, "create", "configmap", "d", "-n", "scratch")
    assert phase.stdout == "Terminating" and refused.returncode != 0 and "being terminated" in refused.stderr
    held_cm = json.loads(kubectl(config, "get", "configmap", "c", "-n", "scratch", "-o", "json").stdout)
    assert held_cm["metadata"]["deletionTimestamp"]
    assert kubectl(config, "patch", "configmap", "c", "-n", "scratch", "--type=merge", "-p",
                   '{"metadata": {"finalizers": null}}').returncode == 0
    assert gone("configmap", "c", "-n", "scratch") and gone("namespace", "scratch")


def test_field_selectors(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """Every kind selects on metadata.name and metadata.namespace; a field its kind does not index is 400
    "field label not supported" (kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/)."""
    _, config = peer
    assert kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=DEPLOYMENT).returncode == 0
    other = DEPLOYMENT.replace("name: web, namespace", "name: api, namespace")
    assert kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=other).returncode == 0
    one = kubectl(config, "get", "deployments", "--field-selector", "metadata.name=web", "-o", "name")
    assert one.returncode == 0 and one.stdout.split() == ["deployment.apps/web"], one.stdout + one.stderr
    rest = kubectl(config, "get", "deployments", "--field-selector", "metadata.name!=web", "-o", "name")
    assert rest.stdout.split() == ["deployment.apps/api"]
    bad = kubectl(config, "get", "deployments", "--field-selector", "spec.replicas=1")
    assert bad.returncode != 0 and "field label not supported: spec.replicas" in bad.stderr, bad.stderr


DNS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: dns, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: dns}}
  template:
    metadata: {labels: {app: dns}}
    spec:
      containers:
        - name: dns
          image: "img:1"
          ports: [{containerPort: 53, protocol: TCP, name: dns-tcp}, {containerPort: 53, protocol: UDP, name: dns}]
          envFrom: [{configMapRef: {name: a}}]
"""


def test_list_semantics_are_those_of_kubernetes_published_schema(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """Issue 20 (1): the server and recon shared one hand-written table, which keyed container ports on
    containerPort alone, so 53/TCP and 53/UDP collapsed into one. Kubernetes' OpenAPI marks Container.ports
    `x-kubernetes-list-type: map` with `x-kubernetes-list-map-keys: [containerPort, protocol]` and
    Container.envFrom `atomic` (kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy)."""
    _, config = peer
    done = kubectl(config, "apply", "--server-side", "--validate=false", "-f", "-", stdin=DNS)
    assert done.returncode == 0, done.stderr
    got = json.loads(kubectl(config, "get", "deployment", "dns", "-o", "json", "--show-managed-fields").stdout)
    [container] = got["spec"]["template"]["spec"]["containers"]
    assert [(p["containerPort"], p["protocol"]) for p in container["ports"]] == [(53, "TCP"), (53, "UDP")]
    [entry] = got["metadata"]["managedFields"]
    fields = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"dns"}']
    assert {'k:{"containerPort":53,"protocol":"TCP"}', 'k:{"containerPort":53,"protocol":"UDP"}'} <= set(
        fields["f:ports"]), fields["f:ports"]
    assert fields["f:envFrom"] == {}  # atomic: one leaf, owned whole
    # another manager's envFrom replaces the list whole (atomic), where a map-list would have merged
    other = DNS.replace("[{configMapRef: {name: a}}]", "[{configMapRef: {name: b}}]")
    clash = kubectl(config, "apply", "--server-side", "--validate=false", "--field-manager", "other", "-f", "-",
                    stdin=other)
    assert clash.returncode != 0 and "envFrom" in clash.stderr, clash.stderr  # a conflict on the whole list
    forced = kubectl(config, "apply", "--server-side", "--validate=false", "--field-manager", "other",
                     "--force-conflicts", "-f", "-", stdin=other)
    assert forced.returncode == 0, forced.stderr
    got = json.loads(kubectl(config, "get", "deployment", "dns", "-o", "json").stdout)
    assert got["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [{"configMapRef": {"name": "b"}}]


def test_unknown_fields_follow_field_validation(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """Issue 20 (5): unknown fields were stored, even with fieldValidation=Strict. Strict is a 400 naming each;
    Warn (the default) is a Warning header each; all three drop them
    (kubernetes.io/docs/reference/using-api/api-concepts/#field-validation)."""
    server, config = peer
    bad = DEPLOYMENT.replace("replicas: 1", "replicas: 1\n  colour: blue")
    strict = kubectl(config, "apply", "--server-side", "--validate=strict", "-f", "-", stdin=bad)
    assert strict.returncode != 0 and ".spec.colour: field not declared in schema" in strict.stderr, strict.stderr
    assert kubectl(config, "get", "deployment", "web").returncode != 0  # nothing made
    body = json.loads(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                                  "data": {"a": "1"}, "colour": "blue"}))
    status, said = http(server, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", body)
    assert status == 400 and 'strict decoding error: unknown field "colour"' in said["message"], said
    req = urllib.request.Request(server.url + "/api/v1/namespaces/default/configmaps", method="POST",
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201 and 'unknown field \\"colour\\"' in resp.headers["Warning"], resp.headers
        assert "colour" not in json.loads(resp.read())
    warned = kubectl(config, "apply", "--server-side", "--validate=warn", "-f", "-", stdin=bad)
    assert warned.returncode == 0 and ".spec.colour: field not declared in schema" in warned.stderr, warned.stderr
    assert "colour" not in kubectl(config, "get", "deployment", "web", "-o", "json").stdout


TWO = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: pair, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: pair}}
  template:
    metadata: {labels: {app: pair}}
    spec:
      containers:
        - {name: web, image: "img:1", env: [{name: A, value: "1"}, {name: B, value: "2"}]}
        - {name: side, image: "side:1"}
"""


def test_openapi_client_side_apply_explain_and_edit(peer: tuple[kube_api.KubePeer, Path],
                                                    tmp_path: Path) -> None:
    """Issue 20 (11): with no /openapi/v2 or /v3, a stock `kubectl apply` failed without --validate=false and
    `explain` failed; client-side apply's strategic merge patches stored their `$setElementOrder/…` and `$patch`
    directives inside objects. /openapi/v3 is an index of group-version documents whose PATCH operations name the
    fieldValidation parameter (kubectl then validates on the server) and whose schemas carry
    x-kubernetes-group-version-kind (kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-v3);
    directives are applied, never stored (kubernetes.io/docs/tasks/manage-kubernetes-objects/
    update-api-object-kubectl-patch/#notes-on-the-strategic-merge-patch)."""
    _, config = peer
    made = kubectl(config, "apply", "-f", "-", stdin=TWO)  # client-side, validated: no --validate=false
    assert made.returncode == 0 and "deployment.apps/pair created" in made.stdout, made.stderr
    changed = TWO.replace('"img:1"', '"img:2"').replace('        - {name: side, image: "side:1"}\n', "")
    again = kubectl(config, "apply", "-f", "-", stdin=changed)  # a patch with $setElementOrder and $patch: delete
    assert again.returncode == 0 and "configured" in again.stdout, again.stderr
    text = kubectl(config, "get", "deployment", "pair", "-o", "json").stdout
    got = json.loads(text)
    assert [c["name"] for c in got["spec"]["template"]["spec"]["containers"]] == ["web"]
    assert got["spec"]["template"]["spec"]["containers"][0]["image"] == "img:2"
    assert "$setElementOrder" not in text and '"$patch"' not in text.replace("\\", ""), text
    assert kubectl(config, "diff", "-f", "-", stdin=changed).returncode == 0  # nothing differs
    explained = kubectl(config, "explain", "deployment.spec.template.spec.containers.ports")
    assert explained.returncode == 0 and "containerPort\t<integer> -required-" in explained.stdout, explained.stdout
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/img:2/img:3/' \"$1\"\n")
    editor.chmod(0o755)
    edited = subprocess.run(["kubectl", "--kubeconfig", str(config), "edit", "deployment", "pair"], text=True,
                            capture_output=True, timeout=60, env={**os.environ, "KUBE_EDITOR": str(editor)})
    assert edited.returncode == 0 and "edited" in edited.stdout, edited.stderr
    assert "img:3" in kubectl(config, "get", "deployment", "pair", "-o", "jsonpath={..image}").stdout
    index = json.loads(kubectl(config, "get", "--raw", "/openapi/v3").stdout)
    assert {"api/v1", "apis/apps/v1"} <= set(index["paths"])
    v2 = json.loads(kubectl(config, "get", "--raw", "/openapi/v2").stdout)
    assert v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]


def test_replica_sets_rollout_history_undo_and_the_progress_deadline(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """Issue 20 (7): no ReplicaSets and no progress deadline, so `kubectl rollout history/undo` failed and a
    stalled rollout never failed. Each template is a ReplicaSet owned by its Deployment and numbered by
    deployment.kubernetes.io/revision; undo takes an older one back under the next revision; a rollout that
    makes no progress for progressDeadlineSeconds is Progressing=False, ProgressDeadlineExceeded
    (kubernetes.io/docs/concepts/workloads/controllers/deployment/#rolling-back-a-deployment and
    #failed-deployment); ReplicaSets go with their Deployment (garbage collection)."""
    _, config = peer
    web = DEPLOYMENT.replace("replicas: 1", "replicas: 2\n  progressDeadlineSeconds: 2")
    for image in ("img:1", "img:2"):
        done = kubectl(config, "apply", "--server-side", "-f", "-", stdin=web.replace("img:1", image))
        assert done.returncode == 0, done.stderr
        assert kubectl(config, "rollout", "status", "deployment/web", "--timeout=10s").returncode == 0
    history = kubectl(config, "rollout", "history", "deployment/web")
    assert history.returncode == 0 and [line.split()[0] for line in history.stdout.splitlines()[2:] if line] == [
        "1", "2"], history.stdout
    rs = json.loads(kubectl(config, "get", "rs", "-o", "json").stdout)["items"]
    assert len(rs) == 2 and all(r["metadata"]["ownerReferences"][0]["kind"] == "Deployment" for r in rs)
    assert {r["spec"]["replicas"] for r in rs} == {0, 2}  # the old one scaled down, the new one up
    undo = kubectl(config, "rollout", "undo", "deployment/web")
    assert undo.returncode == 0 and "rolled back" in undo.stdout, undo.stderr
    assert kubectl(config, "rollout", "status", "deployment/web", "--timeout=10s").returncode == 0
    assert kubectl(config, "get", "deployment", "web", "-o", "jsonpath={..image}").stdout == "img:1"
    history = kubectl(config, "rollout", "history", "deployment/web")
    assert [line.split()[0] for line in history.stdout.splitlines()[2:] if line] == ["2", "3"], history.stdout
    stalled = web.replace("img:1", "registry.invalid/never:1")
    clash = kubectl(config, "apply", "--server-side", "-f", "-", stdin=stalled)
    assert clash.returncode != 0 and "image" in clash.stderr, clash.stderr  # the undo's manager owns it now
    assert kubectl(config, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=stalled).returncode == 0
    failed = kubectl(config, "rollout", "status", "deployment/web", "--timeout=15s")
    assert failed.returncode != 0 and 'deployment "web" exceeded its progress deadline' in failed.stderr, failed.stderr
    assert "ImagePullBackOff" in kubectl(config, "get", "pods").stdout  # the new pod, as the kubelet says
    assert kubectl(config, "delete", "deployment", "web").returncode == 0
    deadline = time.monotonic() + 5
    while kubectl(config, "get", "rs", "-o", "name").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not kubectl(config, "get", "rs", "-o", "name").stdout  # collected with their Deployment


def test_a_container_that_keeps_exiting_crash_loops_as_the_kubelet_reports_it(
        peer: tuple[kube_api.KubePeer, Path]) -> None:
    """A new template whose process exits at once: its pod restarts again and again, CrashLoopBackOff with the
    restart count and the last exit code in its status (kubernetes.io/docs/concepts/workloads/pods/
    pod-lifecycle/#container-restarts), the old replica keeps serving, and the rollout fails at its progress
    deadline, as stock kubectl sees them."""
    _, config = peer
    web = DEPLOYMENT.replace("replicas: 1", "replicas: 1\n  progressDeadlineSeconds: 3")
    assert kubectl(config, "apply", "--server-side", "-f", "-", stdin=web).returncode == 0
    assert kubectl(config, "rollout", "status", "deployment/web", "--timeout=10s").returncode == 0
    crashing = web.replace('image: "img:1"}', 'image: "img:1", command: [sh, -c, "echo dying; exit 3"]}')
    assert kubectl(config, "apply", "--server-side", "-f", "-", stdin=crashing).returncode == 0
    deadline = time.monotonic() + 10
    while "CrashLoopBackOff" not in (got := kubectl(config, "get", "pods")).stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "CrashLoopBackOff" in got.stdout and "Running" in got.stdout, got.stdout  # the old one still serves
    pods = json.loads(kubectl(config, "get", "pods", "-o", "json").stdout)["items"]
    [status] = [c for p in pods for c in p["status"]["containerStatuses"] if "waiting" in c["state"]]
    assert status["lastState"]["terminated"]["exitCode"] == 3 and status["restartCount"] >= 1, status
    failed = kubectl(config, "rollout", "status", "deployment/web", "--timeout=15s")
    assert failed.returncode != 0 and 'deployment "web" exceeded its progress deadline' in failed.stderr, failed.stderr


def test_scale_patch_types_and_server_dry_runs(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """kubectl scale (the /scale subresource), kubectl patch of each type, and --dry-run=server on apply and
    patch, which answer what would be stored and store nothing
    (kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/,
    kubernetes.io/docs/reference/using-api/api-concepts/#dry-run)."""
    _, config = peer
    assert kubectl(config, "apply", "--server-side", "-f", "-", stdin=DEPLOYMENT).returncode == 0
    scaled = kubectl(config, "scale", "deployment", "web", "--replicas=3")
    assert scaled.returncode == 0 and "scaled" in scaled.stdout, scaled.stderr

    def get(path: str) -> str:
        return kubectl(config, "get", "deployment", "web", "-o", f"jsonpath={path}").stdout

    assert get("{.spec.replicas}") == "3"
    patches = (("strategic", '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"img:2"}]}}}}'),
               ("merge", '{"metadata":{"labels":{"tier":"front"}}}'),
               ("json", '[{"op":"replace","path":"/spec/replicas","value":2}]'))
    for kind, body in patches:
        done = kubectl(config, "patch", "deployment", "web", "--type", kind, "-p", body)
        assert done.returncode == 0 and "patched" in done.stdout, (kind, done.stderr)
    assert (get("{..image}"), get("{.metadata.labels.tier}"), get("{.spec.replicas}")) == ("img:2", "front", "2")
    version = get("{.metadata.resourceVersion}")
    dry = kubectl(config, "patch", "deployment", "web", "--type", "merge", "-p", '{"spec":{"replicas":7}}',
                  "--dry-run=server", "-o", "jsonpath={.spec.replicas}")
    assert dry.returncode == 0 and dry.stdout == "7", dry.stderr  # what would be stored
    applied = kubectl(config, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-",
                      stdin=DEPLOYMENT.replace("img:1", "img:9"))
    assert applied.returncode == 0 and "(server dry run)" in applied.stdout, applied.stderr
    assert (get("{.spec.replicas}"), get("{..image}"), get("{.metadata.resourceVersion}")) == ("2", "img:2", version)
    bad = kubectl(config, "patch", "deployment", "web", "--type", "json", "-p",
                  '[{"op":"test","path":"/spec/replicas","value":5}]')
    assert bad.returncode != 0  # a failed test op changes nothing (RFC 6902)


def test_watch_streams_changes(peer: tuple[kube_api.KubePeer, Path]) -> None:
    """A watch (kubectl get -w, and kubectl rollout status, which watches) was answered with a list, and kubectl
    warned it could not decode the stream. It is a stream of ADDED/MODIFIED/DELETED events from the version
    asked for (kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes)."""
    _, config = peer
    assert kubectl(config, "apply", "--server-side", "-f", "-", stdin=DEPLOYMENT).returncode == 0
    found = shutil.which("kubectl")
    assert found
    watching = subprocess.Popen([found, "--kubeconfig", str(config), "get", "deployments", "--watch", "-o",
                                 "jsonpath={.metadata.name}={.spec.replicas}{\"\\n\"}"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        assert kubectl(config, "scale", "deployment", "web", "--replicas=4").returncode == 0
        assert kubectl(config, "delete", "deployment", "web").returncode == 0
        time.sleep(1)
    finally:
        watching.terminate()
        out, err = watching.communicate(timeout=10)
    assert "web=1" in out and "web=4" in out, (out, err)
    assert "unable to decode" not in err, err
    assert kubectl(config, "apply", "--server-side", "-f", "-", stdin=DEPLOYMENT).returncode == 0
    status = kubectl(config, "rollout", "status", "deployment/web", "--timeout=10s")
    assert status.returncode == 0 and "successfully rolled out" in status.stdout and "watch" not in status.stderr
