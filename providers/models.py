"""Models run on Docker or on Kubernetes: this provider hands each Model to the one its runtime names.

Instances on Kubernetes have targets starting with "k8s" (the namespace: k8s/NS or k8s:CONTEXT/NS);
on Docker the target is "docker".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from providers.context import Context
from providers.contract import Change, Instance, Output, Provider, Result
from providers.docker.provider import DockerProvider
from specs.errors import Diagnostic
from specs.model import ModelSpec
from specs.project import Project, Spec


class ModelProvider:
    kinds: ClassVar[tuple[str, ...]] = ("Model",)

    def __init__(self) -> None:
        self.docker = DockerProvider()
        self._kube: Any = None

    @property
    def kube(self) -> Any:
        if self._kube is None:  # the Kubernetes client is imported only when a Model runs there
            from providers.kube.provider import KubeProvider

            self._kube = KubeProvider()
        return self._kube

    def _of(self, target: str) -> Any:
        return self.kube if target.startswith("k8s") else self.docker

    def expand(self, spec: Spec, project: Project) -> list[Instance]:
        body = spec.body
        assert isinstance(body, ModelSpec)
        return (self.kube if body.runtime == "kubernetes" else self.docker).expand(spec, project)

    def orphans(self, specs: Sequence[Spec], ctx: Context, prune: bool) -> list[Instance]:
        on_kube = [s for s in specs if isinstance(s.body, ModelSpec) and s.body.runtime == "kubernetes"]
        out: list[Instance] = []
        if len(on_kube) < len(specs) or (prune and self.docker.configured()):
            out += self.docker.orphans({s.address for s in specs if s not in on_kube}, ctx, prune)
        if on_kube:
            out += self.kube.orphans(on_kube, ctx, prune)
        return out

    def validate(self, specs: Sequence[Spec]) -> tuple[list[str], list[Diagnostic]]:
        """The objects of Models on Kubernetes against the Kubernetes API's schemas, offline."""
        on_kube = [s for s in specs if isinstance(s.body, ModelSpec) and s.body.runtime == "kubernetes"]
        if not on_kube:
            return [], []
        from providers.kube.schemas import check

        checked, version, problems = check(on_kube)
        return [f"{checked} Kubernetes objects valid against the schemas of Kubernetes {version}."], problems

    def orphan(self, change: Change) -> Instance:
        return self._of(change.target).orphan(change)

    def lock_key(self, inst: Instance) -> str:
        return self._of(inst.target).lock_key(inst)

    def read(self, instances: Sequence[Instance], ctx: Context) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for provider in (self.docker, self.kube):
            mine = [i for i in instances if self._of(i.target) is provider]
            if mine:
                out.update(provider.read(mine, ctx))
        return out

    def diff(self, instances: Sequence[Instance], live: Mapping[str, dict[str, Any]]) -> list[Change]:
        return self._of(instances[0].target).diff(instances, live) if instances else []

    def apply(self, target: str, steps: Sequence[tuple[Instance, Change]], ctx: Context) -> Iterator[Result]:
        return self._of(target).apply(target, steps, ctx)

    def actions(self, inst: Instance) -> tuple[str, ...]:
        return tuple(self._of(inst.target).actions(inst))

    def act(self, action: str, target: str, instances: Sequence[Instance], params: Any, ctx: Context,
            emit: Callable[[Output], None]) -> Result:
        return self._of(target).act(action, target, instances, params, ctx, emit)


# hands each Model to the Docker or the Kubernetes provider: their desired states differ, their live states are
# JSON objects
_: type[Provider[Any, dict[str, Any]]] = ModelProvider  # the contract, typed (mypy checks it)
