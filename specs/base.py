"""The envelope every spec shares, the strict base model, and pydantic errors as diagnostics."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from specs.errors import Diagnostic
from specs.loader import Document, Loc

API_VERSION = "recon/v1"
NAME_RE = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
SECRET_FIELDS = ("password", "identity", "becomePassword", "token", "dsn")
ADDRESS_RE = re.compile(r"^([A-Za-z]+)/([a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?)$")


class StrictModel(BaseModel):
    """Base of every spec model: unknown fields are errors, no type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Metadata(StrictModel):
    name: str = Field(
        pattern=NAME_RE,
        description="Name of the spec, unique within its kind: lower-case letters, digits, '.', '_' or '-'.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form labels for selection.")
    dependsOn: list[str] = Field(
        default_factory=list,
        description="Specs to apply before this one, as `Kind/name`.",
    )


class Envelope(StrictModel):
    apiVersion: str = Field(description=f"Always `{API_VERSION}`.")
    kind: str = Field(description="The spec kind, e.g. HostGroup or HostState.")
    metadata: Metadata
    spec: dict[str, Any] = Field(description="The kind's own fields.")


@dataclass(frozen=True)
class Problem:
    """A semantic problem a kind finds in its own spec, before any live read."""

    loc: Loc
    summary: str
    hint: str | None = None


