"""The Docker provider: a Model is one resource, run as labelled containers (replicas) on one engine.

- read: one list of recon's containers (by label) and one list of images, for all Models at once;
  nothing is inspected. Each container's labels say which Model and replica it is, its port, and
  the digest and the (secret-free) text of the settings it was started with.
- diff: replicas running with the wanted settings and image, against the spec; field by field.
- apply: replica by replica; a replica to change is replaced by a new one that must pass its
  health check before the old one is removed; a new replica that fails is removed and the old one
  keeps serving (rolled back), and the rollout stops there.

Networking: replica i is reached on 127.0.0.1 at port+i; while it is being replaced, its successor
uses port+replicas+i. With host networking (engines without a bridge) the replica listens there
itself, told by the PORT variable; with a bridge network it listens on containerPort, published
on 127.0.0.1 at that port.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, ClassVar

from providers.context import Context, Reading, StepDone
from providers.contract import Action, Change, FieldChange, Instance, Live, Output, Provider, Result, fingerprint
from providers.docker import endpoint
from providers.docker.files import bundle_source, bundle_tree
from providers.docker.model import (
    STACK,
    STACK_NAME,
    DockerModel,
    Failed,
    L,
    Orphan,
    context_hash,
    index_of,
    is_endpoint,
    port_of,
    remove,
)
from providers.docker.replicas import converge, mine
from providers.proxies import proxy_for
from providers.secrets import keyed
from specs.errors import TransportError, reason_of
from specs.model import EnvFrom, ModelSpec
from specs.project import Project, Spec

Item = Instance[DockerModel | Orphan]
ModelState = dict[str, Any]  # a Model's replicas as their labels say (and the image its tag names now)


class _Engine:
    """The Docker provider's session: the API client, and the container list orphans() made for read() to reuse."""

    def __init__(self) -> None:
        self.api: Any = None
        self.listed: list[dict[str, Any]] | None = None

    def close(self) -> None:
        if self.api is not None:
            self.api.close()
            self.api = None


