"""A real PostgreSQL server for the tests: Debian's postgresql, a cluster made with initdb in a temporary
directory and started with pg_ctl on a loopback port (as the `postgres` user when the tests run as root:
the server refuses to run as root). The superuser is `recon` with a password (scram-sha-256), so the
tests can give wrong credentials; each test gets a database of its own."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.peers.registry import free_block


def _bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    if not found:
        raise RuntimeError(f"{tool} is missing: install Debian's postgresql (scripts/setup)")
    return found[-1]


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class Postgres:
    root: Path
    port: int
    password: str

    def dsn(self, db: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://recon:{self.password if password is None else password}@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> str:
        """A new database; its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def sql(self, db: str, statement: str) -> list[tuple[object, ...]]:
        """Run SQL as the superuser (e.g. to tamper with the audit log as an attacker with the password would)."""
        import psycopg

        with psycopg.connect(self.dsn(db), autocommit=True) as conn:
            cur = conn.execute(statement)
            return list(cur.fetchall()) if cur.description else []

    def stop(self) -> None:
        subprocess.run(_as_server_user([_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"]),
                       capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Postgres:
    root = Path(tempfile.mkdtemp(prefix="recon-pg-", dir="/tmp"))
    os.chmod(root, 0o755)
    password = secrets.token_hex(12)
    (root / "pw").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "pw", "postgres", "postgres")
    subprocess.run(_as_server_user([_bin("initdb"), "-D", str(root / "data"), "-U", "recon", "--pwfile",
                                    str(root / "pw"), "-A", "scram-sha-256", "--no-sync", "-E", "UTF8"]),
                   check=True, capture_output=True)
    port = free_block(1)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
    done = subprocess.run(_as_server_user([_bin("pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"), "-w",
                                           "-t", "60", "-o", options, "start"]), capture_output=True, text=True)
    if done.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        raise RuntimeError(f"postgres did not start: {done.stderr}{log}")
    return Postgres(root, port, password)
