"""recon's Kubernetes diff follows list and map semantics read from Kubernetes' published OpenAPI (issue 20 (1)),
for the cluster's version; the paths of fields it owns (managedFields) are written as its diff writes them."""

from __future__ import annotations

from providers.kube import semantics
from providers.kube.manifests import flatten, owned_paths, root

DNS = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dns"}, "spec": {
    "selector": {"matchLabels": {"app": "dns"}},
    "template": {"spec": {"containers": [{
        "name": "dns", "image": "img:1",
        "ports": [{"containerPort": 53, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}],
        "envFrom": [{"configMapRef": {"name": "a"}}], "args": ["-v"]}]}}}}


def test_map_lists_by_all_their_keys_atomic_lists_and_maps_whole() -> None:
    flat = flatten(DNS, root(DNS, "1.31.0"))
    c = "spec.template.spec.containers[name=dns]"
    # the old table keyed container ports on containerPort alone: 53/TCP and 53/UDP were one field
    assert flat[f"{c}.ports[containerPort=53,protocol=TCP].protocol"] == "TCP"
    assert flat[f"{c}.ports[containerPort=53,protocol=UDP].protocol"] == "UDP"
    assert flat[f"{c}.envFrom"] == [{"configMapRef": {"name": "a"}}]  # atomic: compared, and owned, whole
    assert flat[f"{c}.args"] == ["-v"]
    assert flat["spec.selector"] == {"matchLabels": {"app": "dns"}}  # an atomic map (LabelSelector)


def test_owned_paths_name_fields_as_the_diff_does() -> None:
    fields_v1 = {"f:spec": {"f:selector": {}, "f:template": {"f:spec": {"f:containers": {'k:{"name":"dns"}': {
        ".": {}, "f:image": {}, "f:envFrom": {}, "f:ports": {
            'k:{"protocol":"UDP","containerPort":53}': {".": {}, "f:containerPort": {}, "f:protocol": {}}}}}}}}}
    owned = owned_paths(fields_v1)
    flat = flatten(DNS, root(DNS, "1.31.0"))
    assert owned <= set(flat), owned - set(flat)


def test_the_schema_of_the_cluster_s_version() -> None:
    have = semantics.versions()
    assert "1.31.0" in have
    assert semantics.choose("v1.31.4-gke.1200") == "1.31.0"
    assert semantics.choose("v1.99.0") == have[-1]  # newer than any here: the newest
    assert semantics.choose("v1.10.0") == have[0]
    assert semantics.choose(None) == have[-1]
    assert semantics.kind("1.31.0", "v1", "Service") is not None
    assert semantics.kind("1.31.0", "v1", "NoSuchKind") is None
