"""One plan and one apply spread over many runners: `recon plan --shard K/N`, `recon plan merge`, and
`recon apply plan.json --shard K/N`.

- **The unit is a target** (a host, a registry repository, a Docker engine, a cluster). All of a
  target's changes are in one shard, so its changes keep their order. A target whose resources depend
  on a spec that has no instance on that target (a Model on a Bundle's repository, an app host on a
  database host) is joined with the targets of that dependency: each `dependsOn` closure across
  targets is planned and applied by one runner.
- **Deterministic, from the specs alone**: every runner of one commit computes the same partition
  without talking to the others or reading live state. Units are weighed by their instances and
  given, heaviest first, to the least loaded shard (ties: the lower shard).
- **`--shard-by LABEL`** (a host's `labels`, e.g. `zone`): the label's values, sorted, go to shards
  in turn (value i to shard i mod N + 1), so with N equal to the number of values shard K is the
  K-th value; targets without the label are spread by weight. A dependency across two values is
  refused: no runner could reach both.
- A fragment records its shard, the targets of each shard, the commit and the repository; `merge`
  checks they belong together and gives one plan whose id is the id an unsharded plan of the same
  changes has.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specs import graph
from specs.errors import UsageError

if TYPE_CHECKING:
    from providers.contract import Instance, Provider
    from reconciler.plan import Plan
    from specs.project import Project

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
MAX_SHARDS = 1000


@dataclass(frozen=True)
class Shard:
    index: int  # 1..count
    count: int
    by: str = ""  # a label of the targets, or "" for balance by weight

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse(text: str, by: str = "", option: str = "--shard") -> Shard:
    """`K/N` with 1 <= K <= N; UsageError saying what would be right."""
    m = _SHARD.match(text)
    if m is None:
        raise UsageError(f"{option} {text!r}: give the shard as K/N, e.g. 1/3 for the first of three (in a "
                         "Kubernetes Indexed Job: $((JOB_COMPLETION_INDEX + 1))/N)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or count > MAX_SHARDS:
        raise UsageError(f"{option} {text}: the number of shards must be 1 to {MAX_SHARDS}")
    if not 1 <= index <= count:
        raise UsageError(f"{option} {text}: shard {index} of {count} does not exist; shards are numbered 1 to "
                         f"{count}")
    if by and not re.fullmatch(r"[A-Za-z0-9_.\-/]+", by):
        raise UsageError(f"--shard-by {by!r}: give the name of a label of the hosts, e.g. zone")
    return Shard(index, count, by)


def chosen(shard: str | None, by: str | None) -> Shard | None:
    """The shard the options --shard and --shard-by name, if any."""
    if by and not shard:
        raise UsageError("--shard-by goes with --shard K/N (e.g. --shard 1/3 --shard-by zone)")
    return parse(shard, by or "") if shard else None


Items = Sequence[tuple["Provider", "Instance[Any]"]]


def partition(project: Project, items: Items, count: int, by: str = "") -> dict[str, int]:
    """Target -> shard (1..count) for every target of the expanded specs."""
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        while parent.setdefault(t, t) != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    targets_of: dict[str, set[str]] = {}
    weight: dict[str, int] = {}
    labels: dict[str, dict[str, str]] = {}
    for _, inst in items:
        find(inst.target)
        targets_of.setdefault(inst.spec, set()).add(inst.target)
        weight[inst.target] = weight.get(inst.target, 0) + 1
        labels.setdefault(inst.target, {}).update(inst.labels)
    joined: dict[tuple[str, str], tuple[str, str]] = {}  # (target, dependency's target) -> (spec, dependency)
    for spec, targets in targets_of.items():
        for dep in graph.dependencies(project.edges, {spec}):
            theirs = targets_of.get(dep)
            if not theirs:
                continue  # a spec without instances (a HostGroup, a Policy) ties nothing
            for t in targets:
                if t not in theirs:
                    for other in theirs:
                        union(t, other)
                        joined.setdefault((t, other), (spec, dep))
    units: dict[str, list[str]] = {}
    for t in parent:
        units.setdefault(find(t), []).append(t)
    load = [0] * count
    out: dict[str, int] = {}
    free: list[list[str]] = []
    if by:
        values: dict[str, list[list[str]]] = {}
        for members in units.values():
            found = {labels[t][by] for t in members if by in labels.get(t, {})}
            if len(found) > 1:
                raise UsageError(_across(by, members, labels, joined))
            if found:
                values.setdefault(found.pop(), []).append(members)
            else:
                free.append(members)
        if not values:
            raise UsageError(f"--shard-by {by}: no target has the label {by!r}; label the hosts (HostGroup "
                             f"hosts[].labels: {{{by}: …}}) or shard without --shard-by")
        for i, value in enumerate(sorted(values)):
            for members in values[value]:
                for t in members:
                    out[t] = i % count + 1
                    load[i % count] += weight.get(t, 0)
    else:
        free = list(units.values())
    for members in sorted(free, key=lambda m: (-sum(weight.get(t, 0) for t in m), min(m))):
        k = min(range(count), key=lambda j: (load[j], j))
        for t in members:
            out[t] = k + 1
        load[k] += sum(weight.get(t, 0) for t in members)
    return out


def _across(by: str, members: list[str], labels: dict[str, dict[str, str]],
            joined: dict[tuple[str, str], tuple[str, str]]) -> str:
    for (t, other), (spec, dep) in sorted(joined.items()):
        a, b = labels.get(t, {}).get(by), labels.get(other, {}).get(by)
        if t in members and a is not None and b is not None and a != b:
            return (f"--shard-by {by}: {spec} on {t} ({by}={a}) depends on {dep} on {other} ({by}={b}); one runner "
                    f"must apply both, so they cannot be split by {by}. Shard without --shard-by, or put them in "
                    f"one {by}")
    values = sorted({labels[t][by] for t in members if by in labels.get(t, {})})
    return f"--shard-by {by}: targets {', '.join(sorted(members))} depend on each other across {', '.join(values)}"


def of(project: Project, items: Items, shard: Shard) -> set[str]:
    """The targets of one shard."""
    return {t for t, k in partition(project, items, shard.count, shard.by).items() if k == shard.index}


def owners(shards: dict[str, Any]) -> dict[str, int]:
    """Target -> shard, from what a fragment or merged plan records of its split (`record`'s `parts`)."""
    return {t: int(k) for k, ts in shards["parts"].items() for t in ts}


def owner(target: str, parts: dict[str, int], count: int) -> int:
    """The shard of a target; one no spec declares (an orphan found live) by a stable hash of its name."""
    if target in parts:
        return parts[target]
    return int(hashlib.sha256(target.encode()).hexdigest(), 16) % count + 1


def repository() -> str:
    """What tells this repository from another: its first commit (the same on every clone), else ""."""
    from reconciler.gitinfo import git_text

    roots = git_text("rev-list", "--max-parents=0", "HEAD")
    return min(roots.split()) if roots else ""


def record(shard: Shard, parts: dict[str, int]) -> dict[str, Any]:
    """What a fragment says of its shard: which it is, and the targets of every shard in the specs' order (for
    merge's checks, and its order: a group's hosts in their order, as an unsharded plan has them)."""
    by_shard: dict[str, list[str]] = {str(k): [] for k in range(1, shard.count + 1)}
    for target, k in parts.items():  # in the order partition met them: the expansion's
        by_shard[str(k)].append(target)
    return {"index": shard.index, "count": shard.count, "by": shard.by, "repository": repository(),
            "parts": by_shard, "order": list(parts)}


def merge(fragments: Sequence[tuple[str, Plan]]) -> Plan:
    """One plan from the fragments of every shard, named (file, plan); UsageError naming what does not fit."""
    from reconciler.plan import plan_id

    if not fragments:
        raise UsageError("recon plan merge: give the fragments, e.g. recon plan merge part-*.json --out plan.json")
    for name, p in fragments:
        if not p.shards or "index" not in p.shards:
            what = "a merged plan" if p.shards else "a whole plan, not a fragment"
            raise UsageError(f"{name} is {what}; merge takes the fragments of `recon plan --shard K/N --out FILE`")
    first_name, first = fragments[0]
    head = first.shards
    count = int(head["count"])
    seen: dict[int, str] = {}
    for name, p in fragments:
        s = p.shards
        if s.get("repository", "") != head.get("repository", ""):
            raise UsageError(f"{name} was planned in another repository than {first_name}; merge the fragments of "
                             "one repository")
        if p.git.get("sha", "") != first.git.get("sha", ""):
            raise UsageError(f"{name} was planned at commit {p.git.get('sha', '?')[:12] or 'none'}, {first_name} at "
                             f"{first.git.get('sha', '?')[:12] or 'none'}; plan every shard from one commit")
        if p.specs != first.specs or p.paths != first.paths:
            moved = sorted(a for a in set(p.specs) | set(first.specs) if p.specs.get(a) != first.specs.get(a))
            raise UsageError(f"{name} and {first_name} were planned from different specs"
                             + (f" ({', '.join(moved[:3])})" if moved else f" (paths {list(p.paths)})")
                             + "; plan every shard from one commit and the same paths")
        if p.policy.get("digest") != first.policy.get("digest"):
            raise UsageError(f"{name} and {first_name} were planned under different Policies; re-plan every shard")
        if p.selection != first.selection:
            raise UsageError(f"{name} and {first_name} were planned with different --target/--exclude; re-plan")
        if int(s["count"]) != count or s.get("by", "") != head.get("by", "") or s.get("parts") != head.get("parts"):
            raise UsageError(f"{name} is shard {s['index']}/{s['count']}"
                             + (f" by {s['by']}" if s.get("by") else "")
                             + f", {first_name} is {head['index']}/{head['count']}"
                             + (f" by {head['by']}" if head.get("by") else "")
                             + "; merge the shards of one split")
        k = int(s["index"])
        if k in seen:
            raise UsageError(f"shard {k}/{count} is given twice ({seen[k]} and {name}); give each shard once")
        seen[k] = name
    missing = [str(k) for k in range(1, count + 1) if k not in seen]
    if missing:
        raise UsageError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(m + '/' + str(count) for m in missing)} "
                         f"missing; merge needs all {count} fragments")
    where: dict[str, str] = {}
    split = owners(head)
    for name, p in fragments:
        for c in p.changes:
            if split.get(c.target, int(p.shards["index"])) != int(p.shards["index"]):
                raise UsageError(f"{name} has a change of {c.target}, a target of another shard; re-plan it")
            if c.id in where:
                raise UsageError(f"{c.id} is planned in {where[c.id]} and in {name}: fragments overlap; re-plan "
                                 "them from one commit")
            where[c.id] = name
    ordered = sorted(fragments, key=lambda f: int(f[1].shards["index"]))
    rank = {addr: n for n, addr in enumerate(a for wave in first.order for a in wave)}
    place = {t: n for n, t in enumerate(head.get("order", ()))}
    changes = sorted((c for _, p in ordered for c in p.changes),  # stable: a target's own changes keep their order
                     key=lambda c: (rank.get(c.spec, len(rank)), place.get(c.target, len(place))))
    merged = {"count": count, "by": head.get("by", ""), "repository": head.get("repository", ""),
              "parts": head["parts"], "order": head.get("order", []),
              "fragments": {str(p.shards["index"]): p.plan_id for _, p in ordered}}
    return dataclasses.replace(
        first, plan_id=plan_id(first.recon_version, first.specs, changes, first.policy.get("digest", "")),
        created_at=max(p.created_at for _, p in fragments), changes=tuple(changes), shards=merged)


