"""Model: an ML model service run as replicas, on Docker or Kubernetes, gated by health checks."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from specs.base import KindSpec, Problem, StrictModel
from specs.errors import Diagnostic
from specs.loader import Document, Loc
from specs.secrets import SecretRef

_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEMORY = re.compile(r"^[0-9]+[kmg]?$")


def _ports(lo: int, hi: int) -> str:
    return f"ports {lo}-{hi}" if hi > lo else f"port {lo}"


class Build(StrictModel):
    context: str = Field(description="Directory to build the image from, relative to this spec file.")
    dockerfile: str = Field(default="Dockerfile", description="Dockerfile inside the context.")


class EnvFrom(StrictModel):
    valueFrom: SecretRef = Field(description="A secret: `{env: NAME}` or `{file: path}`; plans show a keyed hash.")


class Health(StrictModel):
    protocol: Literal["http", "tcp"] = Field(
        default="http", description="http: GET `path` must answer `status`; tcp: the port must accept a connection "
        "(for gRPC services)."
    )
    path: str = Field(default="/", description="HTTP path checked on each replica, e.g. /health.")
    status: int = Field(default=200, ge=100, le=599, description="The status a healthy replica answers.")
    timeout: float = Field(default=2.0, gt=0, description="Seconds one check may take.")
    interval: float = Field(default=0.25, gt=0, description="Seconds between checks while waiting.")
    startTimeout: float = Field(default=30.0, gt=0, description="Seconds a new replica has to become healthy (on "
                                "Docker, one the engine restarted 3 times while it starts fails sooner).")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"health path {value!r} must start with '/'")
        return value


class Resources(StrictModel):
    cpus: float | None = Field(default=None, gt=0, description="CPUs a replica may use, e.g. 0.5.")
    memory: str | None = Field(default=None, description="Memory limit, e.g. 256m or 1g.")
    gpus: int | None = Field(default=None, ge=1, le=16, description="On kubernetes: GPUs per replica "
                             "(requested as nvidia.com/gpu, or gpuResource).")
    gpuResource: str = Field(default="nvidia.com/gpu", description="The extended resource name of the GPUs.")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError(f"memory {value!r} is not like 256m or 1g")
        return value


class Volume(StrictModel):
    source: str = Field(description="A host path (absolute, or relative to this spec file).")
    target: str = Field(description="Where it appears in the container.")
    readOnly: bool = Field(default=True, description="Mounted read-only (the default).")


class BundleMount(StrictModel):
    """Model files from a Bundle, materialized on the engine's machine and mounted read-only."""

    spec: str | None = Field(default=None, description="A Bundle spec of this project, by name (pushed first).")
    ref: str | None = Field(default=None, description="Or a bundle's OCI reference, host:port/repository:tag.")
    mountPath: str = Field(default="/model", description="Where the files appear in each replica (MODEL_DIR).")

    @model_validator(mode="after")
    def _one(self) -> BundleMount:
        if (self.spec is None) == (self.ref is None):
            raise ValueError("a bundle needs exactly one of 'spec' (a Bundle of this project) or 'ref'")
        if not self.mountPath.startswith("/"):
            raise ValueError(f"mountPath {self.mountPath!r} must be absolute")
        return self


class Endpoint(StrictModel):
    """On docker: one address in front of the replicas that never moves (an HAProxy recon runs and reloads)."""

    port: int = Field(ge=1024, le=65000, description="The port clients use; it stays through rollouts.")
    address: str = Field(default="127.0.0.1", description="The address it listens on: 127.0.0.1 for this machine's "
                         "clients, 0.0.0.0 for every interface.")
    image: str = Field(default="haproxy:2.6", description="An HAProxy 2.x image present on the engine (recon pulls "
                       "nothing): `docker pull haproxy:2.6` there, or your own build of it.")
    drainTimeout: float = Field(default=30, gt=0, le=600, description="Seconds a replica taken out of the endpoint "
                                "may finish the requests it has before it is removed.")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError(f"address {value!r} is not an IPv4 address like 127.0.0.1 or 0.0.0.0") from None
        return value


def env_kubeconfig() -> str:
    """The kubeconfig KUBECONFIG names ("" without one): its first file, the one recon's client reads."""
    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]


