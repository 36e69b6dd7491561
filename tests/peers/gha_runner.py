"""A stand-in for GitHub's Actions runner, to run `action.yml` and the example workflows as GitHub runs them:
workflow jobs step by step (and a whole run: jobs in `needs` order, matrix combinations, job outputs),
composite actions with their inputs (defaults, and the empty string GitHub hands over for an unset input),
`${{ }}` expressions, `if:`, `env`, each `run:` with its shell (`bash --noprofile --norc -eo pipefail FILE`), and
the GITHUB_OUTPUT / GITHUB_ENV / GITHUB_PATH / GITHUB_STEP_SUMMARY files.
Written from GitHub's documentation, sharing no code with recon.

The actions a workflow uses are stood in for: `actions/checkout` is a real `git clone` of a local remote (with
its fetch-depth), `actions/setup-python` a fresh virtual environment that sees the test environment's
packages (so the action's own `pip install` really runs, offline, from the wheelhouse scripts/setup keeps),
`actions/upload-artifact` a copy into a directory (a name used twice in a run fails, as in v4),
`actions/download-artifact` a copy back (by name, or by pattern with merge-multiple), and
`your-org/recon@v1` the composite action at the repository's root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------- expressions

_TOKEN = re.compile(r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|<=|>=|&&|\|\||[!<>().,\[\]*])"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"bad expression at {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def truthy(v: Any) -> bool:
    return v not in (None, False, 0, "") and v != 0.0


def text(v: Any) -> str:
    """A value as GitHub interpolates it into a string."""
    if v is None:
        return ""
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class _Parser:
    def __init__(self, expr: str, ctx: dict[str, Any]) -> None:
        self.toks = _tokens(expr)
        self.i = 0
        self.ctx = ctx

    def peek(self) -> str:
        return self.toks[self.i][1] if self.i < len(self.toks) else ""

    def take(self, want: str | None = None) -> tuple[str, str]:
        tok = self.toks[self.i]
        if want is not None and tok[1] != want:
            raise ValueError(f"expected {want!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        v = self.or_()
        if self.i != len(self.toks):
            raise ValueError(f"unexpected {self.peek()!r}")
        return v

    def or_(self) -> Any:
        v = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            v = v if truthy(v) else right
        return v

    def and_(self) -> Any:
        v = self.cmp()
        while self.peek() == "&&":
            self.take()
            right = self.cmp()
            v = right if truthy(v) else v
        return v

    def cmp(self) -> Any:
        v = self.unary()
        if self.peek() in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            right = self.unary()
            a, b = (v.lower(), right.lower()) if isinstance(v, str) and isinstance(right, str) else (v, right)
            return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        return v

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, tok = self.take()
        if tok == "(":
            inner = self.or_()
            self.take(")")
            return inner
        if kind == "num":
            return float(tok) if "." in tok else int(tok)
        if kind == "str":
            return tok[1:-1].replace("''", "'")
        if kind != "name":
            raise ValueError(f"unexpected {tok!r}")
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "null":
            return None
        if self.peek() == "(":
            self.take("(")
            args = []
            while self.peek() != ")":
                args.append(self.or_())
                if self.peek() == ",":
                    self.take(",")
            self.take(")")
            return _call(tok, args, self.ctx)
        v: Any = self.ctx.get(tok)
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                key = self.take()[1]
            else:
                key = self.or_()
                self.take("]")
            v = v.get(key) if isinstance(v, dict) else None
        return v


def _call(name: str, args: list[Any], ctx: dict[str, Any]) -> Any:
    status = ctx.get("__status", "success")
    match name.lower():
        case "format":
            return re.sub(r"\{(\d+)\}", lambda m: text(args[1 + int(m[1])]), text(args[0]))
        case "always":
            return True
        case "success":
            return status == "success"
        case "failure":
            return status == "failure"
        case "cancelled":
            return False
        case "contains":
            hay, needle = args
            return needle in hay if isinstance(hay, list) else text(needle).lower() in text(hay).lower()
        case "startswith":
            return text(args[0]).lower().startswith(text(args[1]).lower())
        case "endswith":
            return text(args[0]).lower().endswith(text(args[1]).lower())
        case "tojson":
            return json.dumps(args[0], indent=2)
        case "fromjson":
            return json.loads(text(args[0]))
        case "join":
            return (text(args[1]) if len(args) > 1 else ",").join(text(a) for a in args[0])
    raise ValueError(f"unknown function {name}")


def evaluate(expr: str, ctx: dict[str, Any]) -> Any:
    return _Parser(expr, ctx).parse()


def interpolate(value: Any, ctx: dict[str, Any]) -> Any:
    """`${{ }}` in a string (a whole-string expression keeps its type, as GitHub's does for `with:` values)."""
    if not isinstance(value, str):
        return value
    whole = re.fullmatch(r"\s*\$\{\{((?:(?!\}\}).)*)\}\}\s*", value, re.S)
    if whole:
        return evaluate(whole[1], ctx)
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: text(evaluate(m[1], ctx)), value, flags=re.S)


