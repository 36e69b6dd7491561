"""Where recon keeps what it remembers (the audit log with the drift baseline and applied plans, and
the locks): `sqlite` in the state directory of this machine, or `postgres` shared by every runner.
Chosen once per repository in recon.yaml (specs/settings.py), overridden by RECON_STATE_BACKEND and
RECON_STATE_DSN in CI. The same code paths serve both: reconciler/audit.py and reconciler/locks.py
take a Backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specs.errors import TransportError, UsageError


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
    """The backend of this repository (recon.yaml, then the environment)."""
    from specs import settings

    chosen = settings.env_override(settings.load()[0]).state
    if chosen.backend == "sqlite":
        return Backend("sqlite", state_dir, where=str(state_dir))
    assert chosen.dsn is not None
    try:
        dsn = chosen.dsn.resolve(Path.cwd()).get_secret_value().strip()
    except (KeyError, OSError) as exc:
        why = exc.args[0] if isinstance(exc, KeyError) else exc
        raise UsageError(f"the postgres state backend's dsn ({chosen.dsn.describe()}) cannot be read: {why}") from None
    return Backend("postgres", state_dir, dsn, _where(dsn), float(chosen.lease))


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
