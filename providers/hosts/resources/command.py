"""command: a shell command, guarded by `creates` / `unless`, or run only when notified."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.contract import Action, FieldChange
from providers.hosts.model import Desired, q
from specs.hoststate import CommandResource


def diff(
    desired: Desired, live: dict[str, Any] | None, changed: Mapping[str, bool]
) -> tuple[Action, str, list[FieldChange]]:
    """`changed`: resource key -> whether it changes in this plan (for notify)."""
    res = desired.res
    assert isinstance(res, CommandResource)
    live = live or {}
    name = res.key()
    if res.onlyWhenNotified:
        by = [k for k in desired.notified_by if changed.get(k)]
        if not by:
            return "noop", f"command {name} runs only when notified; nothing that notifies it changes", []
    else:
        by = []
    creates = res.creates
    if creates is not None and live.get("creates"):
        return "noop", f"command {name} is not needed: {creates} exists", []
    if res.unless is not None and live.get("unless") == 0:
        return "noop", f"command {name} is not needed: its 'unless' check succeeded", []
    if by:
        reason = f"notified by {', '.join(by)}"
    elif creates is not None:
        reason = f"{creates} does not exist"
    else:
        reason = f"its 'unless' check failed (exit {live.get('unless')})"
    return "run", reason, [FieldChange("run", None, res.run)]


def script(desired: Desired, action: Action, fields: list[FieldChange]) -> str:
    res = desired.res
    assert isinstance(res, CommandResource)
    return f"{env_prefix(desired)}sh -c {q(res.run)} </dev/null"


def env_prefix(desired: Desired) -> str:
    """Commands see the host's root as $RECON_ROOT ('' when none) and start in it."""
    root = desired.host.root or ""
    return f"cd {q(root or '/')} && RECON_ROOT={q(root)} "


def undo(desired: Desired, action: Action, fields: list[FieldChange]) -> str:
    return ":"  # what a command did cannot be known, so it cannot be undone


def clean(desired: Desired, action: Action) -> str:
    return ":"
