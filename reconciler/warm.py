"""The resident planner: `recon plan`, `recon validate` and a scripted `recon apply` without Python's start-up.

Most of a small plan's time is start-up, not work: the interpreter, typer, pydantic and the spec
models, rich, ruamel (about 0.25 s, where the plan of 20 SSH hosts over kept connections takes
0.15 s). So the first `recon plan` or `recon validate` of a while, once it has finished, leaves a
process behind that has imported all of that and waits (`RECON_WARM` seconds, default 60; 0 turns
it off). The next plan's `recon` process, before importing anything, hands it its arguments, its
environment, its umask, its standard input, output and error and its working directory (as file
descriptors); the planner forks, and the child does exactly what the `recon` process would have
done, as that process, then exits; its exit status becomes the `recon` process's. The child leads a
process group of its own; signals sent to the `recon` process (Ctrl-C) are passed to that group, as
a terminal's reach a foreground job, and the group is ended when its `recon` process goes away.
Nothing is shared between two runs but what was imported: every run is a fresh fork.

One planner per user, network namespace, PID namespace, root directory and recon code (the
version, and the size and modification time of every module file, so an edited checkout or an
upgrade starts a new one), reached over a Unix socket in a directory only the user can enter, the
peer's uid checked. Linux only (it needs `pidfd_open`); anywhere else, and when anything about the
hand-over fails, the `recon` process simply plans by itself.

`recon apply` is served too when its standard input is not a terminal (CI, scripts, `--auto-approve`
from a pipe): the run's child leads its own process group, which is not the terminal's foreground
group, so a prompt read from a terminal would stop it (SIGTTIN); with a terminal on stdin apply
keeps its own process. For an apply the saving is the start-up and, with the postgres state
backend, the driver's import (about 0.2 s), which the planner has done before the fork.

Protocol: the client sends a 4-byte length and a JSON header (`argv`, `env`, `umask`, `encodings`)
with four descriptors (stdin, stdout, stderr, the working directory); the planner answers JSON
lines: `{"pid": N}`, then `{"status": WAITSTATUS}` when the child has exited.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

SERVED = ("plan", "validate")
SERVED_UNATTENDED = ("apply",)  # only without a terminal on stdin: a prompt from a background group would stop


def served(argv: list[str]) -> bool:
    """Whether this run may be handed to the resident planner."""
    if not argv:
        return False
    if argv[0] in SERVED:
        return True
    if argv[0] in SERVED_UNATTENDED:
        try:
            return not os.isatty(0)
        except OSError:
            return False
    return False
_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")


def main() -> None:
    """The `recon` console script: hand the run to the resident planner, else run it here."""
    argv = sys.argv[1:]
    idle = _idle() if served(argv) else 0.0
    path = socket_path() if idle > 0 else None
    if path is not None:
        code = _handed(path, argv)
        if code is not None:
            sys.exit(code)
    from reconciler.cli import run

    try:
        code = run(argv)
    finally:
        if path is not None:
            _start(path, idle)  # none answered: leave one behind for the next run
    sys.exit(code)


def _idle() -> float:
    if sys.platform != "linux" or not hasattr(os, "pidfd_open"):
        return 0.0
    try:
        return max(0.0, float(os.environ.get("RECON_WARM", "60")))
    except ValueError:
        return 0.0


def _roots() -> list[Path]:
    here = Path(__file__).resolve().parent
    return [here, here.parent / "specs", here.parent / "providers"]


def code_stamp(roots: list[Path] | None = None) -> str:
    """The version, the interpreter and every module file's size and mtime: a new stamp, a new planner."""
    from reconciler import __version__

    h = hashlib.sha256(f"{__version__}\0{sys.executable}\0".encode())
    for root in roots if roots is not None else _roots():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(dirpath, name))
                    h.update(f"{dirpath}/{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for p in sys.path:  # an installed or removed dependency changes its site-packages directory
        if p.endswith("site-packages"):
            with contextlib.suppress(OSError):
                h.update(str(os.stat(p).st_mtime_ns).encode())
    return h.hexdigest()[:16]


def socket_path() -> Path | None:
    """This user's planner socket for this namespace, root and code; None where none can be kept."""
    from providers.rundir import runtime_dir

    try:
        base = runtime_dir()  # (not this user's alone, or not to be made: plan without a resident planner)
        ns = [os.readlink(f"/proc/self/ns/{k}") for k in ("net", "pid")]
        root = os.stat("/")
    except OSError:
        return None
    key = hashlib.sha256(f"{ns}\0{root.st_dev}.{root.st_ino}\0{code_stamp()}".encode()).hexdigest()[:20]
    path = base / f"plan-{key}.sock"
    return path if len(str(path)) < 100 else None  # a Unix socket's path has at most 107 bytes


def _handed(path: Path, argv: list[str]) -> int | None:
    """The exit code of the run the planner made for this process; None if it could not take it."""
    import array
    import signal

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fds = []
    try:
        sock.connect(str(path))
        for fd in (0, 1, 2):
            os.fstat(fd)  # a closed standard stream: plan here, where Python deals with it
        fds = [0, 1, 2, os.open(".", os.O_RDONLY | os.O_DIRECTORY)]
        umask = os.umask(0o22)
        os.umask(umask)
        head = json.dumps({"argv": argv, "env": dict(os.environ), "umask": umask,
                           "encodings": [getattr(s, "encoding", None) or "utf-8"
                                         for s in (sys.stdin, sys.stdout, sys.stderr)]}).encode()
        sock.sendmsg([struct.pack("!I", len(head)) + head],
                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        answers = sock.makefile("rb")
        first = answers.readline()
    except OSError:
        sock.close()
        return None
    finally:
        if len(fds) == 4:
            os.close(fds[3])
    if not first:
        sock.close()
        return None  # the planner was leaving: nothing ran
    pid = int(json.loads(first)["pid"])

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(OSError):
            os.killpg(pid, signum)  # the run and what it started, as Ctrl-C reaches a foreground job

    for name in _SIGNALS:
        signal.signal(getattr(signal, name), forward)
    if os.environ.get("RECON_WARM_REPORT"):
        print(f"recon: planned by the resident planner (pid {pid})", file=sys.stderr, flush=True)
    with sock, answers:
        line = answers.readline()  # (a forwarded signal does not interrupt it: PEP 475)
    if not line:
        print("error: the resident planner went away during the run; run again with RECON_WARM=0",
              file=sys.stderr)
        return 1
    code = os.waitstatus_to_exitcode(int(json.loads(line)["status"]))
    return 128 - code if code < 0 else code


def _start(path: Path, idle: float) -> None:
    """Leave a planner behind for the next run (it leaves at once if another serves already). Its own
    environment is the minimum; each run gets its client's."""
    import subprocess

    from providers.rundir import resident_env

    env = resident_env()
    with contextlib.suppress(OSError):
        subprocess.Popen([sys.executable, "-m", "reconciler.warm", str(path), str(idle)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, cwd=Path(__file__).resolve().parents[1], env=env)


_PRELOAD = (
    "reconciler.cli", "reconciler.planner", "specs.project", "reconciler.audit", "reconciler.executor",
    "reconciler.gate", "reconciler.journal", "reconciler.render.text", "reconciler.render.markdown",
    "specs.hostgroup", "specs.hoststate", "specs.model", "specs.bundle", "specs.policy",
    "providers.hosts.provider", "providers.hosts.ssh_agent", "providers.hosts.ssh", "paramiko",
    "ruamel.yaml", "ruamel.yaml.cyaml", "rich.console", "rich.markup", "sqlite3", "pickle", "html", "colorsys",
    "pydantic.type_adapter", "typer._adapters", "typer._click.decorators", "pwd",
    "docker",  # the engine's client: 0.17 s of every plan of Docker Models (a quarter of a no-op plan of 200)
)


def _preload() -> None:
    """What plans and validations need, imported and built once, before any fork. (What a run needs
    beyond it, e.g. the Kubernetes client, it imports itself, as a `recon` process would.)"""
    import importlib
    import io

    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from rich.console import Console
    from ruamel.yaml import YAML

    from reconciler import cli
    from specs.base import StrictModel

    cli.command()
    Console(file=io.StringIO(), force_terminal=True, highlight=False).print("[red]a[/red] [dim]b[/dim]")
    yaml = YAML(typ="safe", pure=False)
    for node in yaml.compose_all("a: [1, {b: c}]\n"):
        yaml.constructor.construct_document(node)
    todo: list[type[StrictModel]] = [StrictModel]
    while todo:  # the spec models are built on first use (defer_build): build them all now
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        with contextlib.suppress(Exception):
            cls.model_rebuild(force=True)



def _shared_driver(env: dict[str, str], cwd_fd: int) -> None:
    """Import the postgres driver (about 0.2 s) once, before the fork, when a caller's state backend is
    postgres (its environment, or the recon.yaml of its repository): its later runs fork with it loaded."""
    if "psycopg" in sys.modules:
        return
    chosen = env.get("RECON_STATE_BACKEND", "")
    if not chosen:
        from specs.settings import find

        with contextlib.suppress(OSError):
            found = find(Path(os.readlink(f"/proc/self/fd/{cwd_fd}")))
            chosen = "postgres" if found is not None and "postgres" in found.read_text(encoding="utf-8") else ""
    if chosen == "postgres":
        with contextlib.suppress(ImportError):
            import psycopg  # noqa: F401

class _Resident:
    def __init__(self, path: Path, idle: float) -> None:
        self.path = path
        self.idle = idle

    def serve(self) -> None:
        import fcntl
        import selectors
        import time

        lock = open(self.path.with_suffix(".lock"), "w")  # noqa: SIM115 - held for the planner's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another planner serves (or starts) for this socket
        _preload()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}")
        server.bind(str(tmp))
        os.chmod(tmp, 0o600)
        server.listen(64)
        os.replace(tmp, self.path)
        mine = os.stat(self.path).st_ino
        sel = selectors.DefaultSelector()
        sel.register(server, selectors.EVENT_READ, ("accept",))
        children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, client connection)
        last = time.monotonic()
        try:
            while children or time.monotonic() - last < self.idle:
                for key, _ in sel.select(timeout=1.0):
                    kind = key.data[0]
                    if kind == "accept":
                        conn, _ = server.accept()
                        got = self._fork(conn, server, sel)
                        if got is None:
                            conn.close()
                            continue
                        pid, pidfd = got
                        children[pidfd] = (pid, conn)
                        sel.register(pidfd, selectors.EVENT_READ, ("child",))
                        sel.register(conn, selectors.EVENT_READ, ("client", pid))
                    elif kind == "child":
                        pid, conn = children.pop(key.fd)
                        sel.unregister(key.fd)
                        if conn.fileno() in sel.get_map():
                            sel.unregister(conn)
                        _, status = os.waitpid(pid, 0)
                        os.close(key.fd)
                        with contextlib.suppress(OSError):
                            conn.sendall(json.dumps({"status": status}).encode() + b"\n")
                        conn.close()
                        last = time.monotonic()
                    else:  # the client sent something or left: it only ever leaves
                        sel.unregister(key.fileobj)
                        with contextlib.suppress(OSError):
                            os.killpg(key.data[1], 15)
        finally:
            try:
                if os.stat(self.path).st_ino == mine:
                    self.path.unlink()
            except OSError:
                pass

    def _fork(self, conn: socket.socket, server: socket.socket, sel: Any) -> tuple[int, int] | None:
        """Read a client's request and fork its run; (pid, pidfd), or None for a request to drop."""
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        conn.settimeout(5.0)
        fds: list[int] = []
        try:
            if uid != os.getuid():
                return None
            data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            while len(data) < 4 or len(data) < 4 + struct.unpack("!I", data[:4])[0]:
                more = conn.recv(65536)
                if not more:
                    return None
                data += more
            head = json.loads(data[4:4 + struct.unpack("!I", data[:4])[0]])
            if len(fds) != 4:
                return None
        except (OSError, ValueError):
            for fd in fds:
                os.close(fd)
            return None
        conn.settimeout(None)
        _shared_driver(head["env"], fds[3])
        pid = os.fork()
        if pid == 0:
            try:
                os.setpgid(0, 0)  # a process group of its own, which signals reach as a terminal's would
                sel.close()
                server.close()
                conn.close()
            finally:
                _run_child(head, fds)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # (both sides set it, so that it is set before the client can signal)
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except OSError:
            os.killpg(pid, 15)
        return pid, os.pidfd_open(pid)


def _run_child(head: dict[str, Any], fds: list[int]) -> None:
    """Become the client's `recon` process, run its command, and exit with its code. Never returns."""
    code = 1
    try:
        import atexit
        import signal

        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.fchdir(fds[3])
        for fd in fds:
            os.close(fd)
        os.umask(int(head["umask"]))
        os.environ.clear()
        os.environ.update(head["env"])
        enc = head["encodings"]
        tty = os.isatty(1)
        sys.stdin = open(0, encoding=enc[0], closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding=enc[1], closefd=False, buffering=-1 if not tty else 1)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding=enc[2], errors="backslashreplace", closefd=False,  # noqa: SIM115
                          buffering=1)
        argv = [str(a) for a in head["argv"]]
        sys.argv = ["recon", *argv]
        from reconciler.cli import run

        code = run(argv)
        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    _Resident(Path(sys.argv[1]), float(sys.argv[2])).serve()
