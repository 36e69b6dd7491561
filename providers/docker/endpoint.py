"""A Model's stable endpoint on Docker: an HAProxy that recon runs beside the replicas, on the host's network.

Its backend lists exactly the replicas that serve: a replica joins once it passed its health check, and leaves
before it is removed. recon writes the configuration into the container (the engine's archive API, so the engine
may be another machine's) and reloads HAProxy (SIGUSR2 to its master: the new worker takes the listening socket
over, nothing is refused), then waits until the former worker has finished the requests it had before the replica
it no longer lists is removed. So a client of 127.0.0.1:PORT sees no failed request through a rolling update, nor
through a failed one (a successor that fails its check is never listed).

Why lists and reloads, not every port with health checks: HAProxy 2.6 takes a listed server as up until its first
check fails, so an empty slot would be sent requests after each reload. Why not its runtime API: that needs a
socket recon can reach wherever the engine is; the master's own notices in the container's output say when a
reload loaded (or failed) and `docker top` says when the former worker is gone.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from typing import Any

from providers.docker.model import MANAGED, ROLE, STACK, STACK_NAME, DockerModel, Failed, L, is_endpoint, remove
from specs.model import ModelSpec

CONFIG = "/recon-endpoint.cfg"  # in the endpoint's container (the root always exists, whatever the image)
SETTINGS = f"{L}endpoint"  # the endpoint's settings as JSON, on its container (what the plan compares)


def settings(spec: ModelSpec) -> dict[str, Any] | None:
    """What a Model's endpoint is made from (what the plan shows, field by field), or None without one."""
    e = spec.endpoint
    if e is None:
        return None
    h = spec.health
    check = f"GET {h.path} answers {h.status}" if h.protocol == "http" else "tcp connect"
    return {"address": f"{e.address}:{e.port}", "image": e.image, "mode": h.protocol, "check": check,
            "drainTimeout": e.drainTimeout}


def digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def render(d: DockerModel, ports: list[int]) -> str:
    """HAProxy's configuration: the endpoint, and a backend of the replicas on `ports` (none: it answers 503)."""
    e, h = d.spec.endpoint, d.spec.health
    assert e is not None
    http = h.protocol == "http"
    lines = [
        "# written by recon: each rollout rewrites it", "global",
        f"  hard-stop-after {int(e.drainTimeout * 1000)}ms", "defaults", f"  mode {h.protocol}",
        "  timeout connect 2s", "  timeout client 5m", "  timeout server 5m", "  retries 3", "  option redispatch 1",
        *(["  timeout http-request 30s", "  option http-keep-alive", "  option forwardfor"] if http else []),
        "frontend endpoint", f"  bind {e.address}:{e.port}", "  default_backend replicas",
        "backend replicas", f"  balance {'roundrobin' if http else 'leastconn'}",
        *([f"  option httpchk GET {h.path}", f"  http-check expect status {h.status}"] if http else []),
        "  default-server check inter 1s fall 2 rise 2 observe layer4 error-limit 1 on-error mark-down",
        *(f"  server replica-{port} 127.0.0.1:{port}" for port in sorted(ports)),
    ]
    return "\n".join(lines) + "\n"


