"""Issue 15: locks are keyed by what is changed. Two specs naming one cluster by two kubeconfig contexts (or two
kubeconfig files) change the same namespace: they must take turns, so their lock keys are equal."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from providers.contract import Instance
from providers.kube.client import Where
from providers.kube.provider import KubeProvider, target_of

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: ci
clusters:
  - {name: prod, cluster: {server: "https://10.0.0.1:6443/"}}
  - {name: other, cluster: {server: "https://10.0.0.2:6443"}}
contexts:
  - {name: ci, context: {cluster: prod, user: robot}}
  - {name: laptop, context: {cluster: prod, user: me}}
  - {name: elsewhere, context: {cluster: other, user: me}}
users: []
"""


def _key(where: Where, namespace: str = "models") -> str:
    inst = Instance("Model/m/deployment", target_of(where, namespace), "Model/m", "deployment",
                    SimpleNamespace(where=where), "")  # type: ignore[arg-type]  # lock_key reads where alone
    return KubeProvider().lock_key(inst)  # type: ignore[arg-type]


def test_one_cluster_under_two_names_is_one_lock(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(KUBECONFIG)
    copy = tmp_path / "copy"
    copy.write_text(KUBECONFIG)
    ci = _key(Where(str(config), "ci"))
    assert ci == "k8s/https://10.0.0.1:6443/models"
    assert _key(Where(str(config), "laptop")) == ci
    assert _key(Where(str(copy), None)) == ci  # the current context of another file
    assert _key(Where(str(config), "elsewhere")) != ci
    assert _key(Where(str(config), "ci"), "other-ns") != ci
    assert _key(Where(str(tmp_path / "missing"), "ci")).startswith("k8s/k8s:")  # unreadable: the names, as before