class Strategy(StrictModel):
    """How changes roll across the targets of a spec."""

    batch: int | str = Field(
        default="100%",
        description="Targets changed at once: a number, or a percentage of the targets such as \"25%\". "
        "The next batch starts when the whole batch is done.",
    )
    maxFailures: int = Field(
        default=0, ge=0,
        description="Failed targets tolerated; when more fail, no further batch starts (the batch under way "
        "finishes).",
    )

    @field_validator("batch")
    @classmethod
    def _batch(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 1:
                raise ValueError("batch must be at least 1")
            return value
        text = value.strip()
        if not (text.endswith("%") and text[:-1].isdigit() and 0 < int(text[:-1]) <= 100):
            raise ValueError(f'batch {value!r} is neither a number nor a percentage such as "25%"')
        return text

    def size(self, targets: int) -> int:
        if isinstance(self.batch, int):
            return self.batch
        return max(1, -(-targets * int(self.batch[:-1]) // 100))


class KindSpec(StrictModel):
    """Base of a kind's `spec` model. Subclasses may add references and semantic checks."""

    kind_name: ClassVar[str] = ""

    def references(self) -> list[tuple[Loc, str]]:
        """Other specs this one refers to, as (field path inside spec, `Kind/name`)."""
        return []

    def problems(self, doc: Document) -> list[Problem]:
        """Semantic checks beyond the schema; field paths are relative to `spec`."""
        return []

    def inputs(self, doc: Document) -> list[tuple[Loc, Path]]:
        """Files and directories besides its own file whose content this spec reads (e.g. sources), each with
        the field that names it (relative to `spec`)."""
        return []

    def trust_files(self, doc: Document) -> list[tuple[Loc, Path, str]]:
        """Files whose content decides whom recon trusts or what it runs when it connects (a kubeconfig, a
        known_hosts file, a CA bundle), each with the field that names it (relative to `spec`) and what it
        decides: a change under review must not have written them (reconciler/policy.py)."""
        return []

    def trust_switches(self) -> list[tuple[Loc, str]]:
        """Settings that turn off a check of whom recon sends credentials to (certificates not checked), each
        with its field (relative to `spec`) and what it lets happen: a change under review must not write
        them (reconciler/policy.py)."""
        return []

    def credential_uses(self, base: Path) -> list[tuple[Loc, str, str]]:
        """Where its secrets go when recon authenticates: (field relative to `spec`, which secret, the destination
        it is sent to), secret file references resolved from `base` (the spec file's directory). A key that only
        signs (an SSH identity) is not sent, nor is what goes to a KDC. reconciler/policy.py keeps a change's
        plan from sending a secret anywhere the ref does not."""
        return []

    def variables(self) -> list[tuple[Loc, str]]:
        """The environment variables its fields expand (`${VAR}`), each with the field (relative to `spec`):
        reconciler/policy.py keeps a change's plan from reading any the ref's specs do not."""
        return []

    def preflight(self, doc: Document) -> list[Problem]:
        """Checks of the environment a plan needs (secrets, variables), run by plan and apply
        before any live read, but not by `recon validate`, which must pass without secrets."""
        return []

    def rollout(self) -> Strategy | None:
        """How its changes roll across targets (batches, failures tolerated); None: all at once."""
        return None

    @classmethod
    def project_problems(cls, specs: Sequence[tuple[KindSpec, Document]]) -> list[Diagnostic]:
        """Checks across all the specs of this kind in a project (run once the project is loaded)."""
        return []


def diagnostics_from(
    exc: ValidationError, doc: Document, prefix: Loc, model: type[BaseModel], data: Any
) -> list[Diagnostic]:
    """One diagnostic per pydantic error, with the position of the field and a fix."""
    out: list[Diagnostic] = []
    seen: set[tuple[Loc, str]] = set()
    for err in exc.errors(include_url=False):
        raw_loc = tuple(err["loc"])
        loc = prefix + _strip_tags(raw_loc, data)
        summary, hint = _explain(err, model, raw_loc)
        if (loc, summary) in seen:
            continue
        seen.add((loc, summary))
        out.append(doc.diagnostic(loc, summary, hint))
    return out


def _strip_tags(loc: Loc, data: Any) -> Loc:
    """Drop the union tags pydantic puts into the loc of a discriminated union member.

    A tag is a part naming the `type` of the mapping it stands in, not a key of it.
    """
    out: list[str | int] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("type") == part:
            continue
        out.append(part)
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            data = None
    return tuple(out)


def _explain(err: Any, model: type[BaseModel], loc: Loc) -> tuple[str, str | None]:
    kind = err["type"]
    inp = err.get("input")
    field = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(field, allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else None
        if allowed:
            hint = (hint + " " if hint else "") + "allowed fields: " + ", ".join(allowed)
        return f"unknown field '{field}'", hint
    if kind == "missing":
        return f"required field '{field}' is missing", f"add '{field}:' here"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return (
            f"unknown {ctx.get('discriminator', 'type').strip(chr(39))} {ctx.get('tag')!r}",
            f"use one of: {ctx.get('expected_tags')}",
        )
    if kind == "union_tag_not_found":
        return "missing 'type'", "say what this is, e.g. 'type: file'"
    if kind.endswith("_type"):
        expected = kind.removesuffix("_type").replace("_", " ")
        got = type(inp).__name__ if inp is not None else "nothing"
        hint = None
        if expected == "string" and isinstance(inp, (int, float, bool)):
            hint = f'quote the value: "{inp}"' if not isinstance(inp, bool) else 'quote the value, e.g. "true"'
        if field == "mode":
            hint = 'write the mode as a quoted octal string, e.g. mode: "0644"'
        secret = field in SECRET_FIELDS or err.get("ctx", {}).get("class_name") == "SecretRef"
        if secret and isinstance(inp, str):
            hint = "a secret is a reference, never the value: {env: NAME} or {file: path}"
        expected = {"dict": "mapping", "dictionary": "mapping", "model": "mapping"}.get(expected, expected)
        shown = "(not shown: it may be the secret itself)" if secret else _short(inp)
        return f"expected a {expected}, got {got} {shown}".rstrip(), hint
    if kind == "literal_error":
        return f"{_short(inp)} is not a choice here", f"use one of: {err.get('ctx', {}).get('expected', '')}"
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        if pattern == NAME_RE:
            return f"{_short(inp)} is not a valid name", "use lower-case letters, digits, '.', '_' or '-'"
        return f"{_short(inp)} is not a valid value", f"it must match the pattern {pattern}"
    msg = err["msg"].removeprefix("Value error, ")
    return msg, None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names of the model found by walking `loc` through nested models, best effort."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            # a discriminated union: pick the member whose tag is this part
            members = [m for m in _models_in(current) if part in _tags(m)]
            if members:
                current = members[0]
                continue
            return []
        info = current.model_fields.get(part)
        if info is None:
            # the part may be a union tag
            continue
        current = _inner_model(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    import typing

    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _tags(model: type[BaseModel]) -> list[str]:
    import typing

    info = model.model_fields.get("type")
    return list(typing.get_args(info.annotation)) if info else []


def _inner_model(annotation: Any) -> Any:
    models = _models_in(annotation)
    if len(models) == 1:
        return models[0]
    if models:
        return annotation
    return None