class Kubernetes(StrictModel):
    """Where and how a Model runs on a Kubernetes cluster (runtime: kubernetes)."""

    namespace: str = Field(default="default", description="The namespace of the Model's objects (it must exist).")
    context: str | None = Field(default=None, description="A context of the kubeconfig; its current one if unset.")
    kubeconfig: str | None = Field(default=None, description="A kubeconfig file, relative to this spec file; else "
                                   "$KUBECONFIG, ~/.kube/config, or the service account inside a cluster.")
    serviceType: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="The type of the Service in front of the replicas.")
    manageReplicas: bool = Field(default=True, description="false: recon never sets replicas (an autoscaler or "
                                 "kubectl scale owns them); a new Deployment starts with 1.")
    forceConflicts: bool = Field(default=False, description="Take fields another manager owns (as "
                                 "--force-conflicts does for every Model).")
    rollback: bool = Field(default=False, description="When a rollout does not finish in time, restore the "
                           "previous pod template.")
    rolloutTimeout: float = Field(default=300, gt=0, le=3600, description="Seconds a rollout may take.")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", value):
            raise ValueError(f"namespace {value!r} is not a DNS label (lowercase letters, digits and '-')")
        return value


class ModelSpec(KindSpec):
    kind_name: ClassVar[str] = "Model"

    runtime: Literal["docker", "kubernetes"] = Field(description="Where replicas run: docker or kubernetes.")
    kubernetes: Kubernetes | None = Field(default=None, description="With runtime: kubernetes: namespace, "
                                          "context, ownership and rollout settings.")
    image: str | None = Field(default=None, description="An image reference present on the engine.")
    build: Build | None = Field(default=None, description="Build the image from a context; rebuilt when the "
                                "content of the context changes (the image is labelled with its hash).")
    replicas: int = Field(default=1, ge=0, le=100, description="How many replicas run.")
    port: int = Field(ge=1, le=65535, description="docker: replica i is reached on 127.0.0.1 at port+i (during "
                      "a rolling update a new replica takes port+replicas+i); kubernetes: the Service's port.")
    network: Literal["host", "bridge"] = Field(
        default="host", description="host: the replica listens on its port itself (the PORT variable says which); "
        "bridge: it listens on containerPort inside the container, published on 127.0.0.1 at its port."
    )
    containerPort: int = Field(default=8080, ge=1, le=65535, description="With network: bridge, the port the "
                               "service listens on inside the container (the PORT variable says it too).")
    env: dict[str, str | EnvFrom] = Field(default_factory=dict, description="Environment; secrets as valueFrom.")
    command: list[str] | None = Field(default=None, description="Command instead of the image's.")
    volumes: list[Volume] = Field(default_factory=list, description="Host paths mounted into each replica.")
    bundle: BundleMount | None = Field(
        default=None,
        description="Model files from a Bundle, mounted read-only; a new bundle version rolls the replicas.",
    )
    endpoint: Endpoint | None = Field(
        default=None, description="docker: a stable address in front of the replicas (127.0.0.1:port), with "
        "requests drained from a replica before it goes; kubernetes has its Service for that.")
    resources: Resources = Field(default_factory=Resources, description="Limits per replica.")
    health: Health = Field(default_factory=Health, description="The check a replica must pass to serve.")
    drainSeconds: float = Field(
        default=0.5, ge=0, le=300,
        description="During a rolling update, how long the old replica keeps serving after its replacement is "
        "healthy, so that clients and proxies that find replicas by label move over before it goes.",
    )
    restart: Literal["no", "always", "unless-stopped", "on-failure"] = Field(
        default="unless-stopped", description="Docker's restart policy for replicas."
    )

    @model_validator(mode="after")
    def _image_or_build(self) -> ModelSpec:
        if (self.image is None) == (self.build is None):
            raise ValueError("a Model needs exactly one of 'image' or 'build'")
        if self.runtime == "kubernetes" and self.endpoint is not None:
            raise ValueError("endpoint: only for runtime: docker; on kubernetes the Model's Service is its stable "
                             "address (kubernetes.serviceType), so leave endpoint out")
        if self.runtime == "kubernetes":
            docker_only = [name for name, unset in (("build", self.build is None), ("bundle", self.bundle is None),
                                                    ("volumes", not self.volumes), ("network", self.network == "host"))
                           if not unset]
            if docker_only:
                raise ValueError(f"{', '.join(docker_only)}: only for runtime: docker; on kubernetes give an 'image' "
                                 "the cluster can pull")
        elif self.kubernetes is not None:
            raise ValueError("'kubernetes' settings need runtime: kubernetes")
        elif not 1024 <= self.port <= 65000:
            raise ValueError(f"port {self.port}: on docker the replicas listen on this machine's ports port+i, "
                             "which must be between 1024 and 65000")
        if self.runtime == "docker" and self.resources.gpus is not None:
            raise ValueError("resources.gpus: only for runtime: kubernetes")
        return self

    @property
    def k8s(self) -> Kubernetes:
        return self.kubernetes or Kubernetes()

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str | EnvFrom]) -> dict[str, str | EnvFrom]:
        for key in value:
            if not _ENV.match(key) or key == "PORT":
                raise ValueError(f"environment variable name {key!r} is not allowed (PORT is recon's own)")
        return value

    def references(self) -> list[tuple[Loc, str]]:
        if self.bundle is not None and self.bundle.spec is not None:
            return [(("bundle", "spec"), f"Bundle/{self.bundle.spec}")]
        return []

    def kubeconfig_path(self, doc: Document) -> Path | None:
        """The kubeconfig the spec names, as the client reads it (relative to the spec file), or None."""
        config = self.k8s.kubeconfig
        return None if config is None else Path(doc.file).parent / config

    def problems(self, doc: Document) -> list[Problem]:
        out = []
        config = self.kubeconfig_path(doc)
        if config is not None and not config.is_file():
            out.append(Problem(("kubernetes", "kubeconfig"), f"no kubeconfig at {config}",
                               "point it at a kubeconfig file, relative to this spec file, or leave it out"))
        if self.build is not None and not (self.context_dir(doc) / self.build.dockerfile).is_file():
            out.append(Problem(("build", "context"), f"no {self.build.dockerfile} in {self.context_dir(doc)}",
                               "point 'context' at the directory with the Dockerfile, relative to this spec file"))
        return out

    @classmethod
    def project_problems(cls, specs: Sequence[tuple[KindSpec, Document]]) -> list[Diagnostic]:
        """Models on Docker must not share ports: replica i listens on port+i, and its successor during a rolling
        update on port+replicas+i, so each Model takes [port, port + 2 x replicas). Two that overlap would answer
        each other's health checks (a successor that cannot bind its port looked healthy, and the old replica was
        removed)."""
        taken: list[tuple[int, int, str, Loc, Document]] = []  # a range of ports, whose, where it is set
        for body, doc in specs:
            if isinstance(body, ModelSpec) and body.runtime == "docker":
                name = str((doc.data.get("metadata") or {}).get("name", "?")) if isinstance(doc.data, dict) else "?"
                if body.replicas:
                    taken.append((body.port, body.port + 2 * body.replicas - 1, f"Model {name}", ("spec", "port"),
                                  doc))
                if body.endpoint is not None:
                    taken.append((body.endpoint.port, body.endpoint.port, f"Model {name}'s endpoint",
                                  ("spec", "endpoint", "port"), doc))
        taken.sort(key=lambda t: t[0])
        out: list[Diagnostic] = []
        widest: tuple[int, int, str] | None = None  # of those before, the one reaching furthest
        for lo2, hi2, name2, loc, doc2 in taken:
            if widest is not None and lo2 <= widest[1]:
                lo, hi, name = widest
                verb = "overlaps" if hi2 == lo2 else "overlap"
                out.append(doc2.diagnostic(
                    loc, f"{name2} takes {_ports(lo2, hi2)}, which {verb} {name}'s {_ports(lo, hi)} (replica i on "
                    "port+i, its successor during a rollout on port+replicas+i; an endpoint on its own port)",
                    f"give it a port of {hi + 1} or above, or move {name} (each Model takes 2 x replicas ports)"))
            if widest is None or hi2 > widest[1]:
                widest = (lo2, hi2, name2)
        return out

    def preflight(self, doc: Document) -> list[Problem]:
        out = []
        for key, value in self.env.items():
            if isinstance(value, EnvFrom):
                why = value.valueFrom.problem(Path(doc.file).parent)
                if why:
                    out.append(Problem(("env", key), f"the secret cannot be read: {why}",
                                       "set it, or point valueFrom at where the secret is"))
        return out

    def inputs(self, doc: Document) -> list[tuple[Loc, Path]]:
        return [(("build", "context"), self.context_dir(doc))] if self.build is not None else []

    def trust_files(self, doc: Document) -> list[tuple[Loc, Path, str]]:
        if self.runtime != "kubernetes":
            return []
        decides = "which commands the client runs (exec plugins) and where it sends credentials"
        config = self.kubeconfig_path(doc)
        if config is not None:
            return [(("kubernetes", "kubeconfig"), config, decides)]
        named = env_kubeconfig()
        return [(("runtime",), Path(os.path.abspath(named)), f"{decides} (KUBECONFIG names it)")] if named else []

    def context_dir(self, doc: Document) -> Path:
        assert self.build is not None
        return Path(doc.file).parent / self.build.context
