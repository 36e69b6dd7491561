"""The layers only point down: specs/ (the language users write) <- providers/ (the contract and its
implementations) <- reconciler/ (the engine, then the CLI, the Action and draft as front ends).
No import, at module level or inside a function, points up a layer, and no modules import each other
in a circle. The registry's providers implement the contract."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import providers
from providers.contract import ABILITIES

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"specs": 0, "providers": 1, "reconciler": 2}


def _modules() -> dict[str, Path]:
    out = {}
    for top in LAYERS:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if "templates" in rel.parts:
                continue  # files of `recon init`, not recon's own code
            name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        edges[name] = found
    return edges


def test_no_import_points_up_a_layer() -> None:
    edges = _imports(_modules())
    up = sorted(f"{a} -> {b}" for a, bs in edges.items() for b in bs
                if LAYERS[b.split(".")[0]] > LAYERS[a.split(".")[0]])
    assert up == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    edges = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert circles == []


@pytest.mark.parametrize("kind", sorted(providers.PROVIDERS))
def test_every_registered_provider_implements_the_contract(kind: str) -> None:
    provider = providers.provider_for(kind)  # checked when loaded: the contract and the declared abilities
    assert provider is not None and kind in provider.kinds
    assert providers.abilities(kind) <= set(ABILITIES)


def test_the_registry_refuses_a_provider_that_lacks_part_of_the_contract() -> None:
    class Half:
        kinds = ("Thing",)

        def expand(self) -> None: ...

    with pytest.raises(providers.ContractError, match="missing: read, diff, apply"):
        providers.check(Half(), "Thing", frozenset())


def test_the_registry_refuses_a_provider_whose_abilities_differ_from_what_it_declares() -> None:
    class Undoer:
        kinds = ("Thing",)

        def expand(self) -> None: ...
        def read(self) -> None: ...
        def diff(self) -> None: ...
        def apply(self) -> None: ...
        def undo(self) -> None: ...

    with pytest.raises(providers.ContractError, match=r"declares the abilities \[\] but implements \['undo'\]"):
        providers.check(Undoer(), "Thing", frozenset())


def test_the_abilities_the_providers_declare() -> None:
    assert providers.abilities("HostState") == {"undo", "locking", "actions"}
    assert providers.abilities("Bundle") == {"locking"}
    assert providers.abilities("Model") == {"orphans", "locking", "validation", "actions"}


def test_provider_commands_come_through_the_registry() -> None:
    assert set(providers.commands()) == {"bundle"}
    cli = (ROOT / "reconciler" / "cli.py").read_text(encoding="utf-8")
    assert "providers.oras" not in cli


@pytest.mark.parametrize("kind", sorted(providers.PROVIDERS))
def test_every_registered_provider_states_its_desired_and_live_types(kind: str) -> None:
    """A line `_: type[Provider[D, L]] = Class` in the provider's module, which mypy checks (as a Go
    `var _ resource.Resource = &X{}` assertion): the contract is implemented with those types."""
    module, _, cls = providers.PROVIDERS[kind].path.partition(":")
    tree = ast.parse((ROOT / Path(*module.split("."))).with_suffix(".py").read_text(encoding="utf-8"))
    stated = [node for node in tree.body if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Name)
              and node.value.id == cls and ast.unparse(node.annotation).startswith("type[Provider[")]
    assert len(stated) == 1


def test_the_error_tree_and_the_registry_import_no_spec_models() -> None:
    """`recon --help` builds the CLI, which takes the error tree and the providers' commands: neither may
    load pydantic and every spec kind (it once doubled --help's time)."""
    import subprocess
    import sys

    probe = ("import sys, specs.errors, providers, reconciler.cli; "
             "print(sorted(m for m in ('pydantic', 'specs.kinds', 'ruamel.yaml') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_test_peers_share_no_code_with_recon() -> None:
    """A test server of the project's own must not take its behaviour from recon: the WinRM peer recognised
    recon's scripts by importing recon's PowerShell prelude and bootstrap, so a change to them passed their own
    emulator unchecked. No module of tests/peers imports specs, providers or reconciler, anywhere in it."""
    found = []
    for path in sorted((ROOT / "tests" / "peers").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in LAYERS]
    assert found == []
