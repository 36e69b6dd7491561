"""`recon init model NAME`: a ready model project; `recon check`: what is missing or wrong in one."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from specs.errors import Diagnostic, ExitCode, UsageError

if TYPE_CHECKING:
    from specs.project import Spec

TEMPLATES = Path(__file__).resolve().parent / "templates"
init_app = typer.Typer(help="Start a project from a template.", no_args_is_help=True, rich_markup_mode=None)


@init_app.command("model")
def init_model(
    name: Annotated[str, typer.Argument(help="The model's name: lower-case letters, digits and '-'.")],
    directory: Annotated[Path | None, typer.Option("--dir", help="Where to create it (default: ./NAME).")] = None,
    model_port: Annotated[int, typer.Option("--model-port", help="Port of the model-service (gRPC).")] = 19000,
    api_port: Annotated[int, typer.Option("--api-port", help="Port of the api-service (REST).")] = 19100,
) -> int:
    """A model project: a gRPC model-service with a sample model, a REST api-service in front of it, the
    .proto contract between them, Dockerfiles, tests, and recon specs (two Models and a Bundle)."""
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,40}[a-z0-9]", name):
        raise UsageError(f"{name!r} is not a usable model name: use lower-case letters, digits and '-' "
                         "(it names images, containers and specs), e.g. churn-model")
    target = directory or Path(name)
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} exists and is not empty; choose another --dir")
    values = {"name": name, "model_port": str(model_port), "api_port": str(api_port),
              "env_name": name.upper().replace("-", "_")}
    source = TEMPLATES / "model"
    written = 0
    for path in sorted(source.rglob("*")):
        if "__pycache__" in path.parts or "_generated" in path.parts:
            continue
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        dest.write_text(text)
        shutil.copymode(path, dest)
        written += 1
    print(f"Created {target}/ ({written} files): model-interface/, model-service/, api-service/, specs/.")
    print(f"Next: cd {target}; recon check; python -m pytest model-service api-service; recon plan specs")
    return ExitCode.OK


REQUIRED = (
    ("model-interface", "the contract folder: a .proto with `rpc Predict`", "recon init model NAME makes one"),
    ("model-service/server.py", "the gRPC server of the model", "add a server that serves Predict on $PORT"),
    ("model-service/Dockerfile", "the model-service image", "add a Dockerfile (recon builds it)"),
    ("model-service/requirements.txt", "the model-service's Python packages", "list grpcio, protobuf, …"),
    ("api-service/app.py", "the REST API", "add the FastAPI app that calls Predict"),
    ("api-service/Dockerfile", "the api-service image", "add a Dockerfile (recon builds it)"),
    ("api-service/requirements.txt", "the api-service's Python packages", "list fastapi, uvicorn, grpcio, …"),
    ("specs", "the recon specs", "add specs/ with the Models (and the Bundle of the model files)"),
)


def check(
    directory: Annotated[Path, typer.Argument(help="The model project (default: here).")] = Path("."),
) -> int:
    """Tell what is missing or wrong in a model project made by `recon init model`."""
    problems: list[str] = []
    for rel, what, fix in REQUIRED:
        if not (directory / rel).exists():
            problems.append(f"{directory / rel}: missing ({what})\n    fix: {fix}")
    protos = sorted((directory / "model-interface").glob("*.proto"))
    if (directory / "model-interface").is_dir() and not protos:
        problems.append(f"{directory / 'model-interface'}: no .proto file\n    fix: put the service contract there")
    for proto in protos:
        text = proto.read_text()
        if not re.search(r"\brpc\s+Predict\s*\(", text):
            problems.append(f"{proto}: no `rpc Predict(...)`\n    fix: the api-service calls Predict; declare it")
        problems += _compile(proto)
    if (directory / "specs").is_dir():
        problems += _specs(directory / "specs")
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {directory}.")
        return ExitCode.ERROR
    print(f"OK: {directory} has its contract, both services, their images and valid specs.")
    return ExitCode.OK


def _compile(proto: Path) -> list[str]:
    try:
        from grpc_tools import protoc
    except ImportError:  # a tool missing here, not a problem of the project: said, not counted
        reqs = proto.parent.parent / "model-service" / "requirements.txt"
        print(f"note: {proto} was not compiled: grpcio-tools is not installed here (pip install grpcio-tools, "
              f"or pip install -r {reqs})")
        return []
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        code = protoc.main(["protoc", f"-I{proto.parent}", f"--python_out={out}", str(proto)])
    if code == 0:
        return []
    return [f"{proto}: protoc cannot compile it (see the lines above)\n    fix: correct the .proto"]


def _specs(specs: Path) -> list[str]:
    from specs.errors import SpecError
    from specs.project import load_project

    try:
        project = load_project([specs], preflight=False)
    except SpecError as exc:
        return [d.render() for d in exc.diagnostics]
    kinds = {s.kind for s in project.specs.values()}
    out = [d.render() for s in project.specs.values() if s.labels.get("role") == "api-service"
           for d in _guard(s)]
    if "Model" not in kinds:
        out.append(f"{specs}: no Model spec\n    fix: declare the model-service and api-service as Models")
    if "Bundle" not in kinds:
        out.append(f"{specs}: no Bundle of the model files\n    fix: publish model-service/model as a Bundle")
    return out


_RATE = re.compile(r"^\s*\d+\s*/\s*(second|minute|hour)\s*$")
_SCOPES = {"predict", "metrics"}


def _guard(spec: Spec) -> list[Diagnostic]:
    """The api-service's guard settings (api-service/guard.py reads them from its environment): keys only from
    secrets, known scopes, rates and limits it can read."""
    from specs.model import EnvFrom, ModelSpec

    body = spec.body
    if not isinstance(body, ModelSpec):
        return []
    env, doc = body.env, spec.doc
    out: list[Diagnostic] = []
    keys = [k for k in env if k.startswith("API_KEY_") and not k.endswith("_SCOPES")]
    if not keys:
        out.append(doc.diagnostic(("spec", "env"), f"{spec.address} has no API key: the api-service refuses every "
                                  "request but /health", "add API_KEY_CLIENT: {valueFrom: {env: SOME_SECRET}}"))
    for k in keys:
        if not isinstance(env[k], EnvFrom):
            out.append(doc.diagnostic(("spec", "env", k), f"{k} is written in the spec: everyone who can read the "
                                      "repository has the key", f"{k}: {{valueFrom: {{env: A_SECRET}}}} (or file:)"))
    for k, value in env.items():
        if k.startswith("API_KEY_") and k.endswith("_SCOPES"):
            scopes = {s.strip() for s in str(value).split(",") if s.strip()}
            if k[:-len("_SCOPES")] not in keys:
                out.append(doc.diagnostic(("spec", "env", k), f"{k} gives scopes to no key",
                                          f"declare {k[:-len('_SCOPES')]}, or remove this line"))
            elif not scopes or scopes - _SCOPES:
                out.append(doc.diagnostic(("spec", "env", k), f"{k}: {', '.join(sorted(scopes - _SCOPES)) or 'no'} "
                                          "scope", f"use {', '.join(sorted(_SCOPES))}, comma-separated"))
    for k in ("RATE_LIMIT_PER_KEY", "RATE_LIMIT_PER_IP"):
        rate = env.get(k)
        if rate is not None and not (isinstance(rate, str) and _RATE.match(rate)):
            out.append(doc.diagnostic(("spec", "env", k), f"{k} is not a rate", "write it like 600/minute "
                                      "(per second, minute or hour)"))
    for k in ("MAX_REQUEST_BYTES", "REQUEST_TIMEOUT_SECONDS"):
        limit = env.get(k)
        if limit is not None and not (isinstance(limit, str) and re.fullmatch(r"\d+(\.\d+)?", limit)
                                      and float(limit) > 0):
            out.append(doc.diagnostic(("spec", "env", k), f"{k} is not a positive number", f"e.g. {k}: \"5\""))
    return out
