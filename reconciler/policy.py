"""Policy on a plan: which Policy governs a run, which environment each change belongs to, which rule
allows or denies it, and its risk flags.

The governing Policy is never what the paths of a run happen to include: it is every Policy document
of the repository (found with `git grep`, the work tree's untracked files too), plus any among the
specs given. Where it is trusted from:
- `RECON_POLICY_REF` (the Action sets it to the base of a pull request, or the commit before a push):
  the Policy documents of the repository at that git ref. The work tree's Policy, where it differs,
  is *proposed*: its denies count (a change can always make itself stricter), its allows, teams and
  the switching off of a trusted deny do not, and each proposed difference is a change of the plan
  (resource `policy`, kind Policy) that the trusted rules decide like any other: a trusted rule
  `when: {kinds: [Policy]}` is the Policy's own approval rule. While a trusted Policy exists, a
  Policy change that no trusted rule allows is denied.
- `RECON_POLICY` (a file or directory outside what a change can edit, pinned by whoever runs CI): the
  same, with those files trusted; it wins over the ref's Policy, while the ref still says what a change
  wrote (reconciler/trust.py).
- neither: the repository's own Policy is trusted as it is (a laptop, where the user is the author).

Decisions: within one Policy the first matching rule decides; across Policies a deny wins.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from providers.contract import Change, FieldChange
from reconciler.gitinfo import git_bytes, git_text, repository_places, require_commit, written
from reconciler.trust import trust
from specs.errors import Diagnostic, UsageError
from specs.globs import glob_match
from specs.loader import Document, Loc, load_bytes, load_files
from specs.policy import Environment, FieldCondition, PolicySpec, Rule, When
from specs.project import Project, Spec, project_of

RISKY_ACTIONS = ("delete", "replace", "restart")
POLICY_RESOURCE = "policy"  # the resource of a Policy change: reviewed in the plan, never applied by a provider


def _kind_re(*kinds: str) -> str:
    """A line `kind: K` of one of these kinds, for git grep -E (what files to read, before YAML parses them)."""
    return rf"^kind:[[:space:]]*[\"']?({'|'.join(kinds)})[\"']?[[:space:]]*(#.*)?$"


_KIND_RE = _kind_re("Policy")


@dataclass(frozen=True)
class Governing:
    """The Policy in force for a run, and what the run's specs would change of it."""

    source: str  # where the trusted Policy was read: "work tree", "git REF (sha)", "file PATH"
    subject: str  # who the rules' subjects are checked against
    trusted: tuple[Spec, ...]
    proposed: tuple[Spec, ...] = ()  # Policies of the work tree that differ from (or are not in) the trusted
    removed: tuple[Spec, ...] = ()  # trusted Policies the work tree no longer has
    digest: str = ""  # of every Policy document read: a saved plan is stale when it moved
    changes: tuple[Change, ...] = field(default=())  # the proposed differences, as changes of the plan

    @property
    def environments(self) -> list[Environment]:
        """The trusted environments first, then those only a proposed Policy adds (they can only add
        confirmations: a spec a trusted environment selects stays in it)."""
        return [e for s in (*self.trusted, *self.proposed) for e in _body(s).environments]

    def teams(self, trusted_only: bool) -> set[str]:
        specs = self.trusted if trusted_only else (*self.trusted, *self.proposed)
        return {name for s in specs for name, users in _body(s).teams.items() if self.subject in users}

    def record(self) -> dict[str, Any]:
        """What the audit keeps: who was checked against which Policy."""
        return {"source": self.source, "subject": self.subject, "teams": sorted(self.teams(True)),
                "digest": self.digest, "trusted": [s.address for s in self.trusted],
                "proposed": [s.address for s in self.proposed], "removed": [s.address for s in self.removed]}


def _body(spec: Spec) -> PolicySpec:
    assert isinstance(spec.body, PolicySpec)
    return spec.body


