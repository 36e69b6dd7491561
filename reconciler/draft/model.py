"""A draft: the spec documents a request becomes, or the questions it leaves open."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reconciler.draft.catalog import Catalog

Loc = tuple[str | int, ...]


@dataclass
class Edit:
    """One spec document: new (a new file), or an existing one changed at some places."""

    file: Path
    kind: str
    name: str
    document: dict[str, Any]  # the whole document as it will be
    new: bool = True
    sets: list[tuple[Loc, Any]] = field(default_factory=list)  # existing: (place, value); index == len appends

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class Draft:
    request: str
    edits: list[Edit] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    confirm: str = ""  # why applying it needs a confirmation (it stops, removes or restarts something)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.edits) and not self.questions


def set_at(doc: Any, loc: Loc, value: Any) -> None:
    """Set the value at a place of a document; an index one past the end of a list appends."""
    node = doc
    for key in loc[:-1]:
        node = node[key]
    last = loc[-1]
    if isinstance(node, list) and isinstance(last, int) and last == len(node):
        node.append(value)
    else:
        node[last] = value


class Drafter(Protocol):
    """Turns a request into a draft. The built-in one is rule-based (reconciler/draft/rules.py); a language
    model planner is a class with this method, named by RECON_DRAFT_PLANNER=module:Class. Whatever it
    returns is validated like any spec before it is shown or written."""

    def draft(self, request: str, catalog: Catalog, specs_dir: Path, today: str) -> Draft: ...
