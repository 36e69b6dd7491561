"""Load a set of specs into a validated Project: every problem is reported at once, before any live read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from specs import graph
from specs.base import ADDRESS_RE, diagnostics_from
from specs.errors import Diagnostic, SpecError
from specs.kinds import API_VERSION, KINDS, Envelope, KindSpec
from specs.loader import Document, Loc, find_spec_files, load_files
from specs.stack import Stack


@dataclass(frozen=True)
class Spec:
    """One validated spec document."""

    kind: str
    name: str
    labels: dict[str, str]
    depends_on: tuple[str, ...]
    body: KindSpec
    doc: Document

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class Project:
    specs: dict[str, Spec]  # by address
    edges: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    # spec files the change under review edits (CI reviewing a pull request): commands they add or edit must
    # not run before the review, so their guards are not run by a plan (providers defer them to apply)
    unreviewed: frozenset[str] = frozenset()

    def of_kind(self, kind: str) -> list[Spec]:
        return [s for s in self.specs.values() if s.kind == kind]

    @cached_property
    def stack(self) -> Stack:
        """The repository and spec root these specs come from (specs/stack.py): what recon makes carries it.
        Worked out once (it reads .git/config): every Model's expansion asks for it."""
        return Stack.of(self.files)

    def order(self) -> list[list[str]]:
        return graph.levels(self.edges)


def load_project(paths: Sequence[str | Path], preflight: bool = True) -> Project:
    """Load and check the specs. `preflight` also checks what a plan needs from the environment."""
    files, problems = find_spec_files(paths)
    docs, bad = load_files(files)
    problems.extend(bad)
    return project_of(docs, [str(f) for f in files], problems, preflight)


def project_of(docs: Sequence[Document], files: Sequence[str], problems: list[Diagnostic] | None = None,
               preflight: bool = True) -> Project:
    """A Project of documents already loaded (from files, or from git at a ref); `problems` found on the way
    are reported with its own. SpecError with every problem at once."""
    problems = list(problems or [])
    unreadable = bool(problems)  # a file that did not load may declare what others refer to
    specs: dict[str, Spec] = {}
    invalid: set[str] = set()  # declared but invalid: references to them are not reported again
    broken: list[Document] = []
    for doc in docs:
        spec = _validate(doc, problems, preflight)
        if spec is None:
            invalid.add(_declared(doc))
            broken.append(doc)
            continue
        if spec.address in specs:
            first = specs[spec.address].doc
            problems.append(doc.diagnostic(
                ("metadata", "name"), f"{spec.address} is declared twice (first at {first.file}:{first.line})",
                "give each spec of a kind its own metadata.name",
            ))
            continue
        specs[spec.address] = spec
    edges = _edges(specs, problems, invalid, unreadable)
    if not unreadable:
        problems.extend(_broken_refs(broken, specs, invalid))
    if not problems:
        cycle = graph.find_cycle(edges)
        if cycle:
            problems.append(specs[cycle[0]].doc.diagnostic(
                ("metadata", "dependsOn"), "dependency cycle: " + " -> ".join(cycle),
                "remove one of these dependsOn entries so the specs can be ordered",
            ))
    if problems:
        raise SpecError(problems)
    for kind, model in KINDS.items():
        problems.extend(model.project_problems([(s.body, s.doc) for s in specs.values() if s.kind == kind]))
    if problems:
        raise SpecError(problems)
    return Project(specs, edges, list(files))


def _broken_refs(docs: Sequence[Document], specs: dict[str, Spec], invalid: set[str]) -> list[Diagnostic]:
    """What an invalid document refers to that no spec declares, found in its raw data as far as it can be
    read: reported with the document's own problems, not after they are fixed."""
    out = []
    for doc in docs:
        data = doc.data if isinstance(doc.data, dict) else {}
        model = KINDS.get(str(data.get("kind")))
        spec = data.get("spec")
        if model is None or not isinstance(spec, dict):
            continue
        try:
            refs = model.model_construct(**spec).references()  # unvalidated: a best effort, never a failure
        except Exception:
            continue
        for loc, target in refs:
            if isinstance(target, str) and target not in specs and target not in invalid and ADDRESS_RE.match(target):
                out.append(doc.diagnostic(("spec", *loc), f"refers to {target}, which no spec declares",
                                          _suggest(target, specs)))
    return out


def _declared(doc: Document) -> str:
    data: dict[str, Any] = doc.data if isinstance(doc.data, dict) else {}
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{data.get('kind')}/{name}"


def _validate(doc: Document, problems: list[Diagnostic], preflight: bool) -> Spec | None:
    if not isinstance(doc.data, dict):
        problems.append(doc.diagnostic((), f"a spec must be a mapping, got {type(doc.data).__name__}",
                                       "start the document with 'apiVersion: recon/v1' and 'kind:'"))
        return None
    try:
        env = Envelope.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(diagnostics_from(exc, doc, (), Envelope, doc.data))
        return None
    ok = True
    if env.apiVersion != API_VERSION:
        problems.append(doc.diagnostic(("apiVersion",), f"unknown apiVersion {env.apiVersion!r}",
                                       f"use 'apiVersion: {API_VERSION}'"))
        ok = False
    model = KINDS.get(env.kind)
    if model is None:
        problems.append(doc.diagnostic(("kind",), f"unknown kind {env.kind!r}",
                                       "use one of: " + ", ".join(sorted(KINDS))))
        return None
    try:
        body = model.model_validate(env.spec)
    except ValidationError as exc:
        problems.extend(diagnostics_from(exc, doc, ("spec",), model, env.spec))
        return None
    for p in body.problems(doc) + (body.preflight(doc) if preflight else []):
        problems.append(doc.diagnostic(("spec", *p.loc), p.summary, p.hint))
        ok = False
    for i, dep in enumerate(env.metadata.dependsOn):
        if not ADDRESS_RE.match(dep):
            problems.append(doc.diagnostic(("metadata", "dependsOn", i), f"{dep!r} is not a spec address",
                                           "write it as Kind/name, e.g. HostState/base"))
            ok = False
    if not ok:
        return None
    return Spec(env.kind, env.metadata.name, dict(env.metadata.labels), tuple(env.metadata.dependsOn), body, doc)


def _edges(
    specs: dict[str, Spec], problems: list[Diagnostic], invalid: set[str], unreadable: bool
) -> dict[str, list[str]]:
    edges: dict[str, list[str]] = {}
    for addr, spec in specs.items():
        deps: list[str] = []
        refs: list[tuple[Loc, str]] = [(("metadata", "dependsOn", i), d) for i, d in enumerate(spec.depends_on)]
        refs += [(("spec", *loc), target) for loc, target in spec.body.references()]
        for loc, target in refs:
            if target == addr:
                problems.append(spec.doc.diagnostic(loc, f"{addr} depends on itself", "remove this entry"))
            elif target in invalid or (unreadable and target not in specs):
                continue
            elif target not in specs:
                problems.append(spec.doc.diagnostic(loc, f"refers to {target}, which no spec declares",
                                                    _suggest(target, specs)))
            elif target not in deps:
                deps.append(target)
        edges[addr] = deps
    return edges


def _suggest(target: str, specs: dict[str, Spec]) -> str:
    import difflib

    close = difflib.get_close_matches(target, list(specs), n=1)
    if close:
        return f"did you mean {close[0]}?"
    kind = target.split("/")[0]
    have = sorted(a for a in specs if a.startswith(kind + "/"))
    return ("declared: " + ", ".join(have[:8])) if have else f"add a {kind} spec with that name"