class Endpoint:
    """The endpoint of one Model during one apply: started, re-listed and drained as replicas come and go."""

    def __init__(self, api: Any, d: DockerModel, containers: list[dict[str, Any]]) -> None:
        self.api, self.d = api, d
        self.want = d.endpoint
        self.digest = digest(self.want) if self.want is not None else ""
        self.found = [c for c in containers if is_endpoint(c)]
        self.id: str | None = next((c["Id"] for c in self.found if c["State"] == "running"
                                    and c["Labels"].get(f"{L}config") == self.digest), None)
        self.listed: list[int] | None = None  # what this apply last wrote (None: not known yet)
        self.since = int(time.time()) - 1  # its notices are read from here on

    @property
    def on(self) -> bool:
        return self.want is not None

    def ensure(self, ports: list[int]) -> None:
        """The endpoint runs with the wanted settings, listing `ports`; one with other settings (or a stopped one)
        is replaced: the new one takes the port beside it (SO_REUSEPORT), then the old one finishes and goes."""
        if self.want is None or self.id is not None:
            return
        import docker

        try:
            self.api.inspect_image(self.want["image"])
        except docker.errors.ImageNotFound:
            raise Failed(f"the endpoint's image {self.want['image']} is not on the engine; pull or load it there "
                         "(recon pulls nothing), or name another HAProxy 2.x image in endpoint.image") from None
        for c in self.found:  # a stopped one of these settings has the name the new one takes
            if c["State"] != "running":
                remove(self.api, c)
        labels = {**MANAGED, f"{L}spec": self.d.name, ROLE: "endpoint", f"{L}config": self.digest,
                  SETTINGS: json.dumps(self.want, sort_keys=True),
                  **({STACK: self.d.stack.id, STACK_NAME: self.d.stack.name} if self.d.stack else {})}
        host_config = self.api.create_host_config(network_mode="host", restart_policy={"Name": "unless-stopped"})
        created = self.api.create_container(
            self.want["image"], name=f"recon-{self.d.name.split('/', 1)[1]}-endpoint-{self.digest[:8]}",
            entrypoint=["haproxy"], command=["-W", "-db", "-f", CONFIG], labels=labels, host_config=host_config)
        self.id = str(created["Id"])
        self._write(ports)
        self.api.start(self.id)
        self._loaded(0, "started")
        self.listed = sorted(ports)
        self.retire([c for c in self.found if c["Id"] != self.id and c["State"] == "running"])

    def serve(self, ports: list[int]) -> None:
        """List exactly these replicas, reloaded and loaded before this returns (a no-op when they are listed)."""
        if self.id is None or sorted(ports) == self.listed:
            return
        before = self._notices()
        self._write(ports)
        self.api.kill(self.id, "SIGUSR2")
        self._loaded(before, "reloaded")
        self.listed = sorted(ports)

    def drain(self) -> None:
        """Wait until HAProxy's former workers have finished their requests (at most drainTimeout: then HAProxy
        stops them itself), so the replicas they no longer list can go."""
        if self.id is None or self.want is None:
            return
        deadline = time.monotonic() + self.want["drainTimeout"] + 5
        while time.monotonic() < deadline:
            if self._processes() <= 2:  # the master and its current worker
                return
            time.sleep(0.05)

    def retire(self, containers: list[dict[str, Any]]) -> None:
        """Endpoints no longer wanted: stopped softly (SIGUSR1: they finish their requests first), then removed."""
        import docker
        import requests

        for c in containers:
            try:
                if c["State"] == "running":
                    self.api.kill(c["Id"], "SIGUSR1")
                    self.api.wait(c["Id"], timeout=int((self.want or {}).get("drainTimeout", 30)) + 5)
            except (docker.errors.DockerException, requests.exceptions.RequestException):
                pass  # gone already, or still finishing at the deadline: removed below all the same
            remove(self.api, c)

    def _write(self, ports: list[int]) -> None:
        text = render(self.d, ports).encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(CONFIG.lstrip("/"))
            info.size, info.mode, info.mtime = len(text), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(text))
        self.api.put_archive(self.id, "/", buf.getvalue())

    def _output(self) -> str:
        return str(self.api.logs(self.id, stdout=True, stderr=True, since=self.since).decode(errors="replace"))

    def _notices(self, text: str | None = None) -> int:
        """How many loads HAProxy's master has reported (succeeded or failed) in its output."""
        text = self._output() if text is None else text
        return text.count("Loading success") + text.count("Loading failure")

    def _loaded(self, before: int, what: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self._output()
            if self._notices(text) > before:
                if text.rfind("Loading success") > text.rfind("Loading failure"):
                    return
                tail = " | ".join(text.strip().splitlines()[-4:])
                raise Failed(f"the endpoint's HAProxy refused its configuration when {what}: {tail[-400:]}")
            state = self.api.inspect_container(self.id)["State"]
            if not state["Running"]:
                tail = " | ".join(text.strip().splitlines()[-4:])
                raise Failed(f"the endpoint's HAProxy ({self.want and self.want['image']}) exited with "
                             f"{state['ExitCode']} when {what}: {tail[-400:]}")
            time.sleep(0.05)
        raise Failed(f"the endpoint's HAProxy did not say it {what} within 20 s")

    def _processes(self) -> int:
        return len(self.api.top(self.id).get("Processes") or [])