def condition(expr: Any, ctx: dict[str, Any]) -> bool:
    """A step's `if:`: an expression with or without `${{ }}`; success() unless it asks for a status itself."""
    if expr is None:
        expr = "success()"
    if isinstance(expr, bool):
        return expr
    raw = str(expr).strip()
    m = re.fullmatch(r"\$\{\{(.*)\}\}", raw, re.S)
    raw = m[1] if m else raw
    if not re.search(r"\b(always|success|failure|cancelled)\s*\(", raw):
        raw = f"success() && ({raw})"
    return truthy(evaluate(raw, ctx))


# ---------------------------------------------------------------------------------------------- the runner

@dataclass
class StepResult:
    id: str
    outcome: str  # success | failure | skipped
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""


@dataclass
class JobResult:
    ok: bool
    steps: list[StepResult]
    summary: str
    artifacts: Path  # the run's artifacts, a directory per name
    skipped: bool = False  # the job's `if:` was false
    outputs: dict[str, str] = field(default_factory=dict)  # the job's `outputs:`, for the jobs that need it

    def step(self, step_id: str) -> StepResult:
        return next(s for s in self.steps if s.id == step_id)

    @property
    def log(self) -> str:
        return "\n".join(f"--- {s.id}: {s.outcome}\n{s.log}" for s in self.steps)


