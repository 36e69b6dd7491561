"""A Model's desired state as the Docker provider holds it, and the labels it puts on containers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.oras.registry import Credentials
from specs.model import ModelSpec
from specs.ref import Reference
from specs.stack import Stack

L = "recon.dev/"
MANAGED = {f"{L}managed-by": "recon"}
STACK = f"{L}stack"  # the id of the stack whose specs made the container (specs/stack.py)
STACK_NAME = f"{L}stack-name"  # its readable name
ROLE = f"{L}role"  # "endpoint" on a Model's endpoint (providers/docker/endpoint.py); replicas carry none


def is_endpoint(c: dict[str, Any]) -> bool:
    return bool(c["Labels"].get(ROLE) == "endpoint")


def port_of(c: dict[str, Any]) -> int:
    """The port a replica container listens on, as its labels say."""
    return int(c["Labels"].get(f"{L}port", "0"))


def index_of(c: dict[str, Any]) -> int:
    """Which replica a container is (-1: none, e.g. a Model's endpoint)."""
    return int(c["Labels"].get(f"{L}replica", "-1"))


def remove(api: Any, c: dict[str, Any]) -> None:
    """A container gone, at once (already gone is fine)."""
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        api.remove_container(c["Id"], force=True)


@dataclass(frozen=True)
class BundleSource:
    ref: Reference
    tree: str  # the files' tree digest: known from the Bundle spec's files, or "" until read from the registry
    mount: str
    credentials: Credentials | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DockerModel:
    name: str  # Model/<name>
    spec: ModelSpec
    image: str  # the reference to run (a built image: recon/<model>:<context hash>)
    context: Path | None  # build context, when built
    settings: dict[str, Any]  # what the plan shows: env secrets as keyed hashes
    env: dict[str, str] = field(repr=False, default_factory=dict)  # with secret values: never shown
    bundle: BundleSource | None = None
    stack: Stack | None = None  # what its containers are labelled with (never compared: not a setting)
    endpoint: dict[str, Any] | None = None  # its stable endpoint's settings (endpoint.settings); not the replicas'

    def effective(self, bundle_tree: str | None) -> dict[str, Any]:
        """The settings, with the bundle's tree as read from its registry when the spec did not know it."""
        if self.bundle is None or self.bundle.tree:
            return self.settings
        return {**self.settings, "bundle": {**self.settings["bundle"], "tree": bundle_tree}}

    def config(self, image_id: str | None, bundle_tree: str | None = None) -> str:
        text = json.dumps({**self.effective(bundle_tree), "image_id": image_id}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def context_hash(path: Path) -> str:
    """The content of a build context as Docker gets it: without what .dockerignore leaves out, nor recon's
    own state (.recon/) or version control, which change without changing the image. Files are hashed
    through the bundles' digest index, so a plan does not read an unchanged context again."""
    from providers.oras.bundle import tree_digest
    from providers.oras.scan import entries

    ignore: list[str] = []
    if (path / ".dockerignore").is_file():
        for line in (path / ".dockerignore").read_text().splitlines():
            glob = line.strip().rstrip("/")
            if glob and not glob.startswith(("#", "!")):
                ignore += [glob, glob + "/"]  # the name itself, and everything below it
    return tree_digest(entries(path, exclude=ignore, what="build context")).partition(":")[2][:12]


@dataclass(frozen=True)
class Orphan:
    """Containers recon made for a Model no spec declares any more."""

    name: str  # Model/<name>
    prune: bool  # remove them (only with --prune), else show and keep
    legacy: bool = False  # made by a recon that did not label its stack: whose they are is unknown, so never pruned




class OnePerKey:
    """A lock per key (an image to build, a bundle to materialize), for Models rolling at the same time."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


class Failed(Exception):
    """A replica or its prerequisites (image, bundle files) could not be made so; the message says why."""
