"""The Kubernetes test API server (tests/peers/kube_api.py) through the unmodified official client: the
behaviour recon's tests rely on, checked here so that the peer stays honest."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.peers import kube_api


@pytest.fixture
def apis(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    peer = kube_api.start(settle=0.05)
    api = config.new_client_from_config(str(peer.kubeconfig(tmp_path / "kubeconfig")))
    yield client.AppsV1Api(api), client.CoreV1Api(api)
    api.close()
    peer.stop()


def deployment(name: str = "churn", image: str = "img:1", replicas: int | None = 2) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}},
                            "template": {"metadata": {"labels": {"app": name}},
                                         "spec": {"containers": [{"name": "model", "image": image,
                                                                  "env": [{"name": "A", "value": "1"}]}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"team": "risk"}},
            "spec": spec}


def apply(apps: Any, body: dict[str, Any], manager: str = "recon", **kw: Any) -> dict[str, Any]:
    resp = apps.patch_namespaced_deployment(body["metadata"]["name"], "default", body, field_manager=manager,
                                            _content_type="application/apply-patch+yaml", _preload_content=False,
                                            **kw)
    return json.loads(resp.data)  # type: ignore[no-any-return]


def error(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ApiException) as exc:
        call()
    return exc.value.status, json.loads(exc.value.body)


def test_discovery_defaulting_and_status(apis: tuple[Any, Any]) -> None:
    apps, core = apis
    groups = client.ApisApi(apps.api_client).get_api_versions()
    assert [g.name for g in groups.groups] == ["apps", "batch"]
    made = apply(apps, deployment())
    assert made["spec"]["strategy"]["type"] == "RollingUpdate" and made["spec"]["revisionHistoryLimit"] == 10
    assert made["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert made["metadata"]["generation"] == 1 and made["metadata"]["uid"]
    time.sleep(0.3)
    status = apps.read_namespaced_deployment_status("churn", "default").status
    assert (status.observed_generation, status.available_replicas, status.updated_replicas) == (1, 2, 2)
    svc = core.create_namespaced_service("default", {"metadata": {"name": "churn"},
                                                     "spec": {"selector": {"app": "churn"}, "ports": [{"port": 80}]}})
    assert svc.spec.cluster_ip and svc.spec.ports[0].target_port == 80 and svc.spec.type == "ClusterIP"


def test_label_selectors(apis: tuple[Any, Any]) -> None:
    apps, _ = apis
    for name, team in (("a", "risk"), ("b", "fraud"), ("c", "")):
        body = deployment(name)
        body["metadata"]["labels"] = {"team": team} if team else {}
        apply(apps, body)

    def names(sel: str) -> list[str]:
        return [d.metadata.name for d in apps.list_namespaced_deployment("default", label_selector=sel).items]
    assert names("team=risk") == ["a"] and names("team!=risk") == ["b", "c"]
    assert names("team in (risk,fraud)") == ["a", "b"] and names("team notin (risk)") == ["b", "c"]
    assert names("team") == ["a", "b"] and names("!team") == ["c"]


def test_stale_writes_patches_and_invalid_objects(apis: tuple[Any, Any]) -> None:
    apps, core = apis
    apply(apps, deployment())
    old = apps.read_namespaced_deployment("churn", "default")
    apps.patch_namespaced_deployment("churn", "default", {"metadata": {"labels": {"x": "1"}}})  # strategic merge
    code, status = error(lambda: apps.replace_namespaced_deployment("churn", "default", old))
    assert code == 409 and status["reason"] == "Conflict"
    apps.patch_namespaced_deployment("churn", "default", [{"op": "replace", "path": "/spec/replicas", "value": 3}])
    merged = apps.patch_namespaced_deployment(  # a merge patch replaces lists whole
        "churn", "default", {"spec": {"template": {"spec": {"containers": [{"name": "model", "image": "img:2"}]}}}},
        _content_type="application/merge-patch+json")
    assert merged.spec.replicas == 3 and merged.spec.template.spec.containers[0].env is None
    bad = deployment("other")
    bad["spec"]["selector"]["matchLabels"]["app"] = "nope"
    code, status = error(lambda: apps.create_namespaced_deployment("default", bad))
    assert code == 422 and status["details"]["causes"][0]["field"] == "spec.template.metadata.labels"
    code, _ = error(lambda: core.create_namespaced_config_map("missing", {"metadata": {"name": "x"}}))
    assert code == 404


def test_server_side_apply_ownership_conflicts_force_and_dry_run(apis: tuple[Any, Any]) -> None:
    apps, _ = apis
    made = apply(apps, deployment())
    assert [(m["manager"], m["operation"]) for m in made["metadata"]["managedFields"]] == [("recon", "Apply")]
    dry = apply(apps, deployment(image="img:9"), dry_run="All")
    assert dry["spec"]["template"]["spec"]["containers"][0]["image"] == "img:9"
    assert apps.read_namespaced_deployment("churn", "default").spec.template.spec.containers[0].image == "img:1"
    apps.patch_namespaced_deployment_scale("churn", "default", {"spec": {"replicas": 5}}, field_manager="kubectl")
    code, status = error(lambda: apply(apps, deployment()))
    assert code == 409 and status["details"]["causes"] == [{"reason": "FieldManagerConflict", "field": ".spec.replicas",
                                                            "message": 'conflict with "kubectl" using apps/v1'}]
    same = apply(apps, deployment(replicas=5))  # the same value: shared, no conflict
    assert same["spec"]["replicas"] == 5
    forced = apply(apps, deployment(replicas=2), force=True)
    owners = {m["manager"]: m["fieldsV1"] for m in forced["metadata"]["managedFields"]}
    assert forced["spec"]["replicas"] == 2 and "f:replicas" not in owners.get("kubectl", {}).get("f:spec", {})
    dropped = apply(apps, deployment(replicas=None))  # a field no longer applied, owned by no one else: removed
    assert dropped["spec"]["replicas"] == 1  # and defaulted again
