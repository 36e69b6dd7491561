"""Bundle: a directory of the repository that must be published at an OCI reference, one layer per file."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from specs.base import KindSpec, Problem, StrictModel
from specs.errors import UsageError
from specs.hostgroup import VARIABLE, expand_vars
from specs.loader import Document, Loc
from specs.secrets import SecretRef


class RegistryCredentials(StrictModel):
    username: str = Field(description="User name at the registry (not a secret).")
    password: SecretRef = Field(description="Password or token, as a reference: `{env: NAME}` or `{file: path}`.")


class BundleSpec(KindSpec):
    kind_name: ClassVar[str] = "Bundle"

    source: str = Field(description="Directory of the files, relative to this spec file.")
    ref: str = Field(
        description="Where the bundle is published: `host[:port]/repository:tag` for a registry, or "
        "`oci-layout:PATH:tag` for an OCI image layout directory on disk (PATH relative to this spec file). "
        "`${VAR}` and `${VAR:-default}` are taken from the environment."
    )
    include: list[str] = Field(
        default_factory=list,
        description="Globs of files to publish (all files when empty). `*` stays within a directory, `**` spans "
        "directories; a glob without '/' matches a file name at any depth; `dir/` means everything below dir.",
    )
    exclude: list[str] = Field(
        default_factory=list, description="Globs of files to leave out (after include). .git is always left out."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the manifest, e.g. org.opencontainers.image.version."
    )
    artifactType: str | None = Field(
        default=None,
        description="The manifest's artifactType; default application/vnd.recon.bundle.v1.",
    )
    credentials: RegistryCredentials | None = Field(default=None, description="Credentials for the registry.")
    plainHttp: bool | None = Field(
        default=None, description="Talk HTTP instead of HTTPS; by default only to loopback registries."
    )

    @field_validator("include", "exclude")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        for glob in value:
            if not glob.strip() or ".." in glob.split("/"):
                raise ValueError(f"glob {glob!r} is empty or contains '..'")
        return value

    @field_validator("annotations")
    @classmethod
    def _reserved(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith("dev.recon."):
                raise ValueError(f"annotation {key!r} is recon's own; use another key")
        return value

    def problems(self, doc: Document) -> list[Problem]:
        out: list[Problem] = []
        from specs.ref import parse  # small, no I/O

        if "${" not in self.ref:
            try:
                ref = parse(self.ref)
                if ref.digest:
                    out.append(Problem(("ref",), "a Bundle ref must name a tag, not a digest",
                                       "write host:port/repository:tag; the digest follows from the files"))
            except UsageError as exc:
                example = None if "e.g." in str(exc) else "e.g. ref: 127.0.0.1:5000/models/churn:v1"
                out.append(Problem(("ref",), str(exc), example))
        source = self.source_dir(doc)
        if not source.is_dir():
            out.append(Problem(("source",), f"directory {source} does not exist",
                               "point 'source' at a directory, relative to this spec file"))
        return out

    def preflight(self, doc: Document) -> list[Problem]:
        out: list[Problem] = []
        try:
            expand_vars(self.ref)
        except KeyError as exc:
            out.append(Problem(("ref",), f"environment variable {exc.args[0]} is not set",
                               f"set {exc.args[0]}, or give a default: ${{{exc.args[0]}:-…}}"))
        if self.credentials is not None:
            why = self.credentials.password.problem(Path(doc.file).parent)
            if why:
                out.append(Problem(("credentials", "password"), f"the password cannot be read: {why}",
                                   "set it, or point 'password' at where the secret is"))
        return out

    def variables(self) -> list[tuple[Loc, str]]:
        return [(("ref",), m.group(1)) for m in VARIABLE.finditer(self.ref)]

    def credential_uses(self, base: Path) -> list[tuple[Loc, str, str]]:
        from specs.ref import parse

        if self.credentials is None:
            return []
        try:
            registry = parse(expand_vars(self.ref)).registry
        except (KeyError, UsageError):
            return []  # (a problem of its own, reported with its field)
        secret = self.credentials.password.identity(base)
        return [(("credentials", "password"), secret, f"registry {registry}")] if registry else []

    def inputs(self, doc: Document) -> list[tuple[Loc, Path]]:
        return [(("source",), self.source_dir(doc))]

    def source_dir(self, doc: Document) -> Path:
        return Path(doc.file).parent / self.source
