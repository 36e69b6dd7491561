"""What a request can name: the groups, hosts, HostStates, Models and Bundles of the project, and how a
phrase of the request finds one of them. A phrase finds a spec by its name or its labels, allowing
small misspellings; it never picks one of several: more than one match, or none, is a question."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from reconciler.policy import environment_of, governing
from specs.hostgroup import HostGroupSpec
from specs.project import Project, Spec

FILLER = {"all", "the", "every", "each", "of", "our", "my", "group", "groups", "server", "servers", "host", "hosts",
          "machine", "machines", "box", "boxes", "nodes", "node", "fleet", "a", "an"}


def words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def close(a: str, b: str) -> bool:
    """The same word, allowing a plural and a small misspelling (one letter in five)."""
    a, b = _stem(a), _stem(b)
    return a == b or (min(len(a), len(b)) >= 4 and difflib.SequenceMatcher(None, a, b).ratio() >= 0.8)


@dataclass
class Found:
    spec: Spec | None = None
    question: str = ""


@dataclass
class Catalog:
    project: Project
    environments: dict[str, str] = field(default_factory=dict)  # spec address -> environment name

    @classmethod
    def of(cls, project: Project) -> Catalog:
        envs = governing(project).environments
        found = {}
        for spec in project.specs.values():
            env = environment_of(spec, envs)
            if env is not None:
                found[spec.address] = env.name
        return cls(project, found)

    def specs(self, kind: str) -> list[Spec]:
        return sorted(self.project.of_kind(kind), key=lambda s: s.name)

    def environment_names(self) -> set[str]:
        return {e.name for e in governing(self.project).environments}

    def group(self, phrase: str) -> Found:
        """The HostGroup a phrase such as "CIS servers" or "all web servers" names, by name, labels or host."""
        wanted = [w for w in words(phrase) if w not in FILLER]
        groups = self.specs("HostGroup")
        if not wanted:
            return Found(question=f"which group of hosts? known: {_names(groups)}")
        exact = [g for g in groups if g.name.lower() == "-".join(wanted)]
        if exact:
            return Found(exact[0])
        hits = []
        for g in groups:
            assert isinstance(g.body, HostGroupSpec)
            vocabulary = words(g.name) + [w for v in g.labels.values() for w in words(v)]
            if all(any(close(w, v) for v in vocabulary) for w in wanted):
                hits.append(g)
        if len(hits) == 1:
            return Found(hits[0])
        if len(hits) > 1:
            return Found(question=f"'{phrase}' matches several groups: {_names(hits)}; say which")
        hosts = [(g, h.name) for g in groups if isinstance(g.body, HostGroupSpec) for h in g.body.hosts
                 if h.name.lower() == "-".join(wanted) or h.name.lower() == phrase.strip().lower()]
        if hosts:
            g, h = hosts[0]
            return Found(question=f"{h} is a host of the group {g.name}: a HostState holds on a whole group; "
                         f"draft it for {g.name}, and apply it to {h} alone with recon plan --target "
                         f"'HostState/NAME@{h}'")
        return Found(question=f"no group matches '{phrase}'; known groups: {_names(groups)}")

    def one(self, kind: str, phrase: str, environment: str = "") -> Found:
        """The spec of a kind a phrase names (allowing a misspelling), within an environment if given."""
        candidates = self.specs(kind)
        if environment:
            candidates = [s for s in candidates if self.environments.get(s.address) == environment]
        wanted = "-".join(words(phrase))
        exact = [s for s in candidates if s.name.lower() == wanted]
        hits = exact or [s for s in candidates if s.name.lower().startswith(wanted + "-")
                         or close(s.name.lower(), wanted)]
        where = f" in {environment}" if environment else ""
        if len(hits) == 1:
            return Found(hits[0])
        if len(hits) > 1:
            shown = ", ".join(f"{s.name} ({self.environments.get(s.address, 'no environment')})" for s in hits)
            return Found(question=f"'{phrase}' matches several {kind}s{where}: {shown}; say which, or name the "
                         "environment (… in stage)")
        return Found(question=f"no {kind} named '{phrase}'{where}; known: {_names(self.specs(kind))}")


def _names(specs: list[Spec]) -> str:
    return ", ".join(s.name for s in specs) or "(none)"
