"""Whether a command runs: its guards (`creates`, `unless`) and notify decide, the same on every system."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.contract import Action, FieldChange
from providers.hosts.model import HostResource
from specs.hoststate import CommandResource


def command_diff(
    desired: HostResource[CommandResource], live: dict[str, Any] | None, changed: Mapping[str, bool]
) -> tuple[Action, str, list[FieldChange]]:
    """`changed`: resource key -> whether it changes in this plan (for notify)."""
    res = desired.res
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
    if res.unless is not None and not desired.reviewed and "unless" not in live:
        return "run", (f"command {name}: its 'unless' check was not run by this plan, because the change under "
                       "review writes it; it runs at apply, before the command"), [FieldChange("run", None, res.run)]
    if by:
        reason = f"notified by {', '.join(by)}"
    elif creates is not None:
        reason = f"{creates} does not exist"
    else:
        reason = f"its 'unless' check failed (exit {live.get('unless')})"
    return "run", reason, [FieldChange("run", None, res.run)]
