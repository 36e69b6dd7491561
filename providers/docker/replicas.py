"""Replicas on the engine: converge a Model replica by replica, start one, check its health, remove one."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from providers.context import Context
from providers.docker.endpoint import Endpoint
from providers.docker.files import materialize
from providers.docker.model import (
    MANAGED,
    STACK,
    STACK_NAME,
    DockerModel,
    Failed,
    L,
    OnePerKey,
    Orphan,
    index_of,
    is_endpoint,
    port_of,
    remove,
)
from specs.stack import Stack


def converge(api: Any, d: DockerModel, ctx: Context) -> str:
    """The Model's replicas as its spec says, one at a time, each behind its health check."""
    image_id = _image(api, d, ctx)
    tree, mount = materialize(d.bundle, ctx) if d.bundle is not None else ("", "")
    want = d.config(image_id, tree or None)
    n = d.spec.replicas
    started = replaced = removed = 0
    # listed once: this apply holds the Model's lock, so its containers change only by what follows (a list of
    # every container per replica cost the engine more than anything else when many Models roll at once)
    existing = mine(api, d)
    reps = [c for c in existing if not is_endpoint(c)]
    # a container counts only when it is healthy now (or passes its health check below): one an apply was killed
    # while it waited for may be broken, and must never be kept in place of the one that serves
    live = {c["Id"]: port_of(c) for c in reps if c["State"] == "running" and _probe(c, d)[0]}
    endpoint = Endpoint(api, d, existing)
    endpoint.ensure(list(live.values()))

    def retire(gone: list[dict[str, Any]]) -> None:
        """Out of the endpoint first (its former worker finishing their requests), then removed."""
        if any(c["Id"] in live for c in gone):
            for c in gone:
                live.pop(c["Id"], None)
            endpoint.serve(list(live.values()))
            endpoint.drain()
        for c in gone:
            remove(api, c)

    for i in range(n):
        current = [c for c in reps if index_of(c) == i]
        healthy = next((c for c in current if c["Id"] in live and c["Labels"].get(f"{L}config") == want), None)
        if healthy is not None:
            others = [c for c in current if c is not healthy]
            retire(others)
            removed += len(others)
            continue
        serving = [c for c in current if c["Id"] in live]  # healthy, older settings: serve until a successor is
        broken = [c for c in current if c["Id"] not in live]  # stopped, or not healthy now (a killed apply's)
        retire(broken)
        removed += len(broken)
        taken = {port_of(c) for c in serving}
        port = d.spec.port + i if d.spec.port + i not in taken else d.spec.port + n + i
        try:
            new = _start(api, d, i, port, want, image_id, mount, tree, ctx.commit)
        except _TagMoved:
            ctx.session("docker-images", _Images).ids.pop(d.image, None)
            raise
        except _Refused as exc:  # the engine would not make or run it: what a failed health check leads to
            new, ok, failed = "", False, f"could not start: {exc}"
        else:
            ok, why = _healthy(api, new, port, d)
            failed = f"failed its health check ({why})"
        if not ok:
            if new:
                remove(api, {"Id": new})
            endpoint.serve(list(live.values()))
            if serving:
                raise Failed(f"rolled back: the new replica {i} {failed}; the old one keeps serving on port "
                             f"{taken.pop()}; later replicas were not changed")
            raise Failed(f"replica {i} {failed}; it was removed" if new else f"replica {i} {failed}")
        live[new] = port
        endpoint.serve(list(live.values()))
        if serving and d.spec.drainSeconds and not endpoint.on:
            time.sleep(d.spec.drainSeconds)  # the new one serves; let those who look replicas up move over
        retire(serving)
        replaced += bool(serving)
        started += not serving
    extra = [c for c in reps if index_of(c) >= n]
    retire(extra)
    removed += len(extra)
    endpoint.serve(list(live.values()))
    if not endpoint.on:
        endpoint.retire(endpoint.found)
    where = f"; endpoint {d.endpoint['address']}" if d.endpoint else ""
    return f"{started} started, {replaced} replaced, {removed} removed; {n} healthy replicas{where}"


def mine(api: Any, d: DockerModel | Orphan, stack: Stack | None = None) -> list[dict[str, Any]]:
    """The containers of this Model, of this stack (a DockerModel's own, or `stack`) or of none recorded; never
    another stack's Model of the same name."""
    own = stack or getattr(d, "stack", None)
    return [c for c in api.containers(all=True, filters={"label": [f"{L}managed-by=recon", f"{L}spec={d.name}"]})
            if own is None or c["Labels"].get(STACK) in (None, own.id)]


_BUILDING = OnePerKey()


class _TagMoved(Failed):
    """The image's tag names another image than the one this run found (so it is looked up again)."""


class _Refused(Failed):
    """The engine refused to create or start a replica (a command it cannot find, a mount or limit it cannot set):
    its own words, and nothing of the replica left behind."""


class _Images:
    """The ids of the images this run found or built, by reference: Models sharing an image ask the engine once
    (forgotten when a replica made from the reference turns out to run another image: the tag moved)."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def close(self) -> None:
        self.ids.clear()


def _image(api: Any, d: DockerModel, ctx: Context) -> str:
    """The image's id; built first when it is missing (once, when Models rolling at the same time share it)."""
    known = ctx.session("docker-images", _Images).ids
    with _BUILDING(d.image):
        if d.image not in known:
            known[d.image] = _image_now(api, d)
        return known[d.image]


