"""Offline validation of the objects a Model becomes on Kubernetes, against the API's own OpenAPI
schemas as kubernetes-validate bundles them (no cluster needed): `recon validate` runs it."""

from __future__ import annotations

from pathlib import Path

from providers.kube.manifests import build
from reconciler.errors import Diagnostic
from reconciler.project import Project
from specs.model import ModelSpec


def check(project: Project) -> tuple[int, str, list[Diagnostic]]:
    """(objects checked, Kubernetes version of the schemas, problems) for every Model on kubernetes."""
    models = [s for s in project.of_kind("Model") if isinstance(s.body, ModelSpec) and s.body.runtime == "kubernetes"]
    if not models:
        return 0, "", []
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