@dataclass
class Runner:
    """One runner machine: jobs run one after the other, each in a fresh workspace."""

    home: Path  # everything of this runner lives below: workspaces, temp, the Python it sets up, artifacts
    remote: Path  # the repository actions/checkout clones (a path: file:// as far as git is concerned)
    repository: str = "acme/models"
    api_url: str = ""
    secrets: dict[str, str] = field(default_factory=dict)
    token: str = "ghs_test_token"
    actor: str = "alice"
    run_id: int = 4242
    _python: Path | None = field(default=None, init=False)
    logs: list[str] = field(default_factory=list, init=False)  # every job's log, oldest first

    # the run -----------------------------------------------------------------------------------------

    def run_workflow(self, workflow: Path, event_name: str, event: dict[str, Any], sha: str, ref: str,
                     env: dict[str, str] | None = None) -> dict[str, list[JobResult]]:
        """Every job of a workflow run, in the order `needs` gives, each matrix combination as a job of its own
        (one after the other: this is one runner), sharing the run's id and artifacts. A job runs when every job
        it needs succeeded (unless its `if:` asks for always()); `needs.<job>.outputs` and `.result` reach it."""
        import itertools

        data = YAML(typ="safe").load(workflow.read_text())
        self.run_id += 1
        run_id = self.run_id
        artifacts = self.home / f"run-{run_id}-artifacts"
        artifacts.mkdir(parents=True)
        done: dict[str, list[JobResult]] = {}
        todo = list(data["jobs"])
        while todo:
            job = next(j for j in todo if all(n in done for n in _needs(data["jobs"][j])))
            todo.remove(job)
            spec = data["jobs"][job]
            needs = {n: {"result": _result(done[n]), "outputs": {k: v for r in done[n] for k, v in r.outputs.items()}}
                     for n in _needs(spec)}
            matrix = (spec.get("strategy") or {}).get("matrix") or {}
            keys = [k for k in matrix if k not in ("include", "exclude")]
            combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(matrix[k] for k in keys))]
            done[job] = []
            for combo in combos or [{}]:
                got = self.run_job(workflow, job, event_name, event, sha, ref, env, matrix=combo or None,
                                   needs=needs, run=(run_id, artifacts))
                done[job].append(got)
                if got.skipped:  # a job's `if:` cannot see the matrix: the whole matrix is skipped, once
                    break
        return done

    def run_job(self, workflow: Path, job: str, event_name: str, event: dict[str, Any], sha: str, ref: str,
                env: dict[str, str] | None = None, matrix: dict[str, Any] | None = None,
                needs: dict[str, Any] | None = None, run: tuple[int, Path] | None = None) -> JobResult:
        data = YAML(typ="safe").load(workflow.read_text())
        spec = data["jobs"][job]
        self.run_id += 1
        work = self.home / f"work-{self.run_id}"
        workspace = work / self.repository.split("/")[1]
        temp = work / "temp"
        run_id, artifacts = run if run is not None else (self.run_id, work / "artifacts")
        for d in (workspace, temp, artifacts):
            d.mkdir(parents=True, exist_ok=True)
        event_path = temp / "event.json"
        event_path.write_text(json.dumps(event))
        pr = event.get("pull_request") or {}
        github = {
            "event": event, "event_name": event_name, "sha": sha, "ref": ref, "repository": self.repository,
            "repository_owner": self.repository.split("/")[0], "job": job, "run_id": str(run_id),
            "run_number": "1", "actor": self.actor, "workspace": str(workspace), "server_url": "https://github.com",
            "api_url": self.api_url, "token": self.token, "workflow": data.get("name", workflow.name),
            "base_ref": (pr.get("base") or {}).get("ref", ""), "head_ref": (pr.get("head") or {}).get("ref", ""),
            "action_path": "", "event_path": str(event_path),
        }
        base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work / "home"), "CI": "true",
            "LANG": "C.UTF-8", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_EVENT_PATH": str(event_path), "GITHUB_EVENT_NAME": event_name, "GITHUB_SHA": sha,
            "GITHUB_REF": ref, "GITHUB_REPOSITORY": self.repository, "GITHUB_RUN_ID": str(run_id),
            "GITHUB_ACTOR": self.actor, "GITHUB_JOB": job, "GITHUB_API_URL": self.api_url,
            "GITHUB_SERVER_URL": "https://github.com", "GITHUB_BASE_REF": github["base_ref"],
            "GITHUB_HEAD_REF": github["head_ref"], "RUNNER_TEMP": str(temp), "RUNNER_OS": "Linux",
            "XDG_RUNTIME_DIR": str(temp),
        }
        (work / "home").mkdir()
        state = _Job(self, workspace, temp, {**base_env, **(env or {})}, github, work / "summary.md",
                     artifacts, matrix or {}, needs or {})
        if any(n["result"] != "success" for n in (needs or {}).values()):
            state.status = "failure"  # success() is false: a job whose needs failed runs only if it asks always()
        ctx = state.context({})
        if ("if" in spec or needs) and not condition(spec.get("if"), ctx):
            return JobResult(True, [], "", artifacts, skipped=True)
        for k, v in (data.get("env") or {}).items():
            state.env[k] = text(interpolate(v, ctx))
        for k, v in (spec.get("env") or {}).items():
            state.env[k] = text(interpolate(v, state.context({})))
        results = state.steps(spec["steps"], {}, {})
        ok = all(r.outcome != "failure" for r in results)
        summary = state.summary.read_text() if state.summary.exists() else ""
        steps = {r.id: {"outputs": r.outputs, "outcome": r.outcome} for r in results}
        outputs = {k: text(interpolate(v, state.context(steps))) for k, v in (spec.get("outputs") or {}).items()}
        result = JobResult(ok, results, summary, artifacts, outputs=outputs)
        self.logs.append(result.log)
        return result

    def python(self) -> Path:
        """actions/setup-python: a fresh virtual environment whose interpreter also sees the packages of the
        tests' environment (a .pth file), so an install needs no index; pip works offline from the wheelhouse."""
        if self._python is None:
            target = self.home / "python"
            venv.EnvBuilder(with_pip=False, symlinks=True).create(target)
            here = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
            mine = next((target / "lib").glob("python*/site-packages"))
            (mine / "zz_runner_tool_cache.pth").write_text(here + "\n")
            self._python = target / "bin"
        return self._python


def _needs(spec: dict[str, Any]) -> list[str]:
    needs = spec.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def _result(jobs: list[JobResult]) -> str:
    if all(j.skipped for j in jobs):
        return "skipped"
    return "success" if all(j.ok for j in jobs) else "failure"


