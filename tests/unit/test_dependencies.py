"""Issue 24: every declared dependency earns its place. Each runtime dependency of pyproject.toml is imported by
recon's own packages (at module level or inside the function that needs it), or the test names where it is used
otherwise. A dependency nothing uses fails here."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("reconciler", "specs", "providers")
MODULE = {"pywinrm": "winrm", "kubernetes-validate": "kubernetes_validate", "ruamel.yaml": "ruamel.yaml",
          "gitpython": "git"}
# used without an import statement of its own name: where, and the text that shows it
INDIRECT = {"ruamel.yaml.clib": ("specs/loader.py", 'pure=False')}  # the C parser ruamel.yaml picks itself


def _imported() -> set[str]:
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module)
    return names


def test_every_declared_dependency_is_used() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    imported = _imported()
    unused = []
    for requirement in declared:
        dist = re.split(r"[\s\[<>=;!~]", requirement, maxsplit=1)[0].lower()
        if dist in INDIRECT:
            file, mark = INDIRECT[dist]
            assert mark in (ROOT / file).read_text(), f"{dist}: {file} no longer uses it ({mark})"
            continue
        module = MODULE.get(dist, dist.replace("-", "_"))
        if not any(name == module or name.startswith(module + ".") for name in imported):
            unused.append(dist)
    assert not unused, f"declared in pyproject.toml but never imported by {', '.join(PACKAGES)}: {unused}"
