"""Find spec files and load their YAML documents, keeping file:line:column of every node.

ruamel.yaml composes each document into nodes that carry their start marks (with the C parser
of ruamel.yaml.clib where it is installed: about 8x faster than the pure-Python round-trip
parser), then constructs plain Python data from them (so pydantic's strict mode sees dicts,
lists and str) and a side table from field path to position, used to point diagnostics at the
right line. YAML 1.2: `0644` is the integer 644 and `yes` is a string.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specs.errors import Diagnostic

SPEC_SUFFIXES = (".yaml", ".yml")
Loc = tuple[str | int, ...]


@dataclass
class Document:
    """One YAML document of a spec file, as plain data with positions."""

    file: str
    index: int  # 0-based position of the document in its file
    line: int  # 1-based line where the document starts
    data: Any
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    digest: str = ""

    def position(self, loc: Sequence[str | int]) -> tuple[int, int]:
        """The (line, column) of the deepest node of `loc` that has a known position."""
        loc = tuple(loc)
        while loc:
            if loc in self.positions:
                return self.positions[loc]
            loc = loc[:-1]
        return self.positions.get((), (self.line, 1))

    def diagnostic(self, loc: Sequence[str | int], summary: str, hint: str | None = None) -> Diagnostic:
        line, col = self.position(loc)
        return Diagnostic(summary, self.file, line, col, format_loc(loc) or None, hint)


def format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def find_spec_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Spec files under the given files and directories, sorted, recursively."""
    files: list[Path] = []
    problems: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.suffix in SPEC_SUFFIXES and p.is_file() and not _hidden(p.relative_to(path))
            )
            if not found:
                problems.append(Diagnostic(
                    "no spec files (*.yaml, *.yml) in this directory", str(path), hint=_elsewhere(path)))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Diagnostic("no such file or directory", str(path), hint=_elsewhere(path)))
    unique = list(dict.fromkeys(files))
    return unique, problems


def _elsewhere(path: Path) -> str:
    """The fix for a path without specs: the directories nearby that hold recon specs, if any."""
    found: list[str] = []
    here = Path(".")
    read = 0
    for depth in ("*", "*/*", "*/*/*"):
        for f in sorted(here.glob(f"{depth}.yaml")):
            if len(found) >= 3 or read >= 200 or any(part.startswith(".") for part in f.parts):
                continue
            read += 1
            try:
                head = f.read_text(encoding="utf-8", errors="replace")[:2000]
            except OSError:
                continue
            parent = f.parent.as_posix()
            if "apiVersion: recon/" in head and parent not in found and Path(parent) != path:
                found.append(parent)
    default = "recon looks in specs/ when none is given"
    if found:
        return f"give the directory that holds your specs, e.g. `recon plan {found[0]}` ({', '.join(found)} hold some)"
    return f"check the path, or give the directory that holds your specs ({default})"


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def load_files(files: Sequence[Path]) -> tuple[list[Document], list[Diagnostic]]:
    docs: list[Document] = []
    problems: list[Diagnostic] = []
    for path in files:
        got, bad = load_file(path)
        docs.extend(got)
        problems.extend(bad)
    return docs, problems


def load_file(path: Path) -> tuple[list[Document], list[Diagnostic]]:
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [], [Diagnostic(f"cannot read: {exc.strerror}", name)]
    return load_bytes(name, raw)


