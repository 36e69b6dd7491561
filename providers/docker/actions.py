"""`recon do` on a Model's replicas on Docker: restart, scale, logs, health."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from providers.context import Context
from providers.contract import Output
from providers.docker.endpoint import Endpoint
from providers.docker.model import DockerModel, Failed, L, index_of, is_endpoint, port_of
from providers.docker.replicas import _healthy, _probe, converge, mine
from providers.secrets import masker as secret_masker
from specs.actions import LogsParams, Params, ScaleParams
from specs.model import EnvFrom


def act(api: Any, action: str, d: DockerModel, params: Params, ctx: Context, emit: Callable[[Output], None]) -> str:
    """What was done (a line), or Failed saying why not."""
    if action == "restart":
        return _restart(api, d, emit)
    if action == "scale":
        assert isinstance(params, ScaleParams)
        return _scale(api, d, params.replicas, ctx)
    if action == "logs":
        assert isinstance(params, LogsParams)
        return _logs(api, d, params, emit)
    if action == "health":
        return _health(api, d, emit)
    raise Failed(f"{action} is not an action of Models on Docker")


def _replicas(api: Any, d: DockerModel, containers: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The Model's replicas (not its endpoint), in order."""
    return sorted((c for c in (mine(api, d) if containers is None else containers) if not is_endpoint(c)),
                  key=lambda c: (index_of(c), c["Names"][0]))


def _name(c: dict[str, Any]) -> str:
    return str(c["Names"][0].lstrip("/"))


def _restart(api: Any, d: DockerModel, emit: Callable[[Output], None]) -> str:
    """Each running replica in turn, the next only once this one answers its health check again; behind a stable
    endpoint, each leaves it (its requests finished) before it restarts, and joins again once healthy."""
    containers = mine(api, d)
    running = [c for c in _replicas(api, d, containers) if c["State"] == "running"]
    if not running:
        raise Failed(f"{d.name} has no running replica to restart; `recon apply` starts them")
    front = Endpoint(api, d, containers)
    ports = {c["Id"]: port_of(c) for c in running}
    for n, c in enumerate(running):
        started = time.monotonic()
        front.serve([p for cid, p in ports.items() if cid != c["Id"]])
        front.drain()
        api.restart(c["Id"], timeout=10)
        ok, why = _healthy(api, c["Id"], ports[c["Id"]], d)
        if not ok:
            left = len(running) - n - 1
            raise Failed(f"replica {_name(c)} did not become healthy after its restart ({why})" +
                         (f"; the {left} after it were not restarted" if left else ""))
        front.serve(list(ports.values()))
        emit(Output(_name(c), f"restarted, healthy after {time.monotonic() - started:.1f}s"))
    return f"{len(running)} replicas restarted, one at a time, each healthy again"


def _scale(api: Any, d: DockerModel, replicas: int, ctx: Context) -> str:
    """More or fewer replicas of what runs now; refused while the replicas run other settings than the specs say,
    since a scale must not roll out an unapplied change on the side."""
    import docker

    from providers.docker.files import materialize

    try:
        image_id = str(api.inspect_image(d.image)["Id"])
    except docker.errors.ImageNotFound:
        image_id = ""
    tree = materialize(d.bundle, ctx)[0] if d.bundle is not None else ""
    want = d.config(image_id or None, tree or None)
    running = [c for c in _replicas(api, d) if c["State"] == "running"]
    if not image_id or any(c["Labels"].get(f"{L}config") != want for c in running):
        raise Failed(f"{d.name} runs other settings than its spec says (a change not applied yet); a scale keeps "
                     f"what runs, so apply the spec first (recon apply --target {d.name}), then scale")
    spec = d.spec.model_copy(update={"replicas": replicas})
    done = converge(api, dataclasses.replace(d, spec=spec), ctx)
    return f"scaled from {len(running)} to {replicas} replicas: {done}"


def masker(d: DockerModel) -> Callable[[str], str]:
    """Hides the values of the Model's secret environment variables in a line of output."""
    return secret_masker((k, d.env[k]) for k, v in d.spec.env.items() if isinstance(v, EnvFrom) and k in d.env)


def _logs(api: Any, d: DockerModel, p: LogsParams, emit: Callable[[Output], None]) -> str:
    mask = masker(d)
    replicas = _replicas(api, d)
    if not replicas:
        raise Failed(f"{d.name} has no replicas on this engine")
    since = int(time.time()) - p.since_seconds if p.since_seconds is not None else None
    kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "tail": p.tail, **({"since": since} if since else {})}
    if not p.follow:
        lines = 0
        for c in replicas:
            text = api.logs(c["Id"], **kwargs).decode(errors="replace")
            for line in text.splitlines():
                emit(Output(_name(c), mask(line)))
                lines += 1
        return f"{lines} lines from {len(replicas)} replicas"
    got: queue.Queue[Output | None] = queue.Queue()

    def follow(c: dict[str, Any]) -> None:
        buf = b""
        try:
            for chunk in api.logs(c["Id"], stream=True, follow=True, **kwargs):
                buf += chunk
                *done, buf = buf.split(b"\n")
                for line in done:
                    got.put(Output(_name(c), mask(line.decode(errors="replace"))))
        finally:
            got.put(None)

    for c in replicas:
        threading.Thread(target=follow, args=(c,), daemon=True).start()
    ended = 0
    while ended < len(replicas):  # until every replica's stream ends, or the user interrupts
        item = got.get()
        if item is None:
            ended += 1
        else:
            emit(item)
    return f"the logs of {len(replicas)} replicas ended"


def _health(api: Any, d: DockerModel, emit: Callable[[Output], None]) -> str:
    replicas = _replicas(api, d)
    bad = 0
    for c in replicas:
        ok, why = _probe(c, d) if c["State"] == "running" else (False, f"not running ({c['State']})")
        bad += not ok
        h = d.spec.health
        check = f"{h.protocol} :{c['Labels'].get(f'{L}port', '?')}" + (h.path if h.protocol == "http" else "")
        emit(Output(_name(c), f"healthy ({check})" if ok else f"UNHEALTHY ({check}): {why}"))
    want = d.spec.replicas
    if bad or len(replicas) < want:
        missing = f"; {want - len(replicas)} of the {want} the spec wants do not exist" if len(replicas) < want else ""
        raise Failed(f"{len(replicas) - bad} of {len(replicas)} replicas healthy{missing}")
    return f"{len(replicas)} of {len(replicas)} replicas healthy"
