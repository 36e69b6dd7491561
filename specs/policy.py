"""Policy: environments (which specs belong to which, and which need a confirmation), teams, and rules
that allow or deny changes, and who may make them.

Within one Policy spec the rules are read in order and the first that matches a change decides that
Policy's verdict; across Policy specs a deny wins (so an exception is written above the deny it
excepts, in the same Policy: a Policy that sorts first cannot switch another's deny off). A change no
rule matches is allowed. Which Policy governs, and what a pull request may change of it, is decided
by reconciler/policy.py (the trusted Policy)."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from specs.base import KindSpec, Problem, StrictModel
from specs.errors import Diagnostic
from specs.loader import Document

ACTIONS = ("create", "update", "replace", "delete", "restart", "run")
SUBJECT_RE = re.compile(r"^(team:)?[A-Za-z0-9][A-Za-z0-9._@-]*$")


class Match(StrictModel):
    """Which specs belong to an environment: any of these selects a spec."""

    labels: dict[str, str] = Field(default_factory=dict, description="Specs whose labels include all of these.")
    paths: list[str] = Field(default_factory=list, description="Globs of spec file paths, e.g. specs/prod/**.")
    specs: list[str] = Field(default_factory=list, description="Globs of spec addresses, e.g. HostState/web-*.")


class Environment(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="e.g. dev, stage, prod.")
    match: Match = Field(description="The specs of this environment.")
    confirm: bool = Field(
        default=False,
        description="Apply needs `--confirm PLAN_ID` (or, on a terminal, typing the environment's name).",
    )


class FieldCondition(StrictModel):
    """A condition on the new value of one field of a change (the `path` of its field change)."""

    path: str = Field(description="The field, as the plan names it: e.g. mode, replicas, image, content.")
    matches: list[str] | None = Field(default=None, description="Matches when the value matches one of these globs.")
    notMatches: list[str] | None = Field(
        default=None, description="Matches when the value matches none of these globs (e.g. allowed registries)."
    )
    above: float | None = Field(default=None, description="Matches when the value is a number above this.")
    below: float | None = Field(default=None, description="Matches when the value is a number below this.")

    @model_validator(mode="after")
    def _one(self) -> FieldCondition:
        given = [n for n in ("matches", "notMatches", "above", "below") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("a field condition needs exactly one of matches, notMatches, above, below")
        return self


class When(StrictModel):
    """All given conditions must hold for a rule to match a change; a list holds when any item does."""

    environments: list[str] = Field(default_factory=list, description="Environments of the change's spec.")
    kinds: list[str] = Field(default_factory=list, description="Spec kinds, e.g. HostState, Bundle.")
    specs: list[str] = Field(default_factory=list, description="Globs of spec addresses.")
    resources: list[str] = Field(default_factory=list, description="Resource types, e.g. file, service, bundle.")
    actions: list[Literal["create", "update", "replace", "delete", "restart", "run", "scale", "logs",
                          "health"]] = Field(
        default_factory=list, description="Actions of the change; scale, logs and health (and restart) also match "
        "those operations of `recon do`."
    )
    targets: list[str] = Field(default_factory=list, description="Globs of targets (hosts, registries).")
    addresses: list[str] = Field(default_factory=list, description="Globs of resource addresses.")
    field: FieldCondition | None = Field(default=None, description="A condition on a field's new value.")
    subjects: list[str] = Field(
        default_factory=list,
        description="Who runs recon: user names and `team:NAME` (a team of this Policy's teams). The user is the "
        "actor GitHub Actions vouches for (GITHUB_ACTOR) in a workflow, else the OS user; never a commit's author.")

    @model_validator(mode="after")
    def _subjects(self) -> When:
        for s in self.subjects:
            if not SUBJECT_RE.match(s):
                raise ValueError(f"subject {s!r}: write a user name (e.g. alice) or team:NAME (e.g. team:ops)")
        return self


class Rule(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Named in plans and refusals.")
    effect: Literal["allow", "deny"] = Field(description="What a match decides.")
    when: When = Field(default_factory=When, description="What the rule matches (everything when empty).")
    message: str = Field(default="", description="Why, shown with a denied change.")


class DriftIgnore(StrictModel):
    """Drift `recon drift` does not count: known and accepted, with a reason, until it expires."""

    addresses: list[str] = Field(min_length=1, description="Globs of resource ids or addresses, e.g. "
                                 "'HostState/web/file:/etc/motd@*'.")
    reason: str = Field(min_length=1, description="Why this drift is accepted (shown in every drift report).")
    expires: datetime.date | None = Field(
        default=None, description="After this date (YYYY-MM-DD) the rule no longer applies and is reported expired."
    )


class PolicySpec(KindSpec):
    kind_name: ClassVar[str] = "Policy"

    environments: list[Environment] = Field(default_factory=list, description="Environments and their specs.")
    rules: list[Rule] = Field(default_factory=list, description="Allow and deny rules, first match decides.")
    driftIgnore: list[DriftIgnore] = Field(default_factory=list, description="Drift to leave out of drift reports.")
    unreviewedApply: Literal["allow", "refuse"] | None = Field(
        default=None, description="Whether CI may apply a plan no pull request reviewed (`recon apply --unreviewed`: "
        "the reviewed plan was stale, or there was none). Refused while any trusted Policy exists, unless one says "
        "allow.")
    sourceRoots: list[str] = Field(
        default_factory=list, description="Directories outside the repository that file and bundle sources may be "
        "read from (absolute paths), e.g. /srv/models. Sources resolve inside the repository otherwise; only the "
        "trusted Policy's roots count.")
    teams: dict[str, list[str]] = Field(
        default_factory=dict, description="Teams for rules' subjects (`team:NAME`): the user names of each.")

    def problems(self, doc: Document) -> list[Problem]:
        out: list[Problem] = []
        for i, root in enumerate(self.sourceRoots):
            if not root.startswith("/") or root.rstrip("/") == "":
                out.append(Problem(("sourceRoots", i), f"source root {root!r} is not an absolute directory",
                                   "give an absolute path other than /, e.g. /srv/models"))
        names = [e.name for e in self.environments]
        for i, name in enumerate(names):
            if name in names[:i]:
                out.append(Problem(("environments", i, "name"), f"environment '{name}' is declared twice",
                                   "give each environment its own name"))
        rules = [r.name for r in self.rules]
        for i, rule in enumerate(self.rules):
            if rule.name in rules[:i]:
                out.append(Problem(("rules", i, "name"), f"rule '{rule.name}' is declared twice",
                                   "give each rule its own name"))
        return out

    @classmethod
    def project_problems(cls, specs: Sequence[tuple[KindSpec, Document]]) -> list[Diagnostic]:
        """Rules may only name environments and teams some Policy declares."""
        policies = [(body, doc) for body, doc in specs if isinstance(body, PolicySpec)]
        known = {e.name for body, _ in policies for e in body.environments}
        teams = {t for body, _ in policies for t in body.teams}
        out: list[Diagnostic] = []
        for body, doc in policies:
            for i, rule in enumerate(body.rules):
                for j, subject in enumerate(rule.when.subjects):
                    if subject.startswith("team:") and subject[5:] not in teams:
                        out.append(doc.diagnostic(
                            ("spec", "rules", i, "when", "subjects", j), f"no Policy declares team '{subject[5:]}'",
                            f"declare it under teams, or use one of: {', '.join(sorted(teams)) or '(none)'}"))
                for j, env in enumerate(rule.when.environments):
                    if env not in known:
                        out.append(doc.diagnostic(
                            ("spec", "rules", i, "when", "environments", j), f"no Policy declares environment '{env}'",
                            f"declare it under environments, or use one of: {', '.join(sorted(known)) or '(none)'}"))
        return out
