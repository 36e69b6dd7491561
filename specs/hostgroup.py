"""HostGroup: a named set of hosts and how to reach them."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from reconciler.loader import Document
from specs.base import NAME_RE, KindSpec, Problem, StrictModel
from specs.secrets import SecretRef

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class JumpHost(StrictModel):
    address: str = Field(description="Address or DNS name of the jump (bastion) host.")
    port: int = Field(default=22, ge=1, le=65535, description="Its SSH port.")
    user: str | None = Field(default=None, description="User on the jump host; defaults to the group's user.")


class SshSettings(StrictModel):
    user: str = Field(default="root", description="User to log in as.")
    port: int = Field(default=22, ge=1, le=65535, description="SSH port.")
    identity: SecretRef | None = Field(
        default=None,
        description="Private key, as a reference: `{file: path}` or `{env: NAME}` holding the key text. "
        "Without identity and password, the keys in ~/.ssh and the SSH agent are tried.",
    )
    password: SecretRef | None = Field(default=None, description="Password, as a reference.")
    knownHosts: str = Field(
        default="~/.ssh/known_hosts",
        description="known_hosts file the host keys are checked against (relative to the spec file). "
        "Host keys are always checked: an unknown or changed key is refused.",
    )
    connectTimeout: float = Field(default=10.0, gt=0, le=300, description="Seconds to wait for a connection.")
    jump: JumpHost | None = Field(
        default=None,
        description="Reach the hosts through this jump host (like ssh -J), with the same identity and known_hosts.",
    )
    become: bool = Field(default=False, description="Run everything as root through sudo.")
    becomePassword: SecretRef | None = Field(
        default=None, description="sudo password, as a reference; without it sudo must not ask (NOPASSWD)."
    )


class Host(StrictModel):
    name: str = Field(pattern=NAME_RE, description="Name of the host, unique within the group.")
    connection: Literal["local", "ssh"] | None = Field(
        default=None, description="How to reach this host; defaults to the group's connection."
    )
    address: str | None = Field(default=None, description="ssh: address or DNS name; defaults to the name.")
    port: int | None = Field(default=None, ge=1, le=65535, description="ssh: port, overriding the group's.")
    user: str | None = Field(default=None, description="ssh: user, overriding the group's.")
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

    connection: Literal["local", "ssh"] = Field(
        default="local",
        description="Default connection of the hosts: `local` runs on the machine recon runs on, "
        "`ssh` reaches them with SSH (settings in `ssh`).",
    )
    ssh: SshSettings = Field(default_factory=SshSettings, description="How to reach `ssh` hosts.")
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
            connection = host.connection or self.connection
            if host.root is not None and connection != "local":
                out.append(Problem(("hosts", i, "root"), "'root' is for local hosts only",
                                   "remove 'root', or set 'connection: local' on this host"))
            if connection == "local" and any(v is not None for v in (host.address, host.port, host.user)):
                out.append(Problem(("hosts", i), "'address', 'port' and 'user' are for ssh hosts",
                                   "remove them, or set 'connection: ssh'"))
        return out

    def preflight(self, doc: Document) -> list[Problem]:
        out: list[Problem] = []
        for i, host in enumerate(self.hosts):
            if host.root is not None:
                try:
                    expand_vars(host.root)
                except KeyError as exc:
                    out.append(Problem(("hosts", i, "root"), f"environment variable {exc.args[0]} is not set",
                                       f"set {exc.args[0]}, or give a default: ${{{exc.args[0]}:-/some/dir}}"))
        if any((h.connection or self.connection) == "ssh" for h in self.hosts):
            base = Path(doc.file).parent
            for name in ("identity", "password", "becomePassword"):
                ref = getattr(self.ssh, name)
                why = ref.problem(base) if ref is not None else None
                if why:
                    out.append(Problem(("ssh", name), f"the {name} cannot be read: {why}",
                                       f"set it, or point '{name}' at where the secret is"))
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