def subject() -> str:
    """Who runs recon, for the rules' subjects: in GitHub Actions the actor it vouches for (GITHUB_ACTOR, which
    a workflow cannot override: GitHub sets the GITHUB_* variables itself), else the OS user. Never a name
    taken from the repository, such as a commit's author."""
    if os.environ.get("GITHUB_ACTIONS") == "true" and os.environ.get("GITHUB_ACTOR"):
        return os.environ["GITHUB_ACTOR"]
    from reconciler.identity import whoami

    return str(whoami()["user"])


def governing(project: Project) -> Governing:
    """The Policy that governs a run of this project (see the module's doc). SpecError for a bad Policy
    document, wherever it was read; UsageError for a trusted ref or path that cannot be read."""
    t = trust()
    ref, pinned = t.ref, t.pinned
    roots = sorted({r for r in (_repo(f) for f in project.files) if r is not None})
    key = (tuple(sorted((s.address, s.doc.file, s.doc.digest) for s in project.of_kind("Policy"))),
           tuple(roots), ref, pinned, subject())
    if key not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = _governing(key, tuple(project.of_kind("Policy")))
    return _CACHE[key]


_CACHE: dict[tuple[Any, ...], Governing] = {}


def _repo(file: str) -> str | None:
    from specs.settings import repo_root

    root = repo_root(Path(os.path.abspath(file)).parent)
    return str(root) if root is not None else None


def _governing(key: tuple[Any, ...], given: tuple[Spec, ...]) -> Governing:
    _, roots, ref, pinned, who = key
    current = _current(given, roots)
    if pinned:
        trusted, source = _pinned(Path(pinned)), f"file {pinned}"
    elif ref:
        trusted, source = _at_ref(ref, roots), f"git {ref}"
        sha = git_text("rev-parse", "--short=12", ref + "^{commit}", cwd=roots[0], timeout=30) if roots else None
        source += f" ({sha.strip()})" if sha else ""
    else:
        trusted, source = current, "work tree"
    by_addr = {s.address: s for s in trusted}
    now = {s.address: s for s in current}
    proposed = tuple(s for s in current if s.address not in by_addr or by_addr[s.address].doc.digest != s.doc.digest)
    # a pinned Policy lives outside the repository: the work tree not having it removes nothing
    removed = () if pinned else tuple(s for s in trusted if s.address not in now)
    digest = hashlib.sha256("".join(f"{t} {s.address} {s.doc.digest}\n" for t, group in
                                    (("trusted", trusted), ("proposed", proposed), ("removed", removed))
                                    for s in group).encode()).hexdigest()[:16]
    gov = Governing(source, who, trusted, proposed, removed, digest)
    return replace(gov, changes=tuple(annotate_with(gov, _policy_changes(gov, by_addr))))


def _current(given: Sequence[Spec], roots: Sequence[str]) -> tuple[Spec, ...]:
    """The Policy documents of the repository's work tree, and those among the given specs."""
    seen = {os.path.abspath(s.doc.file) for s in given}
    files = []
    for root in roots:
        out = git_text("grep", "-l", "-I", "-E", "--untracked", _KIND_RE, "--", "*.yaml", "*.yml", cwd=root,
                       timeout=30) or ""
        files += [p for p in (os.path.join(root, n) for n in out.splitlines() if n) if os.path.abspath(p) not in seen]
    docs, bad = load_files([Path(f) for f in sorted(files)])
    return _policies([*(s.doc for s in given), *(d for d in docs if _kind(d) == "Policy")], bad)


def _at_ref(ref: str, roots: Sequence[str]) -> tuple[Spec, ...]:
    if not roots:
        raise UsageError(f"RECON_POLICY_REF={ref}: the specs are not in a git repository, so the Policy cannot be "
                         "read at a ref; run in the repository, or give RECON_POLICY=PATH instead")
    docs: list[Document] = []
    bad: list[Diagnostic] = []
    for root in roots:
        require_commit(ref, root, f"RECON_POLICY_REF={ref}", f" in {root}", timeout=30)
        got, problems = _docs_at(ref, root, "Policy")
        docs += got
        bad += problems
    return _policies(docs, bad)


