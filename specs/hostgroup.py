"""HostGroup: a named set of hosts and how to reach them."""

from __future__ import annotations

import os
import re
from typing import ClassVar, Literal

from pydantic import Field

from reconciler.loader import Document
from specs.base import NAME_RE, KindSpec, Problem, StrictModel

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Host(StrictModel):
    name: str = Field(pattern=NAME_RE, description="Name of the host, unique within the group.")
    connection: Literal["local"] | None = Field(
        default=None, description="How to reach this host; defaults to the group's connection."
    )
    root: str | None = Field(
        default=None,
        description=(
            "local only: a directory that stands for `/` on this host, so every path of its HostStates "
            "lands below it. `${VAR}` and `${VAR:-default}` are taken from the environment, `~` is home; "
            "a relative root is relative to the directory of the spec file."
        ),
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of this host.")


class HostGroupSpec(KindSpec):
    kind_name: ClassVar[str] = "HostGroup"

    connection: Literal["local"] = Field(
        default="local",
        description="Default connection of the hosts: `local` runs on the machine recon runs on.",
    )
    hosts: list[Host] = Field(min_length=1, description="The hosts of the group.")
    concurrency: int = Field(
        default=20, ge=1, le=1000, description="How many hosts of the group are read or changed at once."
    )

    def problems(self, doc: Document) -> list[Problem]:
        out: list[Problem] = []
        seen: set[str] = set()
        for i, host in enumerate(self.hosts):
            if host.name in seen:
                out.append(Problem(("hosts", i, "name"), f"host '{host.name}' is listed twice",
                                   "give each host of the group its own name"))
            seen.add(host.name)
            if host.root is not None:
                try:
                    expand_vars(host.root)
                except KeyError as exc:
                    out.append(Problem(("hosts", i, "root"), f"environment variable {exc.args[0]} is not set",
                                       f"set {exc.args[0]}, or give a default: ${{{exc.args[0]}:-/some/dir}}"))
        return out


def expand_vars(text: str) -> str:
    """`${VAR}` and `${VAR:-default}` from the environment, then `~`. KeyError names a missing VAR."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        raise KeyError(name)

    return os.path.expanduser(_VAR.sub(sub, text))