class DockerProvider:
    kinds: ClassVar[tuple[str, ...]] = ("Model",)

    def orphans(self, known: set[str], ctx: Context, prune: bool) -> list[Item]:
        """This stack's containers of Models no spec declares (with --prune: removed), and those no stack was
        recorded on (made by an earlier recon: shown, never removed); another stack's are not ours to see."""
        containers = _list(_client(ctx))
        ctx.session("docker", _Engine).listed = containers  # the read that follows in this run uses this list
        ours = ctx.stack.id if ctx.stack else None
        found: dict[str, bool] = {}  # Model -> legacy (no stack recorded)
        for c in containers:
            name, stack = c["Labels"].get(f"{L}spec", ""), c["Labels"].get(STACK)
            if name and name not in known and (stack is None or ours is None or stack == ours):
                found[name] = found.get(name, True) and stack is None
        return [_orphan(name, prune and not legacy, legacy) for name, legacy in sorted(found.items())]

    def orphan(self, change: Change) -> Item:
        return _orphan(change.spec, prune=True)

    def configured(self) -> bool:
        """An engine is named (DOCKER_HOST) or at its usual socket: worth asking for orphans with --prune."""
        return bool(os.environ.get("DOCKER_HOST")) or Path("/var/run/docker.sock").exists()

    def expand(self, spec: Spec, project: Project) -> list[Item]:
        body = spec.body
        assert isinstance(body, ModelSpec)
        base = Path(spec.doc.file).parent
        env: dict[str, str] = {}
        shown: dict[str, str] = {}
        for key, value in body.env.items():
            if isinstance(value, EnvFrom):
                env[key] = value.valueFrom.resolve(base).get_secret_value()
                shown[key] = f"(secret) {keyed(env[key])}"
            else:
                env[key] = shown[key] = value
        context = body.context_dir(spec.doc).resolve() if body.build is not None else None
        image = body.image or f"recon/{spec.name}:{context_hash(context)}"  # type: ignore[arg-type]
        settings = {
            "image": image, "port": body.port, "env": shown, "command": body.command, "restart": body.restart,
            "network": body.network, **({"containerPort": body.containerPort} if body.network == "bridge" else {}),
            "labels": dict(sorted(spec.labels.items())),
            "cpus": body.resources.cpus, "memory": body.resources.memory,
            "volumes": [f"{(base / v.source).resolve()}:{v.target}:{'ro' if v.readOnly else 'rw'}"
                        for v in body.volumes],
        }
        source = bundle_source(body, project) if body.bundle is not None else None
        if source is not None:
            settings["bundle"] = {"ref": str(source.ref), "tree": source.tree, "mount": source.mount}
        front = endpoint.settings(body)
        desired = DockerModel(spec.address, body, image, context, settings, env, source, project.stack, front)
        digest = hashlib.sha256(json.dumps([settings, body.replicas, body.health.model_dump(), front],
                                           sort_keys=True).encode()).hexdigest()[:16]
        return [Instance(spec.address, "docker", spec.address, "model", desired, digest)]

    def lock_key(self, inst: Item) -> str:
        """Changes to one Model on one engine take turns (an engine on a Unix socket is this machine's)."""
        engine = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if engine.startswith("unix://"):
            engine = f"{socket.gethostname()}{engine[len('unix://'):]}"
        return f"docker/{engine}/{inst.spec}"

    def read(self, instances: Sequence[Item], ctx: Context) -> dict[str, ModelState]:
        api = _client(ctx)
        engine = ctx.session("docker", _Engine)
        listed, engine.listed = engine.listed, None
        containers = _list(api) if listed is None else listed
        owned = {inst.id: _of_stack(inst, [c for c in containers if c["Labels"].get(f"{L}spec") == inst.desired.name],
                                    ctx) for inst in instances}
        # the engine lists a container's image by the reference it was made from while that reference still names
        # the image it runs (else by the image's id): so replicas answer what their tag names now, and the list of
        # images is asked for only when a Model has none that can say (new, or its tag moved)
        ids = {inst.id: _named(owned[inst.id], inst.desired.image) for inst in instances
               if isinstance(inst.desired, DockerModel)}
        if any(v is None for v in ids.values()):
            images = _engine(api.images)
            tags = {tag: img["Id"] for img in images for tag in (img.get("RepoTags") or [])}
            for inst in instances:
                if isinstance(inst.desired, DockerModel) and ids[inst.id] is None:
                    image = inst.desired.image
                    ids[inst.id] = tags.get(image if ":" in image.rsplit("/", 1)[-1] else image + ":latest")
        out: dict[str, ModelState] = {}
        for inst in instances:
            d = inst.desired
            ctx.reporter.report(Reading(inst.target, d.name))
            mine = owned[inst.id]
            source = getattr(d, "bundle", None)
            out[inst.id] = {
                "bundle_tree": bundle_tree(source, ctx) if source is not None and not source.tree else None,
                "image_id": ids.get(inst.id),
                "replicas": sorted(({
                    "name": c["Names"][0].lstrip("/"), "index": index_of(c), "port": port_of(c),
                    "config": c["Labels"].get(f"{L}config", ""),
                    "settings": c["Labels"].get(f"{L}settings", "{}"), "running": c["State"] == "running",
                } for c in mine if not is_endpoint(c)), key=lambda r: (r["index"], r["name"])),
                "endpoint": sorted(({
                    "name": c["Names"][0].lstrip("/"), "config": c["Labels"].get(f"{L}config", ""),
                    "settings": c["Labels"].get(endpoint.SETTINGS, "{}"), "running": c["State"] == "running",
                } for c in mine if is_endpoint(c)), key=lambda e: e["name"]),
            }
        return out

    def diff(self, instances: Sequence[Item], live: Mapping[str, ModelState]) -> list[Change]:
        return [_orphan_diff(inst, live.get(inst.id)) if inst.resource == "orphan" else _diff(inst, live.get(inst.id))
                for inst in instances]

    def apply(self, target: str, steps: Sequence[tuple[Item, Change]], ctx: Context) -> Iterator[Result]:
        """Models roll at the same time, up to --parallelism (each with an API client of its own); the replicas of
        one Model one at a time, each behind its health check. (A wave holds no two Models one depends on.)"""
        if len(steps) <= 1 or ctx.concurrency <= 1:
            for inst, change in steps:
                yield _apply_one(_client(ctx), target, inst, change, ctx)
            return
        local = threading.local()
        made: list[Any] = []

        def one(step: tuple[Item, Change]) -> Result:
            api = getattr(local, "api", None)
            if api is None:
                api = local.api = _connect()
                made.append(api)
            return _apply_one(api, target, step[0], step[1], ctx)

        try:
            with ThreadPoolExecutor(max_workers=min(ctx.concurrency, len(steps))) as pool:
                for done in as_completed([pool.submit(one, s) for s in steps]):
                    yield done.result()
        finally:
            for api in made:
                api.close()

    def actions(self, inst: Item) -> tuple[str, ...]:
        return ("restart", "scale", "logs", "health") if isinstance(inst.desired, DockerModel) else ()

    def act(self, action: str, target: str, instances: Sequence[Item], params: Any, ctx: Context,
            emit: Callable[[Output], None]) -> Result:
        from providers.docker.actions import act

        inst = instances[0]
        assert isinstance(inst.desired, DockerModel)
        started = time.monotonic()
        try:
            note = act(_client(ctx), action, inst.desired, params, ctx, emit)
        except Failed as exc:
            return Result(inst.id, False, str(exc), time.monotonic() - started)
        except Exception as exc:  # the engine's own errors (gone, refused) as the one line they are
            return Result(inst.id, False, _engine_failure(exc), time.monotonic() - started)
        return Result(inst.id, True, seconds=time.monotonic() - started, note=note)


