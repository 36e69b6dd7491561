"""SSH connections kept between runs, as OpenSSH's ControlPersist keeps them for Ansible.

A per-user agent process holds paramiko connections (providers/hosts/ssh.py) and runs scripts on
them for recon processes, which reach it over a Unix socket in a directory only the user can
enter (`$XDG_RUNTIME_DIR/recon`, else `/tmp/recon-UID`, mode 0700; the peer's uid is checked too).
There is one agent per network namespace, since addresses mean different things in each. A run
that finds no agent starts one; the agent exits after `persist` seconds without work. A connection
is reused only for the same host, port, user, jump host, known_hosts content, identity, password
and become settings; the secrets travel over the socket, never to disk. A script whose client goes
away has its connection closed when it next reports, as if the connection had dropped.

Protocol: the client sends one JSON line (`host`, `secrets`, `size`, `idle`) and `size` bytes of
script; the agent answers JSON lines: `{"line": b64}` as output comes, then `{"rc", "stdout",
"stderr"}` or `{"error", "transient"}`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from providers.hosts.model import HostInfo, Payload
from providers.hosts.transport import RunResult, Script, whole
from specs.errors import TransportError


def socket_path(netns: str = "") -> Path:
    """The agent's socket for this network namespace (or the one whose inode number is given)."""
    from providers.rundir import NotPrivate, runtime_dir

    try:
        base = runtime_dir()
    except NotPrivate as exc:
        raise TransportError(f"{exc}; remove it, or set ssh.persist: 0") from None
    if not netns:
        netns = os.readlink("/proc/self/ns/net").strip("net:[]") if Path("/proc/self/ns/net").exists() else "0"
    return base / f"ssh-{netns}-{_code_stamp()}.sock"  # an agent running other code is not asked