class _Job:
    def __init__(self, runner: Runner, workspace: Path, temp: Path, env: dict[str, str], github: dict[str, Any],
                 summary: Path, artifacts: Path, matrix: dict[str, Any] | None = None,
                 needs: dict[str, Any] | None = None) -> None:
        self.matrix = matrix or {}
        self.needs = needs or {}
        self.artifacts = artifacts
        self.runner = runner
        self.workspace = workspace
        self.temp = temp
        self.env = env
        self.github = github
        self.summary = summary
        self.status = "success"
        self.n = 0

    def context(self, steps: dict[str, Any], inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        secrets = {**self.runner.secrets, "GITHUB_TOKEN": self.runner.token}
        ctx = {"github": self.github, "env": dict(self.env), "steps": steps, "secrets": secrets,
               "runner": {"os": "Linux", "temp": str(self.temp)}, "job": {"status": self.status},
               "matrix": self.matrix, "needs": self.needs, "__status": self.status}
        if inputs is not None:
            ctx["inputs"] = inputs
        return ctx

    def steps(self, steps: list[dict[str, Any]], inputs: dict[str, Any] | None, outer_env: dict[str, str],
              action_path: str = "") -> list[StepResult]:
        done: dict[str, Any] = {}
        results = []
        for i, step in enumerate(steps):
            sid = str(step.get("id") or f"__step{i}")
            self.github["action_path"] = action_path
            ctx = self.context(done, inputs)
            if not condition(step.get("if"), ctx):
                results.append(StepResult(sid, "skipped"))
                done[sid] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
                continue
            env = {**self.env, **outer_env}
            for k, v in (step.get("env") or {}).items():
                env[k] = text(interpolate(v, ctx))
            try:
                result = self.step(sid, step, env, ctx, inputs, action_path)
            except Exception as exc:  # a stand-in's own failure is the step's
                result = StepResult(sid, "failure", log=f"{type(exc).__name__}: {exc}")
            results.append(result)
            done[sid] = {"outputs": result.outputs, "outcome": result.outcome, "conclusion": result.outcome}
            if result.outcome == "failure":
                self.status = "failure"
        return results

    def step(self, sid: str, step: dict[str, Any], env: dict[str, str], ctx: dict[str, Any],
             inputs: dict[str, Any] | None, action_path: str) -> StepResult:
        cwd = self.workspace
        if step.get("working-directory"):
            cwd = self.workspace / text(interpolate(step["working-directory"], ctx))
        if "run" in step:
            return self.shell(sid, text(interpolate(step["run"], ctx)), env, cwd, step.get("shell", "bash"))
        uses = str(step["uses"])
        with_ = {k: interpolate(v, ctx) for k, v in (step.get("with") or {}).items()}
        name = uses.split("@")[0]
        if name == "actions/checkout":
            return self.checkout(sid, with_)
        if name == "actions/setup-python":
            self.env["PATH"] = f"{self.runner.python()}:{self.env['PATH']}"
            self.env["PIP_NO_INDEX"] = "1"
            self.env["PIP_FIND_LINKS"] = str(ROOT / ".venv" / "wheelhouse")
            return StepResult(sid, "success", {"python-version": "3.11"})
        if name == "actions/upload-artifact":
            return self.upload(sid, with_)
        if name == "actions/download-artifact":
            return self.download(sid, with_)
        if name.endswith("/recon") or uses in (".", "./"):
            return self.composite(sid, ROOT, with_, env)
        raise ValueError(f"the runner stand-in has no action {uses}")

    def shell(self, sid: str, script: str, env: dict[str, str], cwd: Path, shell: str) -> StepResult:
        self.n += 1
        files = {k: self.temp / f"{k.lower()}-{self.n}" for k in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH")}
        for f in files.values():
            f.write_text("")
        script_file = self.temp / f"step-{self.n}.sh"
        script_file.write_text(script)
        command = {"bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
                   "sh": ["sh", "-e", str(script_file)]}[shell]
        full = {**env, **{k: str(v) for k, v in files.items()}, "GITHUB_STEP_SUMMARY": str(self.summary)}
        self.summary.touch()
        done = subprocess.run(command, cwd=cwd, env=full, capture_output=True, text=True, timeout=600, check=False)
        outputs = _key_values(files["GITHUB_OUTPUT"].read_text())
        self.env.update(_key_values(files["GITHUB_ENV"].read_text()))
        for line in files["GITHUB_PATH"].read_text().splitlines():
            if line.strip():
                self.env["PATH"] = f"{line.strip()}:{self.env['PATH']}"
        return StepResult(sid, "success" if done.returncode == 0 else "failure", outputs,
                          done.stdout + done.stderr + (f"\n(exit {done.returncode})" if done.returncode else ""))

    def checkout(self, sid: str, with_: dict[str, Any]) -> StepResult:
        depth = int(with_.get("fetch-depth", 1) or 0)
        remote = f"file://{self.runner.remote}"
        want = text(with_.get("ref") or "") or self.github["sha"]  # a ref (refs/pull/N/head) or the run's commit
        deep = ["--depth", str(depth)] if depth else []
        commands = [["git", "init", "-q", "."], ["git", "remote", "add", "origin", remote],
                    ["git", "fetch", "-q", "--no-tags", *deep, "origin", "+refs/heads/*:refs/remotes/origin/*"],
                    ["git", "fetch", "-q", "--no-tags", *deep, "origin", want],  # FETCH_HEAD: what was asked for
                    ["git", "checkout", "-q", "--detach", "FETCH_HEAD"]]
        log = ""
        for c in commands:
            done = subprocess.run(c, cwd=self.workspace, capture_output=True, text=True, check=False)
            log += done.stdout + done.stderr
            if done.returncode != 0:
                return StepResult(sid, "failure", log=log)
        return StepResult(sid, "success", log=log)

    def upload(self, sid: str, with_: dict[str, Any]) -> StepResult:
        name = text(with_.get("name") or "artifact")
        source = Path(text(with_["path"]))
        source = source if source.is_absolute() else self.workspace / source
        if not source.exists():
            missing = text(with_.get("if-no-files-found") or "warn")
            return StepResult(sid, "failure" if missing == "error" else "success", log=f"no files at {source}")
        target = self.artifacts / name
        if target.exists():  # upload-artifact v4: names are unique within a run
            return StepResult(sid, "failure", log=f"an artifact with the name {name} already exists")
        target.mkdir(parents=True)
        shutil.copy2(source, target / source.name)
        return StepResult(sid, "success", {"artifact-id": name})

    def download(self, sid: str, with_: dict[str, Any]) -> StepResult:
        """download-artifact v4: `name` into `path`; or every artifact matching `pattern`, each into its own
        directory below `path`, or all into `path` itself with `merge-multiple`."""
        import fnmatch

        target = self.workspace / text(with_.get("path") or ".")
        if with_.get("name"):
            chosen = [self.artifacts / text(with_["name"])]
            if not chosen[0].is_dir():
                return StepResult(sid, "failure", log=f"Unable to download artifact(s): Artifact not found for name: "
                                  f"{text(with_['name'])}")
        else:
            pattern = text(with_.get("pattern") or "*")
            chosen = sorted(d for d in self.artifacts.iterdir() if fnmatch.fnmatchcase(d.name, pattern))
        merge = text(with_.get("merge-multiple") or "false").lower() == "true"
        for art in chosen:
            into = target if (merge or with_.get("name")) else target / art.name
            into.mkdir(parents=True, exist_ok=True)
            for f in art.iterdir():
                shutil.copy2(f, into / f.name)
        return StepResult(sid, "success", {"download-path": str(target)}, log=f"{len(chosen)} artifact(s)")

    def composite(self, sid: str, path: Path, with_: dict[str, Any], env: dict[str, str]) -> StepResult:
        action = YAML(typ="safe").load((path / "action.yml").read_text())
        assert action["runs"]["using"] == "composite"
        inputs: dict[str, Any] = {}
        for name, spec in (action.get("inputs") or {}).items():
            default = spec.get("default", "")
            inputs[name] = with_[name] if name in with_ else interpolate(default, self.context({}, {}))
            inputs[name] = text(inputs[name])  # inputs are strings: an unset one is ""
        unknown = set(with_) - set(inputs)
        if unknown:
            return StepResult(sid, "failure", log=f"unexpected inputs {sorted(unknown)}")
        outer = {k: v for k, v in env.items() if self.env.get(k) != v}  # the step's own env reaches its steps
        outer["GITHUB_ACTION_PATH"] = str(path)
        results = self.steps(action["runs"]["steps"], inputs, outer, str(path))
        done = {r.id: {"outputs": r.outputs, "outcome": r.outcome} for r in results}
        ctx = self.context(done, inputs)
        outputs = {k: text(interpolate(v["value"], ctx)) for k, v in (action.get("outputs") or {}).items()}
        failed = any(r.outcome == "failure" for r in results)
        return StepResult(sid, "failure" if failed else "success", outputs,
                          "\n".join(f"  [{r.id}: {r.outcome}]\n{r.log}" for r in results))


def _key_values(data: str) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV: `key=value` lines and `key<<DELIMITER` blocks."""
    out: dict[str, str] = {}
    lines = data.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            block = []
            i += 1
            while i < len(lines) and lines[i] != delim:
                block.append(lines[i])
                i += 1
            out[key] = "\n".join(block)
        elif "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
        i += 1
    return out