_: type[Provider[DockerModel | Orphan, ModelState]] = DockerProvider  # the contract, typed (mypy checks it)


def _apply_one(api: Any, target: str, inst: Item, change: Change, ctx: Context) -> Result:
    started = time.monotonic()
    try:
        if isinstance(inst.desired, Orphan):
            gone = [c for c in mine(api, inst.desired, ctx.stack) if c["Labels"].get(STACK) is not None]
            for c in gone:
                remove(api, c)
            note = f"{len(gone)} containers of {inst.desired.name} removed (no spec declares it)"
        else:
            note = converge(api, inst.desired, ctx)
    except Failed as exc:
        ctx.reporter.report(StepDone(target, change.id, False))
        return Result(change.id, False, str(exc), time.monotonic() - started)
    except Exception as exc:  # the engine's own errors (refused, gone mid-apply) fail this Model, not the run
        why = _engine_failure(exc)
        ctx.reporter.report(StepDone(target, change.id, False))
        return Result(change.id, False, why, time.monotonic() - started)
    ctx.reporter.report(StepDone(target, change.id, True))
    return Result(change.id, True, seconds=time.monotonic() - started, note=note)


def _named(containers: list[dict[str, Any]], image: str) -> str | None:
    """The id of the image `image` names now, as the Model's containers tell it (None: they cannot)."""
    said = [c for c in containers if c.get("Image") == image and c.get("ImageID")]
    return str(said[0]["ImageID"]) if said else None


def _orphan(name: str, prune: bool, legacy: bool = False) -> Instance:
    return Instance(name, "docker", name, "orphan", Orphan(name, prune, legacy), "prune" if prune else "keep")


