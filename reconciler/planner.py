"""Planning: expand specs into instances, read live state in batches, diff, build the Plan."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from providers import PROVIDERS, abilities, provider_for
from providers.context import Context
from providers.contract import Change, Instance, Live, Provider, WithOrphans, WithValidation
from reconciler import __version__, policy, shards
from reconciler.gitinfo import describe
from reconciler.plan import FORMAT_VERSION, Plan, plan_id
from reconciler.shards import Shard
from specs import graph
from specs.errors import Diagnostic, UsageError
from specs.project import Project


def expand(project: Project) -> list[tuple[Provider, Instance]]:
    """Every instance of every spec with a provider, in dependency order."""
    out: list[tuple[Provider, Instance]] = []
    for wave in project.order():
        for addr in wave:
            spec = project.specs[addr]
            provider = provider_for(spec.kind)
            if provider is not None:
                out.extend((provider, inst) for inst in provider.expand(spec, project))
    return out


def matches(patterns: Sequence[str], inst: Instance) -> bool:
    """An address pattern selects an instance when it equals, prefixes at a '/' or '@', or globs its id."""
    for pat in patterns:
        for name in (inst.id, inst.address):
            if name == pat or name.startswith(pat.rstrip("/") + "/") or name.startswith(pat + "@"):
                return True
            if any(ch in pat for ch in "*?[") and fnmatch.fnmatchcase(name, pat):
                return True
    return False


def select(
    project: Project, items: list[tuple[Provider, Instance]], targets: Sequence[str], excludes: Sequence[str]
) -> list[tuple[Provider, Instance]]:
    """--target keeps what matches plus the specs those depend on; --exclude then drops what matches. A --target
    that matches nothing is a UsageError (a typo would otherwise plan nothing and say "No changes")."""
    for pattern in targets:
        if not any(matches([pattern], i) for _, i in items):
            raise UsageError(f"--target {pattern} matches no resource of these specs; {closest(pattern, items)}")
    if targets:
        chosen = {i.id for _, i in items if matches(targets, i)}
        needed = graph.dependencies(project.edges, {i.spec for _, i in items if i.id in chosen})
        items = [(p, i) for p, i in items if i.id in chosen or i.spec in needed]
    if excludes:
        items = [(p, i) for p, i in items if not matches(excludes, i)]
    return items


def closest(pattern: str, items: Sequence[tuple[Provider, Instance]]) -> str:
    import difflib

    names = sorted({i.address for _, i in items} | {i.spec for _, i in items})
    close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(close) + "?"
    example = names[0] if names else "HostState/app/file:/etc/app.conf"
    return f"addresses look like {example} (a prefix or a glob works too; `recon plan --json` lists them)"


def read_live(items: Sequence[tuple[Provider, Instance]], ctx: Context) -> dict[str, Live]:
    """Live state of all instances: one batched read per provider."""
    by_provider: dict[int, tuple[Provider, list[Instance]]] = {}
    for provider, inst in items:
        by_provider.setdefault(id(provider), (provider, []))[1].append(inst)
    live: dict[str, Live] = {}
    for provider, insts in by_provider.values():
        live.update(provider.read(insts, ctx))
    return live


def diff_all(items: Sequence[tuple[Provider, Instance]], live: dict[str, Live]) -> list[Change]:
    """Pure: the changes of every instance, diffed per spec and target in declaration order."""
    groups: dict[tuple[str, str], tuple[Provider, list[Instance]]] = {}
    for provider, inst in items:
        groups.setdefault((inst.spec, inst.target), (provider, []))[1].append(inst)
    changes: list[Change] = []
    for provider, insts in groups.values():
        changes.extend(provider.diff(insts, live))
    return changes


def make_plan(
    project: Project,
    ctx: Context,
    paths: Sequence[str],
    targets: Sequence[str] = (),
    excludes: Sequence[str] = (),
    changed_since: str = "",
    prune: bool = False,
    expanded: Sequence[tuple[Provider, Instance]] | None = None,
    shard: Shard | None = None,
) -> Plan:
    """`expanded`: the project already expanded (expand), so an apply that plans expands it once. `shard`: only
    the targets of that shard (shards.py), the plan a fragment for `recon plan merge`."""
    ctx = replace(ctx, stack=project.stack)  # providers see only their own stack's orphans
    everything = list(expand(project) if expanded is None else expanded)
    items = select(project, everything, targets, excludes)
    if changed_since:
        only = set(changed_specs(project, changed_since))
        items = [(p, i) for p, i in items if i.spec in only]
    elif not targets and not excludes:
        items += orphans(project, ctx, prune)
    parts: dict[str, int] = {}
    if shard is not None:
        parts = shards.partition(project, everything, shard.count, shard.by)
        items = [(p, i) for p, i in items if shards.owner(i.target, parts, shard.count) == shard.index]
    live = read_live(items, ctx)
    changes = policy.annotate(project, diff_all(items, live))
    if shard is not None:  # the Policy's own changes (no target) go to one shard too
        changes = [c for c in changes if shards.owner(c.target, parts, shard.count) == shard.index]
    gov = policy.governing(project)
    specs = {addr: s.doc.digest for addr, s in sorted(project.specs.items())}
    return Plan(
        format_version=FORMAT_VERSION,
        plan_id=plan_id(__version__, specs, changes, gov.digest),
        recon_version=__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        paths=tuple(paths),
        specs=specs,
        order=tuple(tuple(w) for w in project.order()),
        changes=tuple(changes),
        selection={"target": tuple(targets), "exclude": tuple(excludes),
                   **({"changed-since": (changed_since,)} if changed_since else {})},
        git=describe(),
        policy=gov.record(),
        shards=shards.record(shard, parts) if shard is not None else {},
    )


def downstream(project: Project, failed_specs: set[str]) -> set[str]:
    """Specs that depend, directly or not, on any of the given specs (the specs themselves excluded)."""
    return graph.dependents(project.edges, failed_specs) - failed_specs


def changed_specs(project: Project, since: str) -> list[str]:
    """Specs whose file or inputs changed since a git commit, and every spec that depends on them."""
    from reconciler.gitinfo import changed_files

    changed = {p.resolve() for p in changed_files(since)}
    hit = set()
    for addr, spec in project.specs.items():
        own = Path(spec.doc.file).resolve()
        inputs = [p.resolve() for _, p in spec.body.inputs(spec.doc)]
        if own in changed or any(c == i or i in c.parents for c in changed for i in inputs):
            hit.add(addr)
    return sorted(hit | graph.dependents(project.edges, hit))


def orphans(project: Project, ctx: Context, prune: bool) -> list[tuple[Provider, Instance]]:
    """What recon made and no spec declares any more (found by its labels), from providers that can tell:
    to delete with `prune`, else shown and kept. Only for a plan of everything: a selection cannot tell.
    A provider is asked only when the project has specs of its kind, or `prune` was given (so a project
    without Models never talks to Docker, and `--prune` still clears up after the last one)."""
    out: list[tuple[Provider, Instance]] = []
    for kind in sorted(PROVIDERS):
        if "orphans" not in abilities(kind) or not (project.of_kind(kind) or prune):
            continue  # its provider is not even imported
        provider = provider_for(kind)
        if isinstance(provider, WithOrphans):
            out += [(provider, inst) for inst in provider.orphans(project.of_kind(kind), ctx, prune)]
    return out


def orphan(change: Change) -> tuple[Provider, Instance] | None:
    """The instance of a planned deletion of an orphan, which no spec expands to."""
    if change.resource != "orphan":
        return None
    provider = provider_for(change.spec.split("/", 1)[0])
    return (provider, provider.orphan(change)) if isinstance(provider, WithOrphans) else None


def offline_checks(project: Project) -> tuple[list[str], list[Diagnostic]]:
    """`recon validate`'s checks beyond the spec models, by the providers that have them (no live read):
    (lines saying what was checked, problems)."""
    lines: list[str] = []
    problems: list[Diagnostic] = []
    for kind in sorted(PROVIDERS):
        specs = project.of_kind(kind)
        provider = provider_for(kind) if specs and "validation" in abilities(kind) else None  # else not imported
        if isinstance(provider, WithValidation):
            said, found = provider.validate(specs)
            lines += said
            problems += found
    return lines, problems
