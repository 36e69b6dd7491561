"""Operational actions (`recon do`): what an operator does between commits, typed like a spec.

Each action names the resources it acts on, its parameters (a strict model, so `--replicas three` is
refused with the parameter named, as a spec field would be), whether it is risky (risky actions need
what a risky change of a plan needs: a confirmation, by the plan-like id of its preview in an
environment that wants one) and whether it writes (takes the locks an apply of its targets would).
An action that leaves the live state other than the specs say (a scale) says how, before and after.

The Policy judges an action as a change whose action is the operation's name: a rule
`when: {actions: [scale], environments: [prod]}` matches `recon do scale` there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from specs.errors import UsageError

_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NoParams(Params):
    pass


class ScaleParams(Params):
    replicas: int = Field(ge=0, le=100, description="How many replicas run from now on (0 to 100).")


class LogsParams(Params):
    since: str | None = Field(default=None, description="Only lines newer than this, e.g. 30s, 10m, 2h, 1d.")
    tail: int = Field(default=100, ge=0, le=100_000, description="At most this many lines per replica or host.")
    follow: bool = Field(default=False, description="Keep printing new lines until interrupted (a terminal's).")

    @field_validator("since")
    @classmethod
    def _since(cls, value: str | None) -> str | None:
        if value is not None and not _DURATION.match(value):
            raise ValueError(f"{value!r} is not a duration such as 30s, 10m, 2h or 1d")
        return value

    @property
    def since_seconds(self) -> int | None:
        if self.since is None:
            return None
        m = _DURATION.match(self.since)
        assert m is not None
        return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _scale_diverges(spec: Any, params: Params) -> str:
    """How a scale leaves a Model other than its spec says ("" when it does not)."""
    assert isinstance(params, ScaleParams)
    k8s = getattr(spec, "kubernetes", None)
    if getattr(spec, "runtime", "") == "kubernetes" and k8s is not None and not k8s.manageReplicas:
        return ""  # replicas are left to operators and autoscalers: nothing to drift from
    if spec.replicas == params.replicas:
        return ""
    return (f"the spec says replicas: {spec.replicas}; after this, {params.replicas} run, which the next plan and "
            f"drift check show as drift (replicas {params.replicas} → {spec.replicas}) until the spec says "
            f"replicas: {params.replicas}" + (" (or kubernetes.manageReplicas: false leaves replicas unmanaged)"
                                              if getattr(spec, "runtime", "") == "kubernetes" else ""))


def _scale_refused(specs: list[tuple[Any, Any]], name: str, params: Params) -> str:
    """Why a scale cannot be (""): on Docker, more replicas take more ports, which must not reach another Model's."""
    from specs.model import ModelSpec

    assert isinstance(params, ScaleParams)
    scaled = [(body.model_copy(update={"replicas": params.replicas}) if (doc.data.get("metadata") or {}).get(
        "name") == name else body, doc) for body, doc in specs if isinstance(body, ModelSpec)]
    said = [d.summary for d in ModelSpec.project_problems(scaled) if f"Model {name} " in d.summary
            or f"Model {name}'s" in d.summary]
    return f"{said[0]}; scale to fewer, or move a port in the specs first" if said else ""


@dataclass(frozen=True)
class ActionDef:
    name: str
    summary: str
    params: type[Params]
    on: tuple[str, ...]  # what it acts on: "model" (a Model), "service" (a HostState service)
    risky: bool  # needs a confirmation (yes, or --confirm ID where the environment wants one)
    writes: bool  # changes live state: holds the locks of its targets, as an apply does
    diverges: Callable[[Any, Params], str] | None = None  # (spec body, params) -> how live will differ from it
    refused: Callable[[list[tuple[Any, Any]], str, Params], str] | None = None  # (the kind's (body, document)s,
    # the spec's name, params) -> why it cannot be done ("": it can)

    def parse(self, given: Mapping[str, Any]) -> Params:
        """The parameters, checked; UsageError naming the parameter, what was given and what would do."""
        unknown = sorted(k for k in given if k not in self.params.model_fields)
        if unknown:
            takes = ", ".join(f"--{k}" for k in self.params.model_fields) or "no parameters"
            raise UsageError(f"{self.name} takes {takes}, not --{unknown[0]}")
        values = {k: int(v) if isinstance(v, str) and re.fullmatch(r"-?\d+", v)
                  and self.params.model_fields[k].annotation is int else v for k, v in given.items()}
        try:
            return self.params.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "?"
            field = self.params.model_fields.get(name)
            hint = f". --{name}: {field.description[0].lower()}{field.description[1:]}" if (
                field is not None and field.description) else ""
            what = "is required" if err["type"] == "missing" else f"{given.get(name)!r}: {err['msg'].lower()}"
            raise UsageError(f"{self.name} --{name} {what}{hint}") from None


ACTIONS: dict[str, ActionDef] = {a.name: a for a in (
    ActionDef("restart", "Restart a Model's replicas one at a time behind their health check (Kubernetes: a rollout "
              "restart, waited for), or a service on its hosts one host at a time.", NoParams, ("model", "service"),
              risky=True, writes=True),
    ActionDef("scale", "Run this many replicas of a Model (new ones pass their health check first).", ScaleParams,
              ("model",), risky=True, writes=True, diverges=_scale_diverges, refused=_scale_refused),
    ActionDef("logs", "Print the recent output of a Model's replicas or a service's log on its hosts; secrets of "
              "the Model's environment are masked.", LogsParams, ("model", "service"), risky=False, writes=False),
    ActionDef("health", "Check each replica of a Model now, with its health check.", NoParams, ("model",),
              risky=False, writes=False),
)}
NAMES: tuple[str, ...] = tuple(ACTIONS)


def action(name: str) -> ActionDef:
    found = ACTIONS.get(name)
    if found is None:
        import difflib

        close = difflib.get_close_matches(name, NAMES, n=1)
        raise UsageError(f"no action {name!r}" + (f"; did you mean {close[0]}?" if close else ".") +
                         f" The actions are {', '.join(NAMES)} (`recon do --list` shows their parameters).")
    return found