def _image_now(api: Any, d: DockerModel) -> str:
    import docker

    try:
        return str(api.inspect_image(d.image)["Id"])
    except docker.errors.ImageNotFound:
        pass
    if d.context is None:
        raise Failed(f"image {d.image} is not on the engine; build or load it there (recon pulls nothing)")
    assert d.spec.build is not None
    try:
        for _ in api.build(path=str(d.context), dockerfile=d.spec.build.dockerfile, tag=d.image, rm=True,
                           labels={**MANAGED, f"{L}context": d.image.rsplit(":", 1)[1]}, decode=True):
            pass
        return str(api.inspect_image(d.image)["Id"])
    except docker.errors.DockerException as exc:
        raise Failed(f"building {d.image} from {d.context} failed: {exc}") from None


def _start(api: Any, d: DockerModel, index: int, port: int, config: str, image_id: str, mount: str, tree: str,
           commit: str) -> str:
    """One replica; `mount` is the materialized bundle's bind (host:container:ro) and `tree` its files' digest."""
    s = d.spec
    settings = d.effective(tree or None)
    labels = {**d.settings["labels"], **MANAGED, f"{L}spec": d.name, f"{L}replica": str(index), f"{L}port": str(port),
              f"{L}config": config, f"{L}settings": json.dumps({**settings, "image_id": image_id}, sort_keys=True),
              f"{L}commit": commit, **({STACK: d.stack.id, STACK_NAME: d.stack.name} if d.stack else {})}
    bridge = s.network == "bridge"
    host_config = api.create_host_config(
        network_mode="bridge" if bridge else "host",
        port_bindings={s.containerPort: ("127.0.0.1", port)} if bridge else None,
        restart_policy={"Name": s.restart} if s.restart != "no" else None, init=True,
        nano_cpus=int(s.resources.cpus * 1e9) if s.resources.cpus else None, mem_limit=s.resources.memory,
        binds=[*d.settings["volumes"], *([mount] if mount else [])] or None)
    name = f"recon-{d.name.split('/', 1)[1]}-{index}-{config[:8]}-{port}"
    # made from the reference, so the engine's container list says whether it still names this image (a plan then
    # needs no list of images); the image is the one checked above unless the tag moved in between
    import docker

    try:
        created = api.create_container(d.image, name=name, command=s.command, labels=labels,
                                       host_config=host_config, ports=[s.containerPort] if bridge else None,
                                       environment={**d.env, "PORT": str(s.containerPort if bridge else port),
                                                    **({"MODEL_DIR": d.bundle.mount} if d.bundle else {})})
    except docker.errors.APIError as exc:
        raise _Refused(f"the engine would not create it: {_said(exc)}") from None
    if api.inspect_container(created["Id"])["Image"] != image_id:
        api.remove_container(created["Id"], force=True)
        raise _TagMoved(f"the tag {d.image} moved to another image while replica {index} was being made; apply again")
    try:
        api.start(created["Id"])
    except docker.errors.APIError as exc:
        remove(api, created)
        raise _Refused(f"the engine could not start it: {_said(exc)}") from None
    return str(created["Id"])


def _said(exc: Any) -> str:
    """The engine's own explanation of an API error, without the HTTP wrapping (the OCI runtime's words)."""
    return str(getattr(exc, "explanation", None) or exc).strip()


# health checks go straight to the replica on loopback: an http_proxy (or all_proxy) in the environment must not
# carry them to a proxy (urlopen's default opener would), and the opener reads no environment per request
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _probe(c: dict[str, Any] | int, d: DockerModel) -> tuple[bool, str]:
    """One health check now, of a container (by the port its labels name) or a port: (healthy, why not)."""
    port = c if isinstance(c, int) else port_of(c)
    h = d.spec.health
    try:
        if h.protocol == "tcp":
            with socket.create_connection(("127.0.0.1", port), timeout=h.timeout):
                status = h.status
        else:
            with _DIRECT.open(f"http://127.0.0.1:{port}{h.path}", timeout=h.timeout) as resp:
                status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        return False, f"no answer: {exc}"
    return status == h.status, "" if status == h.status else f"answered {status}, not {h.status}"


def _last_output(api: Any, cid: str) -> str:
    """A container's last 5 lines of output, on one line."""
    return str(api.logs(cid, tail=5).decode(errors="replace").strip().replace("\n", " | "))


# a new replica that exited this often while starting fails at the next look between two of its exits (its exit
# code is the engine's while it waits to restart it), not at its startTimeout; fewer exits are a start that waits
# for something (a dependency still coming up)
CRASHES = 3


def _healthy(api: Any, cid: str, port: int, d: DockerModel) -> tuple[bool, str]:
    h = d.spec.health
    deadline = time.monotonic() + h.startTimeout
    why = "no answer"
    looked = 0.0  # when the engine was last asked whether the container still runs
    while time.monotonic() < deadline:
        ok, said = _probe(port, d)
        if not ok and time.monotonic() - looked < 0.5:  # the engine is asked on an answer, else twice a second
            why = said or why
            time.sleep(h.interval)
            continue
        looked = time.monotonic()
        info = api.inspect_container(cid)
        state = info["State"]
        if ok and state["Running"]:
            return True, ""
        if ok:  # something else answers on its port (the replica could not bind it, and exited)
            said = f"port {port} is answered by another process"
        why = said or why
        if not state["Running"] and not state.get("Restarting"):
            logs = _last_output(api, cid)
            return False, f"it exited with {state['ExitCode']}: {logs[-300:]}"
        if info.get("RestartCount", 0) >= CRASHES and state.get("Restarting"):  # between two exits: the last one's
            logs = _last_output(api, cid)
            oom = " (killed: out of memory)" if state.get("OOMKilled") else ""
            return False, (f"it keeps exiting: restarted {info['RestartCount']} times while starting, last exit code "
                           f"{state['ExitCode']}{oom}: {logs[-300:]}")
        time.sleep(h.interval)
    logs = _last_output(api, cid)
    return False, f"{why} within {h.startTimeout:g}s" + (f"; its last output: {logs[-400:]}" if logs else "")

