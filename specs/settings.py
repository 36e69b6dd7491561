"""Project settings: `recon.yaml` at the root of the repository (the git work tree, else the current
directory). Today it chooses where recon keeps what it remembers:

    state:
      backend: postgres            # or sqlite (the default: .recon/ on this machine)
      dsn: {env: RECON_STATE_DSN}  # a reference, never the DSN itself
      lease: 30                    # seconds a lock outlives a holder that stopped renewing it

CI overrides it by environment: RECON_STATE_BACKEND (sqlite or postgres) and RECON_STATE_DSN. Where a
trusted ref governs (RECON_POLICY_REF, as in the Action), the file is read at that ref, and a recon.yaml
beside a pinned Policy (RECON_POLICY) wins over both (reconciler/state.py): a pull request cannot move the
state, or point recon at a file of the runner.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from specs.base import StrictModel, diagnostics_from
from specs.errors import Diagnostic, SpecError
from specs.loader import Document, load_files
from specs.secrets import SecretRef

FILE = "recon.yaml"


class StateSettings(StrictModel):
    backend: Literal["sqlite", "postgres"] = Field(
        default="sqlite", description="Where locks, the audit log, the drift baseline and applied plans live: "
        "`sqlite` in the state directory of this machine, `postgres` shared by every runner that reaches it.")
    dsn: SecretRef | None = Field(default=None, description="postgres: the connection string, as a reference "
                                  "(`{env: NAME}` or `{file: PATH}`), e.g. postgresql://recon@db:5432/recon.")
    lease: int = Field(default=30, ge=5, le=3600, description="postgres: seconds a lock outlives a holder that "
                       "stopped renewing it (a killed runner); renewed every third of it while an apply runs.")

    @model_validator(mode="after")
    def _dsn(self) -> StateSettings:
        if self.backend == "postgres" and self.dsn is None:
            raise ValueError("the postgres backend needs a dsn: give it as {env: NAME} or {file: PATH}")
        return self


class Settings(StrictModel):
    state: StateSettings = Field(default_factory=StateSettings, description="The state backend.")


def repo_root(start: Path) -> Path | None:
    """The repository `start` is in: the nearest directory holding .git, from `start` up (by the path as
    written, links not followed: a link must not move a file into another directory); None outside one."""
    here = Path(os.path.abspath(start))
    return next((d for d in (here, *here.parents) if (d / ".git").exists()), None)


def find(start: Path | None = None) -> Path | None:
    """recon.yaml in the repository around `start` (up to the directory holding .git), else in `start` or
    above it."""
    here = (start or Path.cwd()).resolve()
    root = repo_root(here)
    for d in (here, *here.parents):
        if (d / FILE).is_file():
            return d / FILE
        if d == root:
            return None
    return None


def load(start: Path | None = None) -> tuple[Settings, Path | None]:
    """The settings, and the file they came from (None: defaults). SpecError with file and line when bad."""
    path = find(start)
    if path is None:
        return Settings(), None
    return load_file(path), path


def load_file(path: Path) -> Settings:
    """The settings of one recon.yaml. SpecError with file and line when bad."""
    return _validated(*load_files([path]))


def parse(name: str, raw: bytes) -> Settings:
    """Settings from a recon.yaml's content (`name`, e.g. REF:recon.yaml, is what errors call it)."""
    from specs.loader import load_bytes

    return _validated(*load_bytes(name, raw))


def _validated(docs: list[Document], bad: list[Diagnostic]) -> Settings:
    if bad:
        raise SpecError(bad)
    data = docs[0].data if docs else {}
    try:
        return Settings.model_validate(data or {})
    except ValidationError as exc:
        raise SpecError(diagnostics_from(exc, docs[0], (), Settings, data)) from None


def env_override(settings: Settings) -> Settings:
    """RECON_STATE_BACKEND and RECON_STATE_DSN, for CI, over what the file says. A DSN in the environment
    means postgres unless RECON_STATE_BACKEND says otherwise: recon.yaml is in the repository, and a pull
    request must not turn CI's shared state off by writing `backend: sqlite` there."""
    backend = os.environ.get("RECON_STATE_BACKEND")
    given = bool(os.environ.get("RECON_STATE_DSN"))
    dsn = SecretRef(env="RECON_STATE_DSN") if given else settings.state.dsn
    if not backend and not given:
        return settings
    chosen = backend or ("postgres" if given else settings.state.backend)
    if chosen not in ("sqlite", "postgres"):
        from specs.errors import UsageError

        raise UsageError(f"RECON_STATE_BACKEND={chosen!r}: use sqlite or postgres")
    if chosen == "postgres" and dsn is None:
        from specs.errors import UsageError

        raise UsageError("RECON_STATE_BACKEND=postgres needs RECON_STATE_DSN (or a dsn in recon.yaml)")
    state = StateSettings.model_validate({"backend": chosen, "dsn": dsn, "lease": settings.state.lease})
    return Settings(state=state)