def _of_stack(inst: Item, containers: list[dict[str, Any]], ctx: Context) -> list[dict[str, Any]]:
    """The containers of a Model that are this stack's (or of no recorded stack: an earlier recon's); a Model's
    containers that another stack made are refused: two projects cannot both manage one Model on an engine."""
    ours = ctx.stack.id if ctx.stack else None
    if isinstance(inst.desired, Orphan):  # an orphan is either this stack's containers, or those of no stack
        return [c for c in containers if c["Labels"].get(STACK) == (None if inst.desired.legacy else ours)]
    theirs = [c for c in containers if c["Labels"].get(STACK) not in (None, ours)]
    if theirs and ours is not None:
        other = theirs[0]["Labels"].get(STACK_NAME) or theirs[0]["Labels"].get(STACK)
        raise TransportError(f"{inst.desired.name} runs on this engine from another project ({other}): two "
                             "projects cannot both manage one Model on an engine; rename the Model in one of them")
    return [c for c in containers if c["Labels"].get(STACK) in (None, ours) or ours is None]


def _orphan_diff(inst: Instance, state: Live) -> Change:
    o: Orphan = inst.desired
    n = len((state or {}).get("replicas", [])) + len((state or {}).get("endpoint", []))
    action: Action = "delete" if n and o.prune else "noop"
    reason = (f"no spec declares {o.name}: its {n} containers are removed" if action == "delete"
              else f"no spec declares {o.name} ({n} containers, made by a recon that did not record its project): "
              "kept, --prune does not remove them; remove them with docker rm, or declare the Model to take them over"
              if n and o.legacy
              else f"no spec declares {o.name} ({n} containers): kept; plan and apply with --prune remove them"
              if n else f"{o.name} is gone")
    fields = (FieldChange("replicas", n, 0),) if n else ()
    return Change(inst.address, inst.target, inst.spec, inst.resource, action, reason, fields,
                  fingerprint(state), inst.desired_digest)


def _list(api: Any) -> list[dict[str, Any]]:
    """Every container recon made on the engine: one call."""
    return list(_engine(lambda: api.containers(all=True, filters={"label": "recon.dev/managed-by=recon"})))


def _engine(call: Callable[[], Any]) -> Any:
    """One call to the engine; its failure as a TransportError (the SDK raises requests' and its own errors)."""
    try:
        return call()
    except Exception as exc:
        raise TransportError(f"the Docker engine cannot be read: {_why(exc)}", transient=True) from None


def _engine_failure(exc: Exception) -> str:
    """An error of the Docker engine (its SDK's, or the connection's) as the one line a Result says; anything
    else is raised again: it is not the engine's."""
    import docker

    if not isinstance(exc, docker.errors.DockerException | OSError):
        raise exc
    return f"the Docker engine: {_why(exc)}"


def _why(exc: BaseException) -> str:
    """What went wrong, in words: an engine that is not there says where recon looked, and what to do."""
    import requests

    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = reason_of(exc)
        return (f"no Docker engine answers at {where} ({reason or 'connection failed'}); start dockerd, or set "
                "DOCKER_HOST to the engine (e.g. unix:///run/user/1000/docker.sock, tcp://127.0.0.1:2375)")
    return str(exc)


def _client(ctx: Context) -> Any:
    engine = ctx.session("docker", _Engine)
    if engine.api is None:
        engine.api = _connect()
    return engine.api


def _connect() -> Any:
    import docker

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        # a fixed API version (Docker 20.10 and later speak it) saves a round trip to negotiate one
        api = docker.APIClient(base_url=host, version="1.41", timeout=60)
    except docker.errors.DockerException as exc:
        raise TransportError(f"no Docker engine at {os.environ.get('DOCKER_HOST', 'the default socket')}: "
                             f"{exc}; start dockerd or set DOCKER_HOST", transient=True) from None
    # the environment's proxy settings are read once, here, by the docker CLI's rules (providers/proxies.py: an
    # engine on loopback or a Unix socket is never reached through a proxy), not by requests' at every call
    api.trust_env = False
    proxy = proxy_for(api.base_url)  # http(s)://HOST:PORT for a tcp:// engine; http+docker:// for a socket
    if proxy:
        api.proxies = {"http": proxy, "https": proxy}
    return api


