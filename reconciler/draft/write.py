"""A draft as text (new files, diffs of changed ones), checked by loading the project as it would be, and
written: changed documents edited in place, so the comments and order of the file stay."""

from __future__ import annotations

import difflib
import io
import os
import shutil
import tempfile
from pathlib import Path

from ruamel.yaml import YAML

from reconciler.draft.model import Draft, Edit, set_at
from specs.errors import Diagnostic, SpecError, UsageError


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 120
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def new_text(edit: Edit, draft: Draft) -> str:
    head = f"# Drafted by recon draft from: {draft.request!r}\n"
    if draft.confirm:
        head += f"# Needs confirmation: {draft.confirm}.\n"
    buf = io.StringIO()
    _yaml().dump(edit.document, buf)
    return head + buf.getvalue()


def edited_text(edit: Edit) -> str:
    """The file of an existing document with the edit's places set, all else as it was."""
    y = _yaml()
    docs = list(y.load_all(edit.file.read_text()))
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == edit.kind and (doc.get("metadata") or {}).get(
                "name") == edit.name:
            for loc, value in edit.sets:
                set_at(doc, loc, value)
    buf = io.StringIO()
    y.dump_all(docs, buf)
    return buf.getvalue()


def texts(draft: Draft) -> dict[Path, str]:
    """Every file the draft writes, with its whole new text."""
    out: dict[Path, str] = {}
    for edit in draft.edits:
        if edit.new:
            out[edit.file] = new_text(edit, draft)
        else:
            out[edit.file] = edited_text(edit)
    return out


def show(draft: Draft, files: dict[Path, str]) -> str:
    parts = []
    for path, text in files.items():
        if path.exists():
            diff = difflib.unified_diff(path.read_text().splitlines(keepends=True), text.splitlines(keepends=True),
                                        str(path), str(path))
            parts.append("".join(diff) or f"# {path}: no change\n")
        else:
            parts.append(f"# new file {path}\n{text}")
    return "\n".join(parts)


def check(specs_dir: Path, files: dict[Path, str]) -> None:
    """Load the project as it would be with these files: SpecError (naming the real files) if it is not valid.
    The copy is made beside the specs directory, of hard links, so relative paths outside it still resolve."""
    from specs.project import load_project

    specs_dir = specs_dir.resolve()
    try:
        copy = Path(tempfile.mkdtemp(prefix=".recon-draft-", dir=specs_dir.parent))  # the same depth as the specs
    except OSError as exc:
        raise UsageError(f"cannot check the draft: no scratch directory beside {specs_dir} ({exc.strerror})") from None
    try:
        try:
            shutil.copytree(specs_dir, copy, copy_function=os.link, symlinks=True, dirs_exist_ok=True)
        except OSError:
            shutil.copytree(specs_dir, copy, symlinks=True, dirs_exist_ok=True)
        for path, text in files.items():
            target = copy / path.resolve().relative_to(specs_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)  # a hard link: never write through it
            target.write_text(text)
        rel = os.path.relpath(copy, Path.cwd())
        try:
            load_project([rel], preflight=False)
        except SpecError as exc:
            real = os.path.relpath(specs_dir, Path.cwd())
            raise SpecError([Diagnostic(d.summary.replace(rel, real), d.file.replace(rel, real, 1) if d.file else
                                        d.file, d.line, d.column, d.field, (d.hint or "").replace(rel, real) or None)
                             for d in exc.diagnostics]) from None
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def write(files: dict[Path, str]) -> None:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.recon-tmp")
        tmp.write_text(text)
        tmp.replace(path)