def _code_stamp() -> str:
    """Size and mtime of the modules the agent runs (this folder's): another version, another agent."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            st = os.stat(here / name)
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:12]


class AgentTransport:
    """The SSH transport through the agent; the same interface as SshTransport."""

    def __init__(self, host: HostInfo) -> None:
        assert host.ssh is not None
        self.host = host
        from providers.hosts.ssh import SshTransport

        self.direct = SshTransport(host)  # resolves the secrets the agent gets, and the fallback

    def _secrets(self) -> dict[str, str]:
        out = {}
        for name in ("identity", "password", "becomePassword"):
            try:
                value = self.direct.secret(name)
            except (KeyError, OSError) as exc:
                raise TransportError(f"{self.host.name}: cannot read the {name}: {exc}") from None
            if value is not None:
                out[name] = value
        return out

    _started = threading.Lock()  # one start of an agent per process, whatever the number of hosts

    def _connect(self) -> socket.socket | None:
        path = socket_path()
        for attempt in range(60):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return sock
            except OSError:
                sock.close()
            if attempt == 0 and AgentTransport._started.acquire(blocking=False):
                from providers.rundir import resident_env

                # the user's ssh-agent for hosts without an identity; no other variable of this run
                subprocess.Popen([sys.executable, "-m", "providers.hosts.ssh_agent", str(path)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True, cwd=Path(__file__).resolve().parents[2],
                                 env=resident_env(("SSH_AUTH_SOCK",)))
            time.sleep(0.05)
        return None

    def run(self, script: Script, on_line: Callable[[bytes], None] | None = None) -> RunResult:
        assert self.host.ssh is not None
        sock = self._connect()
        if sock is None:  # no agent could start: connect from this process
            return self.direct.run(script, on_line)
        data = whole(script).encode()
        head = {"host": _host_json(self.host), "secrets": self._secrets(), "size": len(data),
                "idle": self.host.ssh.persist}
        with sock, sock.makefile("rb") as answers:
            sock.sendall(json.dumps(head).encode() + b"\n" + data)
            for raw in answers:
                msg = json.loads(raw)
                if "line" in msg:
                    if on_line is not None:
                        on_line(base64.b64decode(msg["line"]))
                elif "error" in msg:
                    raise TransportError(msg["error"], transient=bool(msg.get("transient")))
                else:
                    return RunResult(int(msg["rc"]), base64.b64decode(msg["stdout"]), base64.b64decode(msg["stderr"]))
        raise TransportError(f"{self.host.name}: the SSH agent went away during the script", transient=True)

    def put(self, payload: Payload, remote: str) -> None:
        """Through the agent too (its connection is the warm one): the chunks follow the request on the socket."""
        assert self.host.ssh is not None
        sock = self._connect()
        if sock is None:
            return self.direct.put(payload, remote)
        head = {"host": _host_json(self.host), "secrets": self._secrets(), "put": remote, "size": payload.size,
                "idle": self.host.ssh.persist}
        with sock, sock.makefile("rb") as answers:
            sock.sendall(json.dumps(head).encode() + b"\n")
            for chunk in payload.chunks():
                sock.sendall(chunk)
            for raw in answers:
                msg = json.loads(raw)
                if "error" in msg:
                    raise TransportError(msg["error"], transient=bool(msg.get("transient")))
                return None
        raise TransportError(f"{self.host.name}: the SSH agent went away while sending {remote}", transient=True)

    def close(self) -> None:
        self.direct.close()  # the agent's connection stays, for the next run


def _host_json(host: HostInfo) -> dict[str, Any]:
    assert host.ssh is not None
    return {"name": host.name, "address": host.address, "port": host.port, "user": host.user, "base": host.base,
            "group": host.group, "ssh": host.ssh.model_dump(mode="json")}


# the agent

class _Agent:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conns: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.busy = 0
        self.last = time.monotonic()
        self.idle = 60.0

    def key(self, head: dict[str, Any]) -> str:
        host = head["host"]
        base = Path(host["base"])
        known = base / os.path.expanduser(host["ssh"]["knownHosts"])
        try:
            known_digest = hashlib.sha256(known.read_bytes()).hexdigest()
        except OSError:
            known_digest = ""
        return hashlib.sha256(json.dumps([host, head["secrets"], known_digest], sort_keys=True).encode()).hexdigest()

    def transport(self, key: str, head: dict[str, Any]) -> Any:
        from providers.hosts.ssh import SshTransport
        from specs.hostgroup import SshSettings

        with self.lock:
            found = self.conns.get(key)
            if found is not None and not found.alive():
                found.close()
                found = None
            if found is None:
                h = head["host"]
                info = HostInfo(h["name"], "ssh", None, address=h["address"], port=h["port"], user=h["user"],
                                ssh=SshSettings.model_validate(h["ssh"]), base=h["base"], group=h["group"])
                found = self.conns[key] = SshTransport(info, head["secrets"])
            return found

    def serve_one(self, conn: socket.socket) -> None:
        with self.lock:
            self.busy += 1
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            if struct.unpack("3i", creds)[1] != os.getuid():
                return
            reader = conn.makefile("rb")
            head = json.loads(reader.readline())
            self.idle = float(head.get("idle") or self.idle)
            key = self.key(head)

            def send(msg: dict[str, Any]) -> None:  # from this thread only: run() reports lines in it
                conn.sendall(json.dumps(msg).encode() + b"\n")

            if "put" in head:
                self.put(key, head, reader, send)
                return
            script = reader.read(head["size"]).decode()

            def on_line(line: bytes) -> None:
                send({"line": base64.b64encode(line).decode()})

            try:
                done = self.transport(key, head).run(script, on_line)
            except TransportError as exc:  # the host, or the client, went away: drop the connection
                self.drop(key, exc, send)
                return
            send({"rc": done.rc, "stdout": base64.b64encode(done.stdout).decode(),
                  "stderr": base64.b64encode(done.stderr).decode()})
        except (OSError, ValueError):
            pass  # the client went away
        finally:
            conn.close()
            with self.lock:
                self.busy -= 1
                self.last = time.monotonic()

    def put(self, key: str, head: dict[str, Any], reader: Any, send: Callable[[dict[str, Any]], None]) -> None:
        """Stream a client's payload into the host: a chunk at a time from the socket to the channel."""
        left = int(head["size"])

        def chunks() -> Iterator[bytes]:
            nonlocal left
            while left > 0:
                chunk = reader.read(min(left, 1 << 20))
                if not chunk:
                    raise TransportError(f"{head['host']['name']}: the client went away while sending {head['put']}")
                left -= len(chunk)
                yield chunk

        try:
            self.transport(key, head).put_stream(chunks(), str(head["put"]))
        except TransportError as exc:
            self.drop(key, exc, send)
            return
        send({"ok": True})

    def drop(self, key: str, exc: TransportError, send: Callable[[dict[str, Any]], None]) -> None:
        """A connection that failed (the host, or the client, went away) is closed, and the client told."""
        with self.lock:
            gone = self.conns.pop(key, None)
        if gone is not None:
            gone.close()
        send({"error": str(exc), "transient": exc.transient})

    def run(self) -> None:
        import fcntl

        lock = open(self.path.with_suffix(".lock"), "w")  # noqa: SIM115 - held for the agent's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another agent runs (or starts) for this namespace: its socket serves
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}")
        server.bind(str(tmp))
        os.chmod(tmp, 0o600)
        server.listen(256)
        os.replace(tmp, self.path)  # another agent that raced this one is simply replaced
        mine = os.stat(self.path).st_ino
        server.settimeout(1.0)
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                with self.lock:
                    quiet = self.busy == 0 and time.monotonic() - self.last > self.idle
                if quiet:
                    break
                continue
            threading.Thread(target=self.serve_one, args=(conn,), daemon=True).start()
        try:
            if os.stat(self.path).st_ino == mine:  # not replaced by a newer agent meanwhile
                self.path.unlink()
        except OSError:
            pass
        for t in list(self.conns.values()):
            t.close()


if __name__ == "__main__":
    _Agent(Path(sys.argv[1])).run()