def _docs_at(ref: str, root: str, *kinds: str) -> tuple[list[Document], list[Diagnostic]]:
    """The documents of these kinds in the YAML files of `ref` (each named REF:path), and what did not load."""
    docs: list[Document] = []
    bad: list[Diagnostic] = []
    out = git_text("grep", "-l", "-I", "-E", _kind_re(*kinds), ref, "--", "*.yaml", "*.yml", cwd=root, timeout=30)
    for name in sorted(n for n in (out or "").splitlines() if n):
        got, problems = load_bytes(name, git_bytes("show", name, cwd=root) or b"")
        docs += [d for d in got if _kind(d) in kinds]
        bad += problems
    return docs, bad


def _pinned(path: Path) -> tuple[Spec, ...]:
    from specs.loader import find_spec_files

    if not path.exists():
        raise UsageError(f"RECON_POLICY={path}: no such file or directory; give the trusted Policy's file or "
                         "directory, or unset RECON_POLICY to use the repository's")
    files, bad = find_spec_files([path])
    docs, more = load_files(files)
    return _policies([d for d in docs if _kind(d) == "Policy"], [*bad, *more])


def _policies(docs: Sequence[Document], bad: Sequence[Diagnostic]) -> tuple[Spec, ...]:
    project = project_of(docs, sorted({d.file for d in docs}), list(bad), preflight=False)
    return tuple(sorted(project.of_kind("Policy"), key=lambda s: s.name))


def _kind(doc: Document) -> Any:
    return doc.data.get("kind") if isinstance(doc.data, dict) else None


def _policy_changes(gov: Governing, trusted: dict[str, Spec]) -> list[Change]:
    """Each proposed difference of the Policy as a change: its rules, environments, teams and drift rules."""
    out = []
    for spec in gov.proposed:
        before = trusted.get(spec.address)
        out.append(_change(spec, "update" if before else "create", _fields(before, spec)))
    for spec in gov.removed:
        out.append(_change(spec, "delete", _fields(spec, None)))
    return out


def _change(spec: Spec, action: str, fields: tuple[FieldChange, ...]) -> Change:
    return Change(address=f"{spec.address}/{POLICY_RESOURCE}", target="", spec=spec.address,
                  resource=POLICY_RESOURCE, action=action,  # type: ignore[arg-type]
                  reason="the Policy in force differs (it takes effect once merged)", fields=fields,
                  desired=spec.doc.digest if action != "delete" else "")