def for_apply(plan: Plan, shard: str | None) -> Plan:
    """What `recon apply PLAN [--shard K/N]` carries out: the plan, or one shard's part of a merged plan (the
    same plan id: what was reviewed and confirmed). A fragment is never applied: it was not reviewed whole."""
    if "index" in plan.shards:
        raise UsageError(f"plan {plan.plan_id} is the fragment of shard {plan.shards['index']}/"
                         f"{plan.shards['count']}; merge the fragments (`recon plan merge`) and apply the merged plan")
    if shard is None:
        return plan
    return part(plan, parse(shard))


def part(plan: Plan, shard: Shard) -> Plan:
    """The changes of one shard of a merged plan."""
    if not plan.shards:
        raise UsageError(f"--shard {shard}: plan {plan.plan_id} is not sharded; apply it whole, or plan with --shard "
                         "and merge the fragments")
    if int(plan.shards["count"]) != shard.count:
        raise UsageError(f"--shard {shard}: plan {plan.plan_id} was split into {plan.shards['count']} shards; give "
                         f"K/{plan.shards['count']}")
    parts = owners(plan.shards)
    mine = tuple(c for c in plan.changes if owner(c.target, parts, shard.count) == shard.index)
    return dataclasses.replace(plan, changes=mine, shards={**plan.shards, "index": shard.index, "applying": True})


