"""`recon init model`: the generated project checks, tests, and serves a REST prediction through gRPC."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import recon
from tests.peers.registry import free_block


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the service exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_generate_check_test_and_serve_a_prediction(tmp_path: Path) -> None:
    made = recon("init", "model", "churn-model", cwd=tmp_path)
    assert made.rc == 0, made.text
    project = tmp_path / "churn-model"
    assert recon("check", cwd=project).rc == 0
    assert recon("validate", "specs", cwd=project).rc == 0
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "model-service",
                            "api-service"], cwd=project, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr

    model_port = free_block(2)
    api_port = model_port + 1
    env = {**os.environ, "MODEL_VERSION": "0.1.0"}
    model = subprocess.Popen([sys.executable, "model-service/server.py"], cwd=project,
                             env={**env, "PORT": str(model_port)}, stderr=subprocess.PIPE)
    api = subprocess.Popen([sys.executable, "api-service/app.py"], cwd=project,
                           env={**env, "PORT": str(api_port), "MODEL_SERVICE_ADDR": f"127.0.0.1:{model_port}",
                                "API_KEY_CLIENT": KEY}, stderr=subprocess.PIPE)
    try:
        _wait_port(model_port, model)
        _wait_port(api_port, api)
        _assert_predicts(api_port)
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/health", timeout=10) as resp:
            assert json.loads(resp.read()) == {"status": "ok"}
    finally:
        for proc in (api, model):
            proc.terminate()
            proc.wait(timeout=10)


def test_check_says_what_is_missing_or_wrong(tmp_path: Path) -> None:
    assert recon("init", "model", "churn-model", cwd=tmp_path).rc == 0
    project = tmp_path / "churn-model"
    (project / "api-service" / "Dockerfile").unlink()
    proto = project / "model-interface" / "predict.proto"
    proto.write_text(proto.read_text().replace("rpc Predict", "rpc Score"))
    got = recon("check", cwd=project)
    assert got.rc == 1, got.text
    assert "api-service/Dockerfile: missing (the api-service image)" in got.out
    assert "predict.proto: no `rpc Predict(...)`" in got.out
    assert "spec.build.context: no api-service/Dockerfile in" in got.out  # the Model spec says so too
    assert "3 problems" in got.out
    (project / "api-service" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    proto.write_text(proto.read_text().replace("rpc Score", "rpc Predict"))
    (project / "specs" / "bundle.yaml").unlink()
    got = recon("check", cwd=project)
    assert got.rc == 1 and "no Bundle of the model files" in got.out and "1 problem in" in got.out, got.text
    # the api-service's guard settings: a key written in the spec, an unknown scope, a rate it cannot read
    spec = project / "specs" / "models.yaml"
    spec.write_text(spec.read_text().replace("{valueFrom: {env: CHURN_MODEL_API_KEY}}", '"written-in-git-0123456789"')
                    .replace('"predict,metrics"', '"predict,admin"').replace('"600/minute"', '"lots"'))
    got = recon("check", cwd=project)
    assert "spec.env.API_KEY_CLIENT: API_KEY_CLIENT is written in the spec" in got.out, got.out
    assert "spec.env.API_KEY_CLIENT_SCOPES: API_KEY_CLIENT_SCOPES: admin scope" in got.out
    assert "spec.env.RATE_LIMIT_PER_KEY: RATE_LIMIT_PER_KEY is not a rate" in got.out and "4 problems" in got.out


def test_init_refuses_a_bad_name_and_a_full_directory(tmp_path: Path) -> None:
    bad = recon("init", "model", "Churn_Model", cwd=tmp_path)
    assert bad.rc == 1 and "is not a usable model name" in bad.err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    full = recon("init", "model", "churn", "--dir", "taken", cwd=tmp_path)
    assert full.rc == 1 and "exists and is not empty" in full.err


def test_the_template_example_is_what_init_makes_now(tmp_path: Path) -> None:
    """examples/model-template is `recon init model churn-model` as committed: it must not drift from the template."""
    from tests.conftest import ROOT

    assert recon("init", "model", "churn-model", "--dir", "fresh", cwd=tmp_path).rc == 0
    example = ROOT / "examples" / "model-template"
    made = {p.relative_to(tmp_path / "fresh"): p.read_bytes() for p in (tmp_path / "fresh").rglob("*") if p.is_file()}
    have = {p.relative_to(example): p.read_bytes() for p in example.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and "_generated" not in p.parts}
    assert made == have, "regenerate it: rm -rf examples/model-template && recon init model churn-model --dir " \
                         "examples/model-template"
    assert recon("check", str(example), cwd=tmp_path).rc == 0


def test_the_generated_project_runs_as_containers_on_the_engine(tmp_path: Path) -> None:
    """recon apply of the generated specs: both images built (on a Python base image made from this
    machine's interpreter, since python:3.11-slim cannot be pulled here) and their replicas answer."""
    from tests.peers import docker_engine, python_image

    engine = docker_engine.start(Path("/tmp") / f"recon-dockerd-template-{os.getpid()}")
    try:
        python_image.build(engine, tmp_path / "python-image")
        model_port = free_block(20)
        api_port = model_port + 10
        assert recon("init", "model", "churn-model", "--model-port", str(model_port), "--api-port", str(api_port),
                     cwd=tmp_path).rc == 0
        project = tmp_path / "churn-model"
        for service in ("model-service", "api-service"):
            dockerfile = project / service / "Dockerfile"
            text = dockerfile.read_text().replace("FROM python:3.11-slim", "FROM recon-test/python:3.11")
            dockerfile.write_text("\n".join(line for line in text.splitlines() if "pip install" not in line) + "\n")
        spec = project / "specs" / "models.yaml"
        spec.write_text(spec.read_text().replace('RATE_LIMIT_PER_IP: "120/minute"', 'RATE_LIMIT_PER_IP: "20/minute"'))
        env = {"DOCKER_HOST": engine.host, "RECON_CACHE_DIR": str(tmp_path / "cache"), "CHURN_MODEL_API_KEY": KEY}
        applied = recon("apply", "specs", "--auto-approve", cwd=project, env=env, timeout=600)
        assert applied.rc == 0, applied.text
        assert KEY not in applied.text
        _assert_predicts(api_port)
        assert recon("plan", "specs", "--detailed-exitcode", cwd=project, env=env).rc == 0

        # the hardened api-service, as deployed: keys (from the secret) with scopes, limits, logs, metrics
        predict = json.dumps({"features": {"tenure_months": 3}}).encode()
        assert _call(api_port, "/predict", key=None, body=predict)[0] == 401
        assert _call(api_port, "/predict", key=KEY[:-1] + "x", body=predict)[0] == 401
        assert _call(api_port, "/predict", body=b'{"features": {"' + b"x" * 70000 + b'": 1}}')[0] == 413
        status, _, metrics = _call(api_port, "/metrics")
        assert status == 200 and b'api_requests_total{method="POST",path="/predict",status="401"} 2' in metrics
        codes = [_call(api_port, "/predict", body=predict) for _ in range(20)]
        limited = [(s, h) for s, h, _ in codes if s == 429]
        assert limited and int(limited[0][1]["retry-after"]) >= 1, [s for s, _, _ in codes]  # 20/minute per address
        assert _call(api_port, "/health", key=None)[0] == 200  # health checks are never limited
        [api] = engine.docker("ps", "-q", "--filter", "label=recon.dev/spec=Model/churn-model-api").split()
        logs = engine.docker("logs", api)
        lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        assert {entry["status"] for entry in lines} >= {200, 401, 413, 429} and KEY not in logs
        assert {entry["key"] for entry in lines} >= {"client", None}
    finally:
        engine.stop()


KEY = "template-test-key-" + "0123456789abcdef"


def _call(port: int, path: str, key: str | None = KEY, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST" if body is not None else "GET",
                                 data=body, headers={"Content-Type": "application/json",
                                                     **({"X-API-Key": key} if key else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _assert_predicts(api_port: int) -> None:
    """The api-service answers a prediction, through the model-service, from model version 0.1.0."""
    status, _, body = _call(api_port, "/predict", body=json.dumps(
        {"features": {"tenure_months": 3, "support_calls": 4}}).encode())
    got = json.loads(body)
    assert status == 200 and got["model_version"] == "0.1.0" and 0 < got["prediction"] < 1, (status, body)


def test_check_in_a_fresh_install_without_grpcio_tools_is_no_problem_of_the_project(tmp_path: Path) -> None:
    """Issue 22 (5): `recon check` in a fresh install (no grpcio-tools) failed the project, with a fix path
    relative to another directory."""
    assert recon("init", "model", "churn-model", cwd=tmp_path).rc == 0
    blocked = tmp_path / "no-grpc-tools" / "grpc_tools"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed here')\n")
    got = recon("check", "churn-model", cwd=tmp_path, env={"PYTHONPATH": str(blocked.parent)})
    assert got.rc == 0, got.text
    assert "grpcio-tools is not installed here" in got.out
    assert "pip install -r churn-model/model-service/requirements.txt" in got.out, got.out
