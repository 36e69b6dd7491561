"""HostGroup: a named set of hosts and how to reach them."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from specs.base import NAME_RE, KindSpec, Problem, StrictModel
from specs.loader import Document, Loc
from specs.secrets import SecretRef

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
    persist: float = Field(
        default=60, ge=0, le=3600,
        description="Keep each connection open this many seconds after a run, in a per-user agent, so the next "
        "run reuses it (as OpenSSH's ControlPersist does); 0 connects anew every run. RECON_SSH_PERSIST=0 turns "
        "it off everywhere.",
    )


    def known_hosts_at(self, base: Path) -> Path:
        """The known_hosts file recon checks host keys against, for a spec file in `base`."""
        return base / os.path.expanduser(self.knownHosts)


class WinrmSettings(StrictModel):
    """How recon reaches Windows hosts: WinRM (WS-Management) through pywinrm, one shell per host."""

    user: str = Field(default="Administrator", description="User to log in as (DOMAIN\\user for domain accounts).")
    password: SecretRef | None = Field(default=None, description="Password, as a reference: {env: NAME} or {file: "
                                       "path}.")
    scheme: Literal["http", "https"] = Field(default="https", description="https (port 5986) unless the hosts "
                                              "only listen on http (5985; then use ntlm or kerberos, which encrypt).")
    port: int | None = Field(default=None, ge=1, le=65535, description="Port; 5986 for https, 5985 for http.")
    transport: Literal["basic", "ntlm", "kerberos", "credssp"] = Field(
        default="ntlm", description="Authentication, as pywinrm offers it.")
    validateCerts: bool = Field(default=True, description="https: check the host's certificate.")
    caFile: str | None = Field(default=None, description="https: CA bundle to check certificates against "
                               "(relative to the spec file).")
    operationTimeout: int = Field(default=20, ge=1, le=600, description="Seconds one WS-Man operation may wait.")
    chunkKiB: int = Field(default=256, ge=8, le=2048, description="Bytes of file content per message to the host "
                          "(KiB before base64).")

    @property
    def default_port(self) -> int:
        return self.port or (5986 if self.scheme == "https" else 5985)

    def ca_file_at(self, base: Path) -> Path | None:
        """The CA bundle recon checks certificates against, for a spec file in `base` (None: the system's)."""
        return None if self.caFile is None else base / self.caFile


class Host(StrictModel):
    name: str = Field(pattern=NAME_RE, description="Name of the host, unique within the group.")
    connection: Literal["local", "ssh", "winrm"] | None = Field(
        default=None, description="How to reach this host; defaults to the group's connection."
    )
    address: str | None = Field(default=None, description="ssh, winrm: address or DNS name; defaults to the name.")
    port: int | None = Field(default=None, ge=1, le=65535, description="ssh, winrm: port, overriding the group's.")
    user: str | None = Field(default=None, description="ssh, winrm: user, overriding the group's.")
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

    connection: Literal["local", "ssh", "winrm"] = Field(
        default="local",
        description="Default connection of the hosts: `local` runs on the machine recon runs on, "
        "`ssh` reaches them with SSH (settings in `ssh`), `winrm` reaches Windows hosts (settings in `winrm`).",
    )
    ssh: SshSettings = Field(default_factory=SshSettings, description="How to reach `ssh` hosts.")
    winrm: WinrmSettings = Field(default_factory=WinrmSettings, description="How to reach `winrm` hosts.")
    hosts: list[Host] = Field(min_length=1, description="The hosts of the group.")
    concurrency: int = Field(
        default=20, ge=1, le=1000, description="How many hosts of the group are read or changed at once."
    )

    def connection_of(self, host: Host) -> str:
        """How a host is reached: its own connection, else the group's."""
        return host.connection or self.connection

    def windows(self) -> bool:
        """Whether the group's hosts are Windows hosts (reached by winrm); a host's own connection counts."""
        return all(self.connection_of(h) == "winrm" for h in self.hosts)

    def problems(self, doc: Document) -> list[Problem]:
        out: list[Problem] = []
        seen: set[str] = set()
        for i, host in enumerate(self.hosts):
            if host.name in seen:
                out.append(Problem(("hosts", i, "name"), f"host '{host.name}' is listed twice",
                                   "give each host of the group its own name"))
            seen.add(host.name)
            connection = self.connection_of(host)
            if host.root is not None and connection != "local":
                out.append(Problem(("hosts", i, "root"), "'root' is for local hosts only",
                                   "remove 'root', or set 'connection: local' on this host"))
            if connection == "local" and any(v is not None for v in (host.address, host.port, host.user)):
                out.append(Problem(("hosts", i), "'address', 'port' and 'user' are for ssh and winrm hosts",
                                   "remove them, or set 'connection: ssh'"))
        if any(self.connection_of(h) == "winrm" for h in self.hosts):
            w = self.winrm
            if w.scheme == "http" and w.transport == "basic":
                out.append(Problem(("winrm", "transport"), "basic authentication over http sends the password "
                                   "and every command in clear text",
                                   "use scheme: https, or transport: ntlm or kerberos (they encrypt the messages)"))
            ca = w.ca_file_at(Path(doc.file).parent)
            if ca is not None and not ca.is_file():
                out.append(Problem(("winrm", "caFile"), f"no CA bundle at {ca}",
                                   "point caFile at a PEM file, relative to this spec file"))
        return out

    def trust_files(self, doc: Document) -> list[tuple[Loc, Path, str]]:
        used = {self.connection_of(h) for h in self.hosts}
        here = Path(doc.file).parent
        out: list[tuple[Loc, Path, str]] = []
        ca = self.winrm.ca_file_at(here)
        if "ssh" in used:
            out.append((("ssh", "knownHosts"), self.ssh.known_hosts_at(here),
                        "which SSH host keys recon accepts (and so where a password goes)"))
        if "winrm" in used and ca is not None:
            out.append((("winrm", "caFile"), ca, "which HTTPS certificates recon accepts (and so where a password "
                        "goes)"))
        return out

    def variables(self) -> list[tuple[Loc, str]]:
        return [(("hosts", i, "root"), m.group(1)) for i, h in enumerate(self.hosts) if h.root
                for m in VARIABLE.finditer(h.root)]

    def credential_uses(self, base: Path) -> list[tuple[Loc, str, str]]:
        out: list[tuple[Loc, str, str]] = []
        for host in self.hosts:
            how, address = self.connection_of(host), host.address or host.name
            if how == "winrm" and self.winrm.password is not None and self.winrm.transport != "kerberos":
                out.append((("winrm", "password"), self.winrm.password.identity(base),
                            f"winrm {address}:{host.port or self.winrm.default_port}"))
            if how == "ssh":
                to = [f"ssh {address}:{host.port or self.ssh.port}"]
                if self.ssh.jump is not None:
                    to.append(f"ssh {self.ssh.jump.address}:{self.ssh.jump.port}")
                out += [(("ssh", "password"), self.ssh.password.identity(base), d) for d in to
                        if self.ssh.password is not None]
                if self.ssh.becomePassword is not None:  # to sudo, on the host itself
                    out.append((("ssh", "becomePassword"), self.ssh.becomePassword.identity(base), to[0]))
        return out

    def trust_switches(self) -> list[tuple[Loc, str]]:
        w = self.winrm
        if w.password is None or not any(self.connection_of(h) == "winrm" for h in self.hosts):
            return []
        anyone = "any host that answers at the group's addresses is sent"
        if w.scheme == "https" and not w.validateCerts:
            return [(("winrm", "validateCerts"), f"certificates are not checked: {anyone} the password")]
        if w.scheme == "http" and w.transport in ("ntlm", "credssp"):
            return [(("winrm", "scheme"), f"{w.transport} over http authenticates no host: {anyone} "
                     + ("the password" if w.transport == "credssp" else "an NTLM response to the password"))]
        return []

    def preflight(self, doc: Document) -> list[Problem]:
        out: list[Problem] = []
        for i, host in enumerate(self.hosts):
            if host.root is not None:
                try:
                    expand_vars(host.root)
                except KeyError as exc:
                    out.append(Problem(("hosts", i, "root"), f"environment variable {exc.args[0]} is not set",
                                       f"set {exc.args[0]}, or give a default: ${{{exc.args[0]}:-/some/dir}}"))
        if any((h.connection or self.connection) == "winrm" for h in self.hosts) and self.winrm.password is not None:
            why = self.winrm.password.problem(Path(doc.file).parent)
            if why:
                out.append(Problem(("winrm", "password"), f"the password cannot be read: {why}",
                                   "set it, or point 'password' at where the secret is"))
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

    return os.path.expanduser(VARIABLE.sub(sub, text))