def _fields(before: Spec | None, after: Spec | None) -> tuple[FieldChange, ...]:
    def items(spec: Spec | None) -> dict[str, str]:
        if spec is None:
            return {}
        body = _body(spec)
        got: dict[str, str] = {}
        for section in ("environments", "rules", "driftIgnore"):
            for i, entry in enumerate(getattr(body, section)):
                name = getattr(entry, "name", None) or str(i)
                got[f"{section}[{name}]"] = entry.model_dump_json(exclude_defaults=True)
        for team, users in body.teams.items():
            got[f"teams[{team}]"] = ", ".join(users)
        return got

    old, new = items(before), items(after)
    return tuple(FieldChange(k, old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
                 if old.get(k) != new.get(k))


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
    """Each change with its environment, risk flags, and the rule that denied it (if any), under the governing
    Policy; Policy changes are not taken from `changes` but from the governing Policy (see governing)."""
    gov = governing(project)
    specs = {**project.specs}
    return annotate_with(gov, [c for c in changes if c.resource != POLICY_RESOURCE], specs) + list(gov.changes)


def annotate_with(gov: Governing, changes: Sequence[Change], specs: dict[str, Spec] | None = None) -> list[Change]:
    environments = gov.environments
    policy_specs = {s.address: s for s in (*gov.trusted, *gov.proposed, *gov.removed)}
    out = []
    for c in changes:
        spec = (specs or {}).get(c.spec) or (policy_specs.get(c.spec) if c.resource == POLICY_RESOURCE else None)
        env = environment_of(spec, environments) if spec is not None else None
        risks: list[str] = [*c.risks, *([c.action] if c.action in RISKY_ACTIONS else [])]  # the provider's first
        if env is not None and env.confirm and c.is_change:
            risks.append(f"{env.name} needs confirmation")
        denied = _decide(gov, c, env.name if env else "") if c.is_change else ""
        out.append(replace(c, environment=env.name if env else "", risks=tuple(risks), denied=denied))
    return out


def _decide(gov: Governing, c: Change, env: str) -> str:
    """The deny that holds for a change ("" when it is allowed): per Policy the first matching rule; a deny
    of any trusted Policy wins; a proposed Policy adds denies only."""
    teams = gov.teams(trusted_only=True)
    allowed_by: str = ""
    for spec in gov.trusted:
        rule = _first(_body(spec).rules, c, env, gov.subject, teams)
        if rule is not None and rule.effect == "deny":
            return _why(spec, rule)
        if rule is not None:
            allowed_by = allowed_by or f"{spec.address} rule {rule.name}"
    proposed_teams = gov.teams(trusted_only=False)
    for spec in gov.proposed:
        rule = _first(_body(spec).rules, c, env, gov.subject, proposed_teams)
        if rule is not None and rule.effect == "deny":
            return _why(spec, rule) + " (proposed)"
    if c.resource == POLICY_RESOURCE and gov.trusted and not allowed_by:
        return (f"the trusted Policy ({gov.source}): no rule allows {gov.subject} to change the Policy; add one "
                "there, e.g. {name: policy-owners, effect: allow, when: {kinds: [Policy], subjects: [team:NAME]}}")
    return ""


def _why(spec: Spec, rule: Rule) -> str:
    return f"{spec.address} rule {rule.name}" + (f": {rule.message}" if rule.message else "")


def _first(rules: Sequence[Rule], c: Change, env: str, who: str, teams: set[str]) -> Rule | None:
    return next((r for r in rules if _matches(r.when, c, env, who, teams)), None)


def confirmations(changes: Sequence[Change], project: Project) -> list[str]:
    """Environments of pending changes that need a confirmation, sorted."""
    needed = {e.name for e in governing(project).environments if e.confirm}
    return sorted({c.environment for c in changes if c.is_change and c.environment in needed})


def _matches(when: When, c: Change, env: str, who: str = "", teams: set[str] | None = None) -> bool:
    kind = c.spec.split("/", 1)[0]
    checks = [
        (when.environments, lambda: env in when.environments),
        (when.kinds, lambda: kind in when.kinds),
        (when.specs, lambda: any(glob_match(g, c.spec) for g in when.specs)),
        (when.resources, lambda: c.resource in when.resources),
        (when.actions, lambda: c.action in when.actions),
        (when.targets, lambda: any(glob_match(g, c.target) for g in when.targets)),
        (when.addresses, lambda: any(glob_match(g, c.address) for g in when.addresses)),
        (when.subjects, lambda: who in when.subjects or any(f"team:{t}" in when.subjects for t in teams or ())),
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
    the specs directory holds it, not where a link points: a link in specs/prod/ is a spec in prod. A file
    read from git at a ref (REF:path) is its path."""
    if ":" in file and not os.path.exists(file):
        ref_path = file.split(":", 1)[1]
        if ref_path and not ref_path.startswith("/"):
            return ref_path
    from specs.settings import repo_root

    path = Path(os.path.abspath(file))
    root = repo_root(path.parent) or Path(os.path.abspath(os.getcwd()))
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def source_problems(project: Project) -> list[Diagnostic]:
    """Every source a spec reads (file and installer sources, bundle sources, build contexts) must resolve,
    links followed, inside the repository of its spec (outside one: the current directory, or the directory
    above the specs, as a repository usually holds specs/ and what they refer to beside it), or inside a
    source root of the trusted Policy: a change must not copy files of the machine recon runs on (its SSH
    keys, /etc/shadow) to a target or a registry."""
    from specs.settings import repo_root

    allowed = [os.path.realpath(r) for s in governing(project).trusted for r in _body(s).sourceRoots]
    dirs = [os.path.dirname(os.path.abspath(f)) for f in project.files]
    # outside a git repository (no pull request to fear): the directory above the specs, or the current one
    loose = [os.getcwd(), os.path.dirname(os.path.commonpath(dirs))] if dirs else [os.getcwd()]
    out = []
    for spec in project.specs.values():
        for loc, path in spec.body.inputs(spec.doc):
            repo = repo_root(Path(os.path.abspath(spec.doc.file)).parent)
            roots = [str(repo)] if repo is not None else loose
            root = roots[-1]
            real = os.path.realpath(path)
            if any(_within(real, r) for r in (*(os.path.realpath(r) for r in roots), *allowed)):
                continue
            via = "" if real == os.path.abspath(path) else f" (through a link: it resolves to {real})"
            out.append(spec.doc.diagnostic(
                ("spec", *loc), f"{path} is outside the repository {root}{via}",
                "keep sources in the repository, or list their directory under sourceRoots of the trusted Policy"))
    return out


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def unreviewed_refusal(project: Project) -> str:
    """Why an apply no pull request reviewed may not go ahead ("" when it may): a trusted Policy that says
    `unreviewedApply: refuse`, or trusted Policies none of which says allow."""
    trusted = governing(project).trusted
    said = {_body(s).unreviewedApply for s in trusted}
    if "refuse" in said or (trusted and "allow" not in said):
        return ("this plan was not reviewed in a pull request and the trusted Policy does not allow applying "
                "unreviewed plans (unreviewedApply: allow); open a pull request, or apply the plan it reviewed")
    return ""


def unreviewed_files(project: Project) -> frozenset[str]:
    """The project's spec files that differ from the trusted ref (RECON_POLICY_REF): what the change under
    review wrote. Empty without a trusted ref (a laptop, a merged branch)."""
    ref = trust().ref
    if not ref:
        return frozenset()
    out: set[str] = set()
    by_root: dict[str, list[str]] = {}
    for f in project.files:
        root = _repo(f)
        if root is None:
            out.add(f)  # outside the repository: nothing reviewed it
        else:
            by_root.setdefault(root, []).append(f)
    for root, files in by_root.items():
        rel = {os.path.relpath(os.path.abspath(f), root): f for f in files}
        out.update(rel[n] for n in written(root, ref, list(rel)) if n in rel)
    return frozenset(out)


def trust_problems(project: Project) -> list[Diagnostic]:
    """Files that decide whom recon trusts or what it runs when it connects (a kubeconfig's exec plugins and
    server, known_hosts, a CA bundle; KindSpec.trust_files) must not be the change under review's: a pull
    request that edits or adds one would have the plan run its commands on the runner, or send a password to a
    host of its choosing. Under a trusted ref (RECON_POLICY_REF), such a file inside the repository, as named
    or as a link resolves, that differs from the ref is refused, and so is a spec file the change wrote that
    turns such a check off (KindSpec.trust_switches); without a ref (a laptop, a merged branch) the files are
    the user's own. Needs project.unreviewed."""
    ref = trust().ref
    if not ref:
        return []
    out = []
    named: list[tuple[Spec, Loc, str, list[tuple[str, str]]]] = [  # each trust file as (repository, path in it)
        (spec, loc, decides, repository_places(path))
        for spec in project.specs.values() for loc, path, decides in spec.body.trust_files(spec.doc)]
    by_root: dict[str, set[str]] = {}
    for *_, inside in named:
        for root, rel in inside:
            by_root.setdefault(root, set()).add(rel)
    wrote = {(root, n) for root, rels in by_root.items() for n in written(root, ref, sorted(rels))}  # (a call each)
    for spec, loc, decides, inside in named:
        hit = next(((root, rel) for root, rel in inside if (root, rel) in wrote), None)
        if hit is not None:
            shown = os.path.relpath(os.path.join(*hit), os.getcwd())
            out.append(spec.doc.diagnostic(
                ("spec", *loc), f"{shown} is a file the change under review wrote (it differs from {ref}), and it "
                f"decides {decides}", "it is used by the apply once the change is merged (or approved); keep the "
                "file outside the repository if changes to it must be planned before"))
    for spec in project.specs.values():
        if spec.doc.file in project.unreviewed:
            for loc, lets in spec.body.trust_switches():
                out.append(spec.doc.diagnostic(
                    ("spec", *loc), f"{lets}, and this file is the change under review's (it differs from {ref})",
                    "check the hosts (https with validateCerts and a caFile, or kerberos); the apply uses it once "
                    "the change is merged (or approved)"))
    return out


def credential_problems(project: Project) -> list[Diagnostic]:
    """A change's plan must not send a secret of the runner anywhere the trusted ref does not, nor read a
    variable of its environment the ref does not. A pull request that points a HostGroup's host, or a Bundle's
    registry, at a server of its own (a public certificate checks out) would have the plan log in there with the
    runner's password or token; one that writes `${SECRET_TOKEN}` into a Bundle's ref had the token printed in
    its own plan. Under a trusted ref, each place a spec file the change wrote sends a secret to
    (KindSpec.credential_uses) must be one where a spec of the ref sends that same secret, and each variable it
    expands (KindSpec.variables) one a spec of the ref expands; else it is a spec error at the field. An apply,
    after the review, goes where the specs say."""
    ref = trust().ref
    wrote = [s for s in project.specs.values() if s.doc.file in project.unreviewed]
    uses = [(s, u) for s in wrote for u in s.body.credential_uses(Path(os.path.abspath(s.doc.file)).parent)]
    reads = [(s, v) for s in wrote for v in s.body.variables()]
    if not ref or not (uses or reads):
        return []
    bodies = _at_ref_bodies(ref, tuple(sorted({r for r in (_repo(f) for f in project.files) if r is not None})))
    sent = {(secret, to) for body, base in bodies for _, secret, to in body.credential_uses(base)}
    read = {name for body, _ in bodies for _, name in body.variables()}
    out = [spec.doc.diagnostic(("spec", *loc), f"the plan would send {secret} to {to}, where {ref} sends it "
                               "nowhere, and this file is the change under review's",
                               "a change's plan sends secrets only where the reviewed specs do; the apply, once "
                               "the change is merged (or approved), goes where it says")
           for spec, (loc, secret, to) in uses if (secret, to) not in sent]
    return out + [spec.doc.diagnostic(("spec", *loc), f"${{{name}}} is read from the runner's environment, which no "
                                      f"spec of {ref} reads, and this file is the change under review's",
                                      "a change's plan reads only the variables the reviewed specs do; the apply, "
                                      "once the change is merged (or approved), reads it")
                  for spec, (loc, name) in reads if name not in read]


def _at_ref_bodies(ref: str, roots: tuple[str, ...]) -> list[tuple[Any, Path]]:
    """The HostGroups and Bundles of `ref` (wherever they are in its repositories), each with its directory."""
    from specs.kinds import KINDS

    out: list[tuple[Any, Path]] = []
    for root in roots:
        for doc in _docs_at(ref, root, "HostGroup", "Bundle")[0]:
            spec = doc.data.get("spec") if isinstance(doc.data, dict) else None
            if not isinstance(spec, dict):
                continue
            try:
                out.append((KINDS[str(_kind(doc))].model_validate(spec),
                            Path(root) / os.path.dirname(doc.file.split(":", 1)[1])))  # (REF:path)
            except ValueError:
                continue  # (not valid at the ref: sends and reads nothing)
    return out
