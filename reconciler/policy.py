"""Policy on a plan: which environment each change belongs to, which rule allows or denies it, and
its risk flags. Pure: it reads the Policy specs and the changes, and returns annotated changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from providers.contract import Change
from specs.globs import glob_match
from specs.policy import Environment, FieldCondition, PolicySpec, When
from specs.project import Project, Spec

RISKY_ACTIONS = ("delete", "replace", "restart")


def _policies(project: Project) -> list[tuple[str, PolicySpec]]:
    out = []
    for spec in sorted(project.of_kind("Policy"), key=lambda s: s.name):
        assert isinstance(spec.body, PolicySpec)
        out.append((spec.address, spec.body))
    return out


def environment_of(spec: Spec, environments: Sequence[Environment]) -> Environment | None:
    """The first environment whose match selects the spec."""
    for env in environments:
        m = env.match
        if m.labels and all(spec.labels.get(k) == v for k, v in m.labels.items()):
            return env
        if m.paths and any(glob_match(g, repo_path(spec.doc.file)) for g in m.paths):
            return env
        if any(glob_match(g, spec.address) for g in m.specs):
            return env
    return None


def annotate(project: Project, changes: Sequence[Change]) -> list[Change]:
    """Each change with its environment, risk flags, and the rule that denied it (if any)."""
    policies = _policies(project)
    environments = [e for _, p in policies for e in p.environments]
    rules = [(addr, r) for addr, p in policies for r in p.rules]
    out = []
    for c in changes:
        spec = project.specs.get(c.spec)
        env = environment_of(spec, environments) if spec is not None else None
        risks: list[str] = [*c.risks, *([c.action] if c.action in RISKY_ACTIONS else [])]  # the provider's first
        if env is not None and env.confirm and c.is_change:
            risks.append(f"{env.name} needs confirmation")
        denied = ""
        if c.is_change:
            for addr, rule in rules:
                if _matches(rule.when, c, env.name if env else "", spec):
                    if rule.effect == "deny":
                        denied = f"{addr} rule {rule.name}" + (f": {rule.message}" if rule.message else "")
                    break
        out.append(replace(c, environment=env.name if env else "", risks=tuple(risks), denied=denied))
    return out


def confirmations(changes: Sequence[Change], project: Project) -> list[str]:
    """Environments of pending changes that need a confirmation, sorted."""
    needed = {e.name for _, p in _policies(project) for e in p.environments if e.confirm}
    return sorted({c.environment for c in changes if c.is_change and c.environment in needed})


def _matches(when: When, c: Change, env: str, spec: Spec | None) -> bool:
    kind = c.spec.split("/", 1)[0]
    checks = [
        (when.environments, lambda: env in when.environments),
        (when.kinds, lambda: kind in when.kinds),
        (when.specs, lambda: any(glob_match(g, c.spec) for g in when.specs)),
        (when.resources, lambda: c.resource in when.resources),
        (when.actions, lambda: c.action in when.actions),
        (when.targets, lambda: any(glob_match(g, c.target) for g in when.targets)),
        (when.addresses, lambda: any(glob_match(g, c.address) for g in when.addresses)),
    ]
    if not all(test() for given, test in checks if given):
        return False
    return when.field is None or _field_matches(when.field, c)


def _field_matches(cond: FieldCondition, c: Change) -> bool:
    values = [f.after for f in c.fields if f.path == cond.path]
    if not values:
        return False
    value = values[0]
    if cond.matches is not None:
        return value is not None and any(glob_match(g, str(value)) for g in cond.matches)
    if cond.notMatches is not None:
        return value is not None and not any(glob_match(g, str(value)) for g in cond.notMatches)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return (cond.above is not None and number > cond.above) or (cond.below is not None and number < cond.below)


@lru_cache(maxsize=4096)
def repo_path(file: str) -> str:
    """A spec file's path relative to its repository's root (the directory holding .git, else the current
    directory), with '/': the same however recon was started (`specs`, `./specs`, an absolute path, or from
    another directory), so environment paths cannot be sidestepped by how the specs are named. The path as
    the specs directory holds it, not where a link points: a link in specs/prod/ is a spec in prod."""
    import os

    from specs.settings import repo_root

    path = Path(os.path.abspath(file))
    root = repo_root(path.parent) or Path(os.path.abspath(os.getcwd()))
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
