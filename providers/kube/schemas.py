"""Offline validation of the objects a Model becomes on Kubernetes, against the API's own OpenAPI
schemas as kubernetes-validate bundles them (no cluster needed): `recon validate` runs it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from providers.kube.manifests import build
from specs.errors import Diagnostic
from specs.model import ModelSpec
from specs.project import Spec


def check(models: Sequence[Spec]) -> tuple[int, str, list[Diagnostic]]:
    """(objects checked, Kubernetes version of the schemas, problems) for these Models on kubernetes."""
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError, latest_version

    version = latest_version()
    checked = 0
    out = []
    for spec in models:
        assert isinstance(spec.body, ModelSpec)
        for obj in build(spec.name, spec.body, spec.labels, Path(spec.doc.file).parent, secrets=False):
            checked += 1
            try:
                kubernetes_validate.validate(obj.config, version, strict=True)
            except ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                line, column = spec.doc.position(("spec",))
                out.append(Diagnostic(f"the {obj.kind} recon makes of it is not valid Kubernetes {version}: "
                                      f"{where}: {exc.message}", spec.doc.file, line, column, "spec",
                                      "change the Model's settings that make this field"))
    return checked, version, out
