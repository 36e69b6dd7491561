"""A stand-in for a language-model planner (RECON_DRAFT_PLANNER=tests.e2e.draft_planner:Planner): it calls
no model; it returns what such a planner might, good or bad, to show its output is validated like any spec."""

from __future__ import annotations

from pathlib import Path

from reconciler.draft.catalog import Catalog
from reconciler.draft.model import Draft, Edit


class Planner:
    def draft(self, request: str, catalog: Catalog, specs_dir: Path, today: str) -> Draft:
        replicas: object = "many" if "many" in request else 2
        doc = {"apiVersion": "recon/v1", "kind": "Model", "metadata": {"name": "llm-model"},
               "spec": {"runtime": "docker", "image": "registry.local/llm:1", "port": 18500, "replicas": replicas}}
        return Draft(request, [Edit(specs_dir / "llm-model.yaml", "Model", "llm-model", doc)])