def _diff(inst: Instance, state: Live) -> Change:
    d: DockerModel = inst.desired
    state = state or {"image_id": None, "replicas": [], "bundle_tree": None}
    want = d.config(state["image_id"], state.get("bundle_tree"))
    settings = d.effective(state.get("bundle_tree"))
    reps = state["replicas"]
    good = [r for r in reps if r["running"] and r["config"] == want and 0 <= r["index"] < d.spec.replicas]
    good_idx = {r["index"] for r in good}
    fields: list[FieldChange] = []
    running = sum(1 for r in reps if r["running"])
    if running != d.spec.replicas:
        fields.append(FieldChange("replicas", running, d.spec.replicas))
    old = next((r for r in reps if r["config"] != want), None)
    if state["image_id"] is None:
        was = json.loads(old["settings"]).get("image") if old is not None else None
        fields.append(FieldChange("image", was, d.image + (" (to build)" if d.context else " (missing)")))
    if not reps and d.spec.replicas:
        old = {"settings": "{}"}  # a new Model: every setting shows, from nothing
    if old is not None:
        before = json.loads(old["settings"])
        for key in sorted(set(before) - {"image_id"} | set(settings)):
            if key == "env":
                envs = before.get("env", {})
                for k in sorted(set(envs) | set(settings["env"])):
                    if envs.get(k) != settings["env"].get(k):
                        fields.append(FieldChange(f"env.{k}", envs.get(k), settings["env"].get(k)))
            elif before.get(key) != settings.get(key):
                if key == "image" and state["image_id"] is None:
                    continue  # said above, with "(to build)" or "(missing)"
                if key not in before and settings.get(key) in (None, [], {}):
                    continue  # a new Model: unset settings are not news
                fields.append(FieldChange(key, before.get(key), settings.get(key)))
        if before.get("image_id") != state["image_id"] and before.get("image") == d.image:
            fields.append(FieldChange("image_id", str(before.get("image_id", ""))[:19],
                                      str(state["image_id"] or "")[:19]))
    front = _endpoint_fields(d, state.get("endpoint", []))
    fields += front
    stale = [r for r in reps if r not in good]
    action: Action = "noop"
    if fields or stale:
        action = "create" if not reps else "update"
    if action == "noop":
        reason = f"{d.spec.replicas} replicas running with these settings"
    elif not reps:
        reason = f"no replicas yet: {d.spec.replicas} to start"
    else:
        parts = []
        replace_n = sum(1 for r in reps if r["config"] != want and r["index"] < d.spec.replicas)
        if replace_n:
            parts.append(f"{replace_n} to replace one at a time")
        if d.spec.replicas > len(good_idx) + replace_n:
            parts.append(f"{d.spec.replicas - len(good_idx) - replace_n} to start")
        extra = [r for r in reps if r["index"] >= d.spec.replicas or r["index"] < 0]
        if extra:
            parts.append(f"{len(extra)} to remove")
        down = [r for r in reps if not r["running"] and r["index"] < d.spec.replicas]
        if down:
            parts.append(f"{len(down)} not running")
        if front:
            parts.append("the endpoint to remove" if d.endpoint is None else "the endpoint to start"
                         if not state.get("endpoint") else "the endpoint to replace")
        reason = ", ".join(parts) or "replicas differ"
    return Change(inst.address, inst.target, inst.spec, inst.resource, action, reason, tuple(fields),
                  fingerprint({**state, "want": want}), inst.desired_digest)


def _endpoint_fields(d: DockerModel, found: list[dict[str, Any]]) -> list[FieldChange]:
    """What moves of the Model's stable endpoint: its settings field by field, or that it is to start again (one
    running with the wanted settings, and no other, is what it should be)."""
    want = d.endpoint
    digest = endpoint.digest(want) if want is not None else None
    if [e["config"] for e in found if e["running"]] == ([digest] if digest else []) and \
            all(e["running"] for e in found):
        return []
    before = json.loads(found[0]["settings"]) if found else {}
    after = want or {}
    fields = [FieldChange(f"endpoint.{key}", before.get(key), after.get(key))
              for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    said = "stopped" if len(found) == 1 else f"{len(found)} containers, not all running"
    return fields or [FieldChange("endpoint", said, "running")]