def targets(plan: Plan) -> set[str] | None:
    """The targets a part of a merged plan may touch (and lock); None for a whole plan."""
    if not plan.shards.get("applying"):
        return None
    return set(plan.shards["parts"].get(str(plan.shards["index"]), ()))


@dataclass(frozen=True)
class PartState:
    part: str  # K/N
    changes: int  # pending changes of the part
    outcome: str  # no changes | not applied | ok | failed | refused | unfinished (running, or killed)
    detail: str = ""  # who, when, counts

    @property
    def done(self) -> bool:
        """Nothing is left of this part: applied, or it had nothing to apply."""
        return self.outcome in ("ok", "no changes")


def progress(plan: Plan, runs: Sequence[dict[str, Any]]) -> list[PartState]:
    """The merged result of a merged plan: each part's latest apply (from the audit log's `part_runs`); an apply
    of the whole plan counts for every part."""
    count = int(plan.shards["count"])
    parts = owners(plan.shards)
    pending = [0] * (count + 1)
    for c in plan.pending:
        pending[owner(c.target, parts, count)] += 1
    out = []
    for k in range(1, count + 1):
        name = f"{k}/{count}"
        mine = [r for r in runs if r.get("part") in (name, "")]
        if not pending[k]:
            out.append(PartState(name, 0, "no changes"))
        elif not mine:
            out.append(PartState(name, pending[k], "not applied"))
        else:
            r = mine[-1]
            counts = (f", {r['succeeded']} succeeded, {r['failed']} failed" if "succeeded" in r else "")
            out.append(PartState(name, pending[k], r["outcome"],
                                 f"{r['at'][:19]} by {r['user']}@{r['host']} (audit run {r['run']}){counts}"))
    return out
