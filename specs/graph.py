"""Dependencies between specs: explicit `dependsOn` and implicit references; order and cycles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as a list of nodes (first repeated at the end), or None."""
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = 1
        stack.append(node)
        for dep in edges.get(node, ()):
            if color.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if color.get(dep, 0) == 0 and dep in edges:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        color[node] = 2
        return None

    for node in sorted(edges):
        if color.get(node, 0) == 0:
            found = visit(node)
            if found:
                return found
    return None


def levels(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Nodes in waves: every node comes after all it depends on. The graph must be acyclic."""
    depth: dict[str, int] = {}

    def level(node: str) -> int:
        if node not in depth:
            deps = [d for d in edges.get(node, ()) if d in edges]
            depth[node] = 1 + max((level(d) for d in deps), default=-1)
        return depth[node]

    for node in edges:
        level(node)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in sorted(edges):
        out[depth[node]].append(node)
    return out


def dependencies(edges: Mapping[str, Sequence[str]], roots: set[str]) -> set[str]:
    """Every node the roots depend on, directly or not (the roots themselves only when a cycle leads back)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        for dep in edges.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def dependents(edges: Mapping[str, Sequence[str]], roots: set[str]) -> set[str]:
    """The roots and every node that depends on them, directly or not."""
    reverse: dict[str, set[str]] = {}
    for node, deps in edges.items():
        for dep in deps:
            reverse.setdefault(dep, set()).add(node)
    seen = set(roots)
    todo = list(roots)
    while todo:
        for nxt in reverse.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen
