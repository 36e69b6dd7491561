"""HostState: files, directories and commands that must hold on every host of a group."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from specs.base import NAME_RE, KindSpec, Problem, Strategy, StrictModel
from specs.loader import Document, Loc
from specs.secrets import SecretRef

_MODE = re.compile(r"^[0-7]?[0-7]{3}$")
WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]")
_ID = re.compile(NAME_RE)


class _Resource(StrictModel):
    id: str | None = Field(
        default=None, description="Name of the resource inside the HostState; defaults to its path."
    )
    notify: list[str] = Field(
        default_factory=list,
        description="Ids of commands (with `onlyWhenNotified: true`) to run when this resource changes.",
    )

    def key(self) -> str:
        raise NotImplementedError


class _PathResource(_Resource):
    path: str = Field(description="Absolute path on the host: /etc/app.conf, or C:\\Program Files\\App\\app.exe on "
                      "Windows hosts.")
    state: Literal["present", "absent"] = Field(default="present", description="Whether it must exist.")
    mode: str | None = Field(default=None, description='Permission bits as a quoted octal string, e.g. "0644".')
    owner: str | None = Field(default=None, description="Owning user name.")
    group: str | None = Field(default=None, description="Owning group name.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if "\0" in value or "\n" in value or "\r" in value:
            raise ValueError("path must not contain a NUL or a line break")
        if WINDOWS_PATH.match(value):  # a Windows path: one separator, no '..', no empty parts
            parts = re.split(r"[\\/]", value[3:])
            if ".." in parts:
                raise ValueError(f"path {value!r} contains '..'; write the path it means")
            return value[:2].upper() + "\\" + "\\".join(p for p in parts if p not in ("", "."))
        if not value.startswith("/"):
            raise ValueError(f"path {value!r} is not absolute; start it with '/' (or a drive, C:\\, on Windows)")
        parts = value.split("/")
        if ".." in parts:
            raise ValueError(f"path {value!r} contains '..'; write the path it means")
        return "/" + "/".join(p for p in parts if p not in ("", "."))

    @field_validator("mode")
    @classmethod
    def _octal(cls, value: str | None) -> str | None:
        if value is not None and not _MODE.match(value):
            raise ValueError(f'mode {value!r} is not an octal permission such as "0644"')
        return None if value is None else value.rjust(4, "0")

    def key(self) -> str:
        return self.id or self.path


class FileResource(_PathResource):
    type: Literal["file"] = Field(description="A regular file.")
    content: str | None = Field(default=None, description="The text the file must hold.")
    source: str | None = Field(
        default=None, description="A file, relative to the spec file, whose bytes the file must hold."
    )
    contentFrom: SecretRef | None = Field(
        default=None,
        description="The content is a secret: taken from `{env: NAME}` or `{file: path}` when planning, never "
        "shown (plans show a keyed hash, so a changed secret is still seen to change). Implies `sensitive`.",
    )
    sensitive: bool = Field(
        default=False, description="Never show the content, its digest or its size in plans and logs."
    )

    @property
    def secret(self) -> bool:
        return self.sensitive or self.contentFrom is not None


    whileStopped: list[str] = Field(
        default_factory=list,
        description="Windows: services to stop before the file is replaced and to start again after it, each "
        "then checked to still run after `verifySeconds` (Windows keeps a running program's file locked). A "
        "service that does not come back fails the step, and the host is rolled back.",
    )
    verifySeconds: float = Field(default=2.0, ge=0, le=600, description="With whileStopped: how long a restarted "
                                 "service must keep running to count as started.")


class DirectoryResource(_PathResource):
    type: Literal["directory"] = Field(description="A directory (parents are created as needed).")


class CommandResource(_Resource):
    type: Literal["command"] = Field(description="A shell command, run by `sh` on the host.")
    id: str = Field(pattern=NAME_RE, description="Name of the command (required).")
    run: str = Field(min_length=1, description="The shell command.")
    creates: str | None = Field(default=None, description="Skip the command when this path exists.")
    unless: str | None = Field(default=None, description="Skip the command when this shell command succeeds.")
    onlyWhenNotified: bool = Field(
        default=False, description="Run only when a resource that notifies this command changed."
    )

    def key(self) -> str:
        return self.id


class _NamedResource(_Resource):
    """A resource known by a name (service, package, user): its id defaults to the name."""

    name: str = Field(description="Its name.")

    def key(self) -> str:
        return self.id or self.name


class ServiceResource(_NamedResource):
    type: Literal["service"] = Field(description="A system service (systemd where it runs, init scripts otherwise).")
    name: str = Field(pattern=r"^[^\x00-\x1f/\\]+$", description="The service's name, e.g. nginx, or "
                      "StationController on Windows (where names may hold spaces).")
    state: Literal["running", "stopped"] | None = Field(
        default=None, description="Whether it must run; unset leaves it as it is."
    )
    enabled: bool | None = Field(default=None, description="Whether it starts at boot; unset leaves it as it is.")
    startup: Literal["automatic", "manual", "disabled"] | None = Field(
        default=None, description="Windows: its startup type (instead of `enabled`)."
    )
    timeout: float = Field(default=60, gt=0, le=3600, description="Windows: seconds a start or stop may take.")


class ProcessResource(_NamedResource):
    type: Literal["process"] = Field(description="Windows: a process, by image name (stationcontroller for "
                                     "stationcontroller.exe).")
    name: str = Field(pattern=r"^[^\x00-\x1f/\\]+$", description="The process name, without .exe.")
    state: Literal["stopped"] = Field(default="stopped", description="stopped: no process of this name runs (it "
                                      "is stopped by name); processes are started by their services.")
    timeout: float = Field(default=30, gt=0, le=600, description="Seconds the processes may take to end.")


class PackageResource(_NamedResource):
    type: Literal["package"] = Field(description="A system package (apt where dpkg is, else dnf or yum).")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9+._-]*$", description="The package's name.")
    state: Literal["present", "absent"] = Field(default="present", description="Whether it must be installed.")
    version: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9.+~:_-]+$",
        description="The exact version it must have (as the package manager writes it); unset: any.",
    )
    productCode: str | None = Field(
        default=None, pattern=r"^\{[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\}$",
        description="Windows: the MSI product code, {GUID}; installed means Windows lists it as installed.",
    )
    source: str | None = Field(default=None, description="Windows: the .msi file (relative to the spec file) that "
                               "installs it; needed for state: present.")


class UserResource(_NamedResource):
    type: Literal["user"] = Field(description="A local user account (useradd, usermod, userdel).")
    name: str = Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$", description="The login name.")
    state: Literal["present", "absent"] = Field(default="present", description="Whether it must exist.")
    uid: int | None = Field(default=None, ge=0, description="Its numeric id; unset: any.")
    shell: str | None = Field(default=None, pattern=r"^/[^\s:]*$", description="Its login shell; unset: any.")
    home: str | None = Field(default=None, pattern=r"^/[^\s:]*$", description="Its home directory; unset: any.")
    groups: list[str] | None = Field(
        default=None, description="Its supplementary groups, exactly (they must exist); unset: any."
    )


Resource = Annotated[
    FileResource | DirectoryResource | CommandResource | ServiceResource | PackageResource | UserResource
    | ProcessResource,
    Field(discriminator="type"),
]
AnyResource = (FileResource | DirectoryResource | CommandResource | ServiceResource | PackageResource | UserResource
               | ProcessResource)


class HostStateSpec(KindSpec):
    kind_name: ClassVar[str] = "HostState"

    group: str = Field(pattern=NAME_RE, description="Name of the HostGroup whose hosts this state is for.")
    resources: list[Resource] = Field(
        min_length=1, description="What must hold on each host, applied in this order."
    )
    rollback: bool = Field(
        default=True,
        description="When a change on a host fails, undo the changes this apply made on that host before it, "
        "newest first: files and directories from backups kept beside them, services back to their state "
        "(restarted again if they were restarted). Commands cannot be undone.",
    )
    strategy: Strategy | None = Field(
        default=None,
        description="Roll the changes over the hosts in batches; without it, all hosts change at once "
        "(bounded by the group's concurrency).",
    )

    def references(self) -> list[tuple[Loc, str]]:
        return [(("group",), f"HostGroup/{self.group}")]

    def rollout(self) -> Strategy | None:
        return self.strategy

    def preflight(self, doc: Document) -> list[Problem]:
        return _secret_problems(list(self.resources), doc)

    def inputs(self, doc: Document) -> list[tuple[Loc, Path]]:
        return [(("resources", i, "source"), source_path(doc, r.source)) for i, r in enumerate(self.resources)
                if isinstance(r, FileResource | PackageResource) and r.source]

    def problems(self, doc: Document) -> list[Problem]:
        out: list[Problem] = []
        by_key: dict[str, int] = {}
        for i, res in enumerate(self.resources):
            key = f"{res.type}:{res.key()}"
            if key in by_key:
                out.append(Problem(("resources", i), f"{key} is already declared at resources[{by_key[key]}]",
                                   "declare each resource once, or give them different ids"))
            by_key.setdefault(key, i)
            out.extend(_check(res, i, doc))
        handlers = {r.key(): i for i, r in enumerate(self.resources)
                    if isinstance(r, CommandResource | ServiceResource)}
        for i, res in enumerate(self.resources):
            for j, target in enumerate(res.notify):
                loc: Loc = ("resources", i, "notify", j)
                if target not in handlers:
                    out.append(Problem(loc, f"notifies '{target}', which is no command or service of this HostState",
                                       "name the id of a command, or the name of a service, declared here"))
                elif handlers[target] < i:
                    out.append(Problem(loc, f"notifies '{target}', which comes before it",
                                       f"move '{target}' below the resources that notify it"))
        return out


def _secret_problems(resources: list[AnyResource], doc: Document) -> list[Problem]:
    out = []
    for i, res in enumerate(resources):
        if isinstance(res, FileResource) and res.contentFrom is not None and res.state == "present":
            why = res.contentFrom.problem(Path(doc.file).parent)
            if why:
                out.append(Problem(("resources", i, "contentFrom"), f"the secret cannot be read: {why}",
                                   "set it, or point 'contentFrom' at where the secret is"))
    return out


def _check(res: AnyResource, i: int, doc: Document) -> list[Problem]:
    out: list[Problem] = []
    if isinstance(res, FileResource):
        given = [res.content, res.source, res.contentFrom]
        if res.state == "present" and sum(v is not None for v in given) != 1:
            out.append(Problem(("resources", i), "a file needs exactly one of 'content', 'source' or 'contentFrom'",
                               "give the text in 'content:', a local file in 'source:', or a secret reference in "
                               "'contentFrom: {env: NAME}'"))
        if res.source is not None and not source_path(doc, res.source).is_file():
            out.append(Problem(("resources", i, "source"), f"source file {res.source!r} does not exist",
                               f"paths are relative to {Path(doc.file).parent or '.'}/"))
    elif isinstance(res, PackageResource) and res.source is not None and not source_path(doc, res.source).is_file():
        out.append(Problem(("resources", i, "source"), f"installer {res.source!r} does not exist",
                           f"paths are relative to {Path(doc.file).parent or '.'}/"))
    elif isinstance(res, ServiceResource):
        if res.state is None and res.enabled is None and res.startup is None and not res.notify:
            out.append(Problem(("resources", i), f"service '{res.name}' says nothing to hold",
                               "set 'state: running|stopped' and/or 'enabled: true|false'"))
    elif isinstance(res, CommandResource):
        guarded = res.creates is not None or res.unless is not None or res.onlyWhenNotified
        if not guarded:
            out.append(Problem(
                ("resources", i), f"command '{res.id}' would run on every apply, so a plan would never be empty",
                "add 'creates: PATH', 'unless: CHECK' or 'onlyWhenNotified: true'",
            ))
    return out


def source_path(doc: Document, source: str) -> Path:
    return Path(doc.file).parent / source
