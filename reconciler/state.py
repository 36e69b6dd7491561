"""Where recon keeps what it remembers (the audit log with the drift baseline and applied plans, and
the locks): `sqlite` in the state directory of this machine, or `postgres` shared by every runner.
Chosen once per repository in recon.yaml (specs/settings.py), overridden by RECON_STATE_BACKEND and
RECON_STATE_DSN in CI. The same code paths serve both: reconciler/audit.py and reconciler/locks.py
take a Backend.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.gitinfo import git_bytes, require_commit
from reconciler.trust import Trust, trust
from specs.errors import TransportError, UsageError

if TYPE_CHECKING:
    from specs.settings import Settings


@dataclass(frozen=True)
class Backend:
    kind: str  # sqlite | postgres
    state_dir: Path
    dsn: str = field(default="", repr=False)  # postgres: with its password, never shown
    where: str = ""  # what messages name: the database without its password
    lease: float = 30.0

    def connect(self) -> Any:
        """A new autocommit connection to the postgres backend; TransportError naming it, never its password."""
        import psycopg

        try:
            return psycopg.connect(self.dsn, autocommit=True, connect_timeout=10, application_name="recon")
        except psycopg.Error as exc:
            raise TransportError(f"the state backend {self.where} cannot be reached: {self.scrub(str(exc))}; "
                                 "nothing was done. Check RECON_STATE_DSN (or recon.yaml) and that the server "
                                 "runs", transient=True) from None

    def scrub(self, text: str) -> str:
        """A message with the password taken out (drivers quote the connection string in some errors)."""
        password = _password(self.dsn)
        text = " ".join(text.split())
        return text.replace(password, "***") if password else text


def backend(state_dir: Path) -> Backend:
    """The backend of this repository (recon.yaml, at the trusted ref where one governs; then the environment)."""
    from specs import settings

    t = trust()
    beside = t.settings_file()  # a relative {file: …} of the pinned recon.yaml is beside it, not the change's
    root = settings.repo_root(Path.cwd())
    chosen = settings.env_override(_trusted(*settings.load(), t, beside, root)).state
    if chosen.backend == "sqlite":
        return Backend("sqlite", state_dir, where=str(state_dir))
    assert chosen.dsn is not None
    base = beside.parent if beside else Path.cwd()
    where = chosen.dsn.path(base)
    # as written or with links followed: a link the change adds in the repository may lead anywhere on the runner
    inside = where is not None and root is not None and any(
        f(where).startswith(f(root).rstrip("/") + "/") for f in (os.path.abspath, os.path.realpath))
    if t.ref and beside is None and inside:
        raise UsageError(f"the postgres state backend's dsn ({chosen.dsn.describe()}) is a file in the repository, "
                         f"which the change under review writes (RECON_POLICY_REF={t.ref}): give a file outside "
                         "it, or {env: NAME} (the Action's RECON_STATE_DSN)")
    try:
        dsn = chosen.dsn.resolve(base).get_secret_value().strip()
    except (KeyError, OSError) as exc:
        why = exc.args[0] if isinstance(exc, KeyError) else exc
        raise UsageError(f"the postgres state backend's dsn ({chosen.dsn.describe()}) cannot be read: {why}") from None
    return Backend("postgres", state_dir, dsn, _where(dsn), float(chosen.lease))


def _trusted(current: Settings, path: Path | None, t: Trust, beside: Path | None, root: Path | None) -> Settings:
    """The settings of recon.yaml as the run trusts them (reconciler/trust.py): the recon.yaml beside a pinned
    Policy (RECON_POLICY) when there is one, else the file as the trusted ref has it (RECON_POLICY_REF: a pull
    request's base, the commit before a push), as the Policy is taken: the work tree's file is the change's, and
    a change must not move the state elsewhere (its locks and audit log with it), lengthen the locks' lease, or
    make recon read a file of the runner as the DSN. A change to them takes effect once it is trusted; until then
    a warning says so. Without either (a laptop), the file is the user's own. `beside` is `t`'s settings file,
    `root` the repository of the current directory."""
    from specs import settings

    if beside is None and (not t.ref or root is None):
        return current
    key = (t.ref, str(beside), str(Path.cwd()), current.model_dump_json())
    if key not in _TRUSTED:  # (asked by the locks and by the audit log of one run: read and warned once)
        if beside is not None:
            got, theirs = settings.load_file(beside), f"those of {beside} (beside the pinned Policy)"
            used, why = "those are", "whoever pins the Policy changes them there"
        else:
            assert root is not None
            got, theirs = _at_ref(t.ref, root), f"{t.ref}'s"
            used, why = f"{t.ref}'s are", "a change to where recon keeps its state takes effect once it is merged"
        if got.state != current.state:
            shown = path.relative_to(root) if root and path and path.is_relative_to(root) else settings.FILE
            sys.stderr.write(f"warning: the state settings of {shown} differ from {theirs}; {used} used ({why})\n")
        _TRUSTED[key] = got
    return _TRUSTED[key]


_TRUSTED: dict[tuple[str, str, str, str], Settings] = {}


def _at_ref(ref: str, root: Path) -> Settings:
    """recon.yaml as `ref` has it, found as settings.find finds it in the work tree (defaults without one)."""
    from specs import settings

    require_commit(ref, root, f"RECON_POLICY_REF={ref}", f" in {root}", timeout=30)
    here = Path(os.path.abspath(Path.cwd()))
    for d in (here, *here.parents):  # as settings.find looks, at the ref
        rel = (d / settings.FILE).relative_to(root).as_posix()
        raw = git_bytes("show", f"{ref}:{rel}", cwd=root)
        if raw is not None:
            return settings.parse(f"{ref}:{rel}", raw)
        if d == root:
            break
    return settings.Settings()


def _where(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(dsn)
    except Exception:  # a DSN the driver cannot parse: say so without echoing it
        raise UsageError("the postgres state backend's dsn is not a connection string the driver understands "
                         "(postgresql://USER@HOST:PORT/DB)") from None
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgres://{user}{info.get('host', 'localhost')}{port}/{info.get('dbname', '')}"


def _password(dsn: str) -> str:
    try:
        from psycopg.conninfo import conninfo_to_dict

        return str(conninfo_to_dict(dsn).get("password") or "")
    except Exception:
        return ""


@contextmanager
def guarded(b: Backend, what: str) -> Iterator[None]:
    """Turn a driver error into one message naming the backend."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise TransportError(f"the state backend {b.where} failed ({what}): {b.scrub(str(exc))}",
                             transient=isinstance(exc, psycopg.OperationalError)) from None


_ADVISORY = 0x7265636F6E  # 'recon': serialises schema creation and appends to the audit chain