def load_bytes(name: str, raw: bytes) -> tuple[list[Document], list[Diagnostic]]:
    """The documents of one spec file's content; `name` is what diagnostics call it (a path, or REF:path for a
    file read from git)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [Diagnostic(f"not UTF-8 text (byte {exc.start})", name, hint="save the file as UTF-8")]
    if len(raw) > MAX_BYTES:
        return [], [Diagnostic(f"the file has {len(raw)} bytes; a spec file may have {MAX_BYTES}", name, 1, 1,
                               hint="split it into several files")]
    yaml = YAML(typ="safe", pure=False)  # libyaml-backed parser when ruamel.yaml.clib is there
    docs: list[Document] = []
    try:
        for index, node in enumerate(yaml.compose_all(text)):
            if node is None:
                continue
            too_big = _too_big(node)
            if too_big:
                line = node.start_mark.line + 1
                return [], [Diagnostic(too_big, name, line, node.start_mark.column + 1, None,
                                       "write the values out; a spec is small, flat data")]
            data = yaml.constructor.construct_document(node)
            if data is None:
                continue
            positions: dict[Loc, tuple[int, int]] = {}
            line = node.start_mark.line + 1
            positions[()] = (line, node.start_mark.column + 1)
            _positions(node, (), positions)
            digest = hashlib.sha256(_canonical(data).encode()).hexdigest()
            docs.append(Document(name, index, line, data, positions, digest))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        if "duplicate key" in problem:
            problem = problem.split(" with value")[0]
            hint = "each key may appear once in a mapping; remove or rename one of them"
        else:
            hint = "fix the YAML syntax at this place (indentation, a missing ':' or a closing bracket)"
        line = mark.line + 1 if mark is not None else None
        col = mark.column + 1 if mark is not None else None
        return [], [Diagnostic(f"invalid YAML: {problem}", name, line, col, None, hint)]
    except YAMLError as exc:
        return [], [Diagnostic(f"invalid YAML: {exc}", name)]
    except RecursionError:
        return [], [Diagnostic(f"invalid YAML: nested deeper than {MAX_DEPTH} levels", name, 1, 1,
                               hint="a spec is small, flat data: write it with fewer levels")]
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        return [], [Diagnostic(f"invalid YAML value: {str(exc).split(';')[0]}", name, 1, 1,
                               hint="write the value as a quoted string, or a smaller number")]
    if not docs:
        return [], [Diagnostic(
            "the file holds no spec", name, 1, 1,
            hint="add a document with apiVersion, kind, metadata and spec, or delete the file",
        )]
    return docs, []


MAX_BYTES = 10 << 20  # a spec file larger than this is refused: specs are small
MAX_VALUES = 200_000  # values in one document, aliases counted each time they are used (alias bombs)
MAX_DEPTH = 64  # levels of nesting in one document


def _too_big(root: Any) -> str:
    """Why a composed document is too big to build (too many values once aliases expand, or too deep),
    found in bounded time; "" when it is not."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    todo: list[tuple[Any, int]] = [(root, 1)]
    seen = 0
    while todo:
        node, depth = todo.pop()
        seen += 1
        if seen > MAX_VALUES:
            return (f"the document holds more than {MAX_VALUES} values once its aliases are expanded (aliases "
                    "of aliases grow without end)")
        if depth > MAX_DEPTH:
            return f"the document is nested deeper than {MAX_DEPTH} levels"
        if isinstance(node, MappingNode):
            todo.extend((n, depth + 1) for pair in node.value for n in pair)
        elif isinstance(node, SequenceNode):
            todo.extend((n, depth + 1) for n in node.value)
    return ""


def _positions(node: Any, loc: Loc, out: dict[Loc, tuple[int, int]]) -> None:
    """Record (line, column), 1-based, of every mapping key and sequence item below `node`."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            sub = (*loc, str(key_node.value))
            out[sub] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _positions(value_node, sub, out)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*loc, i)
            out[sub] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _positions(item, sub, out)


def _canonical(data: Any) -> str:
    import json

    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # keys of several types (1: and a:), or floats JSON has no word for
        return json.dumps(_plain(data), sort_keys=True, separators=(",", ":"), default=str)


def _plain(data: Any) -> Any:
    """Mapping keys as text naming their type, floats as their repr: what a digest can sort and write."""
    if isinstance(data, dict):
        return {k if isinstance(k, str) else f"{type(k).__name__}:{k!r}": _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    if isinstance(data, float):
        return repr(data)
    return data
