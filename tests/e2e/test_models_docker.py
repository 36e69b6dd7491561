"""Models on a real Docker engine (Debian's dockerd, started by the tests), images built here."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Outcome, crash_apply, recon
from tests.peers import docker_engine, haproxy_image
from tests.peers.registry import free_block


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[docker_engine.Engine]:
    eng = docker_engine.start(Path("/tmp") / f"recon-dockerd-{tmp_path_factory.getbasetemp().name}", debug=True)
    yield eng
    eng.stop()


def _spec(tmp: Path, name: str, port: int, replicas: int, version: str, extra: str = "",
          image: str = "", context: str = "model", start_timeout: int = 10) -> None:
    source = f"image: {image}" if image else f"build: {{context: {context}}}"
    (tmp / "specs").mkdir(exist_ok=True)
    (tmp / "specs" / f"{name}.yaml").write_text(
        f"apiVersion: recon/v1\nkind: Model\nmetadata: {{name: {name}}}\nspec:\n  runtime: docker\n  {source}\n"
        f"  replicas: {replicas}\n  port: {port}\n  env: {{MODEL_VERSION: {version}}}\n"
        f"  health: {{path: /cgi-bin/health, startTimeout: {start_timeout}, interval: 0.1}}\n" + extra)


def _get(port: int, path: str = "/cgi-bin/health") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _replicas(engine: docker_engine.Engine, name: str) -> list[dict[str, str]]:
    out = engine.docker("ps", "--filter", f"label=recon.dev/spec=Model/{name}", "--format", "{{json .Labels}}")
    rows = []
    for line in out.splitlines():
        labels = dict(kv.split("=", 1) for kv in json.loads(line).split(",") if "=" in kv)
        if labels.get("recon.dev/role") != "endpoint":
            rows.append(labels)
    return sorted(rows, key=lambda r: int(r["recon.dev/replica"]))


def _watching(poll: Callable[[], None], cwd: Path, env: dict[str, str], *args: str) -> Outcome:
    """`recon ARGS…` while `poll` runs over and over in a thread beside it (a client, a watcher of the engine)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            poll()

    beside = threading.Thread(target=loop)
    beside.start()
    try:
        return recon(*args, cwd=cwd, env=env)
    finally:
        stop.set()
        beside.join()


def test_create_replan_roll_rollback_scale_and_drift(tmp_path: Path, engine: docker_engine.Engine) -> None:
    env = {"DOCKER_HOST": engine.host}
    port = free_block(30)
    docker_engine.model_context(tmp_path / "specs" / "model")
    _spec(tmp_path, "churn", port, 3, "v1")

    planned = recon("plan", cwd=tmp_path, env=env)
    assert planned.rc == 0 and "+ create  Model/churn" in planned.out, planned.text
    assert "replicas: 0 → 3" in planned.out and "(to build)" in planned.out
    applied = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert applied.rc == 0, applied.text
    for i in range(3):
        assert _get(port + i) == (200, "ok v1\n")
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0

    # change env: the plan names it; the rollout replaces one replica at a time under a prober
    _spec(tmp_path, "churn", port, 3, "v2")
    changed = recon("plan", cwd=tmp_path, env=env)
    assert "env.MODEL_VERSION: v1 → v2" in changed.out and "3 to replace one at a time" in changed.out
    failures: list[str] = []
    served: list[str] = []

    def probe() -> None:
        """A client that finds the replicas by recon's labels (as a proxy such as Traefik does), sends a
        request to every one that passes its health check, and retries a refused connection once on
        another replica (as such proxies do: the request never reached a server)."""
        ports = [int(r["recon.dev/port"]) for r in _replicas(engine, "churn")]
        healthy = [p for p in ports if _get_ok(p)]
        if not healthy:
            failures.append("no healthy replica")
        for p in healthy:
            for attempt in [p, *[q for q in healthy if q != p]][:2]:  # a refused connection is retried once
                try:
                    code, body = _get(attempt, "/cgi-bin/predict")
                    break
                except OSError:
                    code, body = 0, "connection refused twice"
            (served if code == 200 else failures).append(body or str(code))
        time.sleep(0.01)

    rolled = _watching(probe, tmp_path, env, "apply", "--auto-approve")
    assert rolled.rc == 0, rolled.text
    assert failures == [], failures[:5]
    assert len(served) > 20 and any('"v1"' in b for b in served) and any('"v2"' in b for b in served), served[-3:]
    assert {r["recon.dev/replica"] for r in _replicas(engine, "churn")} == {"0", "1", "2"}
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0

    # a broken new image: the first replaced replica fails its health check, the old ones keep serving
    docker_engine.model_context(tmp_path / "specs" / "broken", status=500)
    _spec(tmp_path, "churn", port, 3, "v3", context="broken")
    both = recon("plan", cwd=tmp_path, env=env)  # env and image change at once: the plan shows both
    assert "env.MODEL_VERSION: v2 → v3" in both.out and "image: recon/churn:" in both.out, both.text
    broken = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert broken.rc == 1 and "rolled back: the new replica 0 failed its health check (answered 500" in broken.out
    assert len(_replicas(engine, "churn")) == 3
    assert all(_get(int(r["recon.dev/port"])) == (200, "ok v2\n") for r in _replicas(engine, "churn"))

    # metadata labels go onto the containers; changing one is a change like any other
    labelled = (tmp_path / "specs" / "churn.yaml").read_text().replace("metadata: {name: churn}",
                                                                       "metadata: {name: churn, labels: {team: risk}}")
    (tmp_path / "specs" / "churn.yaml").write_text(labelled)
    assert 'labels: {} → {"team": "risk"}' in recon("plan", cwd=tmp_path, env=env).out

    # scale down, then a replica removed by hand is drift
    _spec(tmp_path, "churn", port, 2, "v2")
    (tmp_path / "specs" / "churn.yaml").write_text((tmp_path / "specs" / "churn.yaml").read_text().replace(
        "metadata: {name: churn}", "metadata: {name: churn, labels: {team: risk}}"))
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    assert len(_replicas(engine, "churn")) == 2
    assert all(r["team"] == "risk" for r in _replicas(engine, "churn"))
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0
    victim = engine.docker("ps", "-q", "--filter", "label=recon.dev/spec=Model/churn",
                           "--filter", "label=recon.dev/replica=1")
    engine.docker("rm", "-f", victim)
    drift = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert drift.rc == 2 and "replicas: 1 → 2" in drift.out, drift.text
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0

    # a Model removed from the specs: shown and kept, removed only with --prune
    _spec(tmp_path, "old", port + 20, 1, "v1")
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    (tmp_path / "specs" / "old.yaml").unlink()
    kept = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert kept.rc == 0 and "no spec declares Model/old (1 containers): kept" in kept.out, kept.text
    assert len(_replicas(engine, "old")) == 1
    pruned = recon("plan", "--prune", cwd=tmp_path, env=env)
    assert "- delete  Model/old" in pruned.out and "its 1 containers are removed" in pruned.out, pruned.text
    done = recon("apply", "--prune", "--auto-approve", cwd=tmp_path, env=env)
    assert done.rc == 0 and "1 containers of Model/old removed" in done.out, done.text
    assert _replicas(engine, "old") == []
    assert "Model/old" not in recon("plan", cwd=tmp_path, env=env).out


def _get_ok(port: int) -> bool:
    try:
        return _get(port)[0] == 200
    except OSError:
        return False


def test_a_no_op_plan_is_one_api_call_and_a_moved_tag_is_still_seen(tmp_path: Path,
                                                                     engine: docker_engine.Engine) -> None:
    """Issue 19 (5): a no-op plan made two Docker API calls (containers, then images). The engine lists a
    container's image by its reference while that reference still names the running image, so the images are
    listed only when a tag moved (or a Model has no container yet)."""
    env = {"DOCKER_HOST": engine.host}
    docker_engine.build(engine, "recon-test/retag:1", tmp_path / "v1")
    _spec(tmp_path, "retag", free_block(4), 2, "v1", image="recon-test/retag:1")
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    mark = engine.mark()
    quiet = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert quiet.rc == 0, quiet.text
    assert [c.split("?")[0] for c in engine.calls(mark)] == ["GET /v1.41/containers/json"], engine.calls(mark)

    docker_engine.build(engine, "recon-test/retag:1", tmp_path / "v2", status=500)  # the same tag, another image
    mark = engine.mark()
    moved = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert moved.rc == 2 and "image_id: sha256:" in moved.out, moved.text
    assert [c.split("?")[0] for c in engine.calls(mark)] == ["GET /v1.41/containers/json", "GET /v1.41/images/json"]
    docker_engine.build(engine, "recon-test/retag:1", tmp_path / "v1")  # back (the build cache gives the same id)
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0


def test_models_roll_at_the_same_time_up_to_the_parallelism(tmp_path: Path, engine: docker_engine.Engine) -> None:
    """Issue 19 (2): Models rolled one at a time. Four Models of two replicas, an env change, --parallelism 2: a
    watcher of the engine sees two Models mid-rollout at once, never three, and never two replicas of one Model
    replaced at once (a Model has at most replicas + 1 containers)."""
    env = {"DOCKER_HOST": engine.host}
    docker_engine.build(engine, "recon-test/par:1", tmp_path / "ctx")
    port = free_block(40)
    names = [f"par{i}" for i in range(4)]
    for i, name in enumerate(names):
        _spec(tmp_path, name, port + 10 * i, 2, "v1", image="recon-test/par:1", extra="  drainSeconds: 0.6\n")
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    for i, name in enumerate(names):
        _spec(tmp_path, name, port + 10 * i, 2, "v2", image="recon-test/par:1", extra="  drainSeconds: 0.6\n")
    seen: list[dict[str, int]] = []

    def watch() -> None:
        out = engine.docker("ps", "-a", "--filter", "label=recon.dev/managed-by=recon", "--format",
                            '{{.Label "recon.dev/spec"}}')
        counts: dict[str, int] = {}
        for spec in out.split():
            if spec.startswith("Model/par"):  # (the engine holds other tests' Models too)
                counts[spec] = counts.get(spec, 0) + 1
        seen.append(counts)
        time.sleep(0.05)

    rolled = _watching(watch, tmp_path, env, "apply", "--auto-approve", "--parallelism", "2")
    assert rolled.rc == 0, rolled.text
    at_once = max(sum(1 for n in snap.values() if n > 2) for snap in seen if snap)
    assert at_once == 2, seen
    assert max(n for snap in seen for n in snap.values()) == 3
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0


def test_a_proxy_in_the_environment_never_carries_a_health_check(tmp_path: Path, engine: docker_engine.Engine) -> None:
    """Health checks went through urllib's default opener, which sends even 127.0.0.1 to an `http_proxy` of the
    environment (common on company hosts and runners): every replica "failed" its check with the proxy's 502.
    A proxy that counts its connections and answers 502 is in every proxy variable here: create, roll, ask for
    health, re-plan; none of it reaches the proxy."""
    import socket

    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(16)
    reached: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = proxy.accept()
            except OSError:
                return
            with conn:
                reached.append(conn.recv(200))
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    env = {"DOCKER_HOST": engine.host, **{k: url for k in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")}}
    docker_engine.build(engine, "recon-test/proxied:1", tmp_path / "ctx")
    port = free_block(4)
    try:
        for version in ("v1", "v2"):
            _spec(tmp_path, "proxied", port, 2, version, image="recon-test/proxied:1")
            applied = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
            assert applied.rc == 0, applied.text
            ports = [int(r["recon.dev/port"]) for r in _replicas(engine, "proxied")]
            assert len(ports) == 2 and all(_get(p) == (200, f"ok {version}\n") for p in ports), ports
        health = recon("do", "health", "proxied", "--json", cwd=tmp_path, env=env)
        assert health.rc == 0 and json.loads(health.out)["ok"], health.text
        assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0
        # an engine on tcp://127.0.0.1 (as `dockerd -H tcp://127.0.0.1:2375` serves it): the docker CLI reaches
        # it directly whatever the proxy; recon's client (requests) sent it to the proxy
        tcp = _tcp_to_unix(engine.root / "docker.sock")
        over_tcp = recon("plan", "--detailed-exitcode", cwd=tmp_path, env={**env, "DOCKER_HOST": f"tcp://{tcp}"})
        assert over_tcp.rc == 0, over_tcp.text
        assert reached == []
    finally:
        proxy.shutdown(socket.SHUT_RDWR)  # wakes the accept (a bare close leaves it listening, in that thread)
        proxy.close()


def _tcp_to_unix(path: Path) -> str:
    """A TCP port on 127.0.0.1 whose connections are passed on to a Unix socket (threads, for the test's life)."""
    import shutil
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            shutil.copyfileobj(a.makefile("rb", buffering=0), b.makefile("wb", buffering=0))
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(str(path))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"127.0.0.1:{listener.getsockname()[1]}"


def test_a_replica_the_engine_refuses_fails_its_model_only_and_leaves_nothing(tmp_path: Path,
                                                                             engine: docker_engine.Engine) -> None:
    """An engine that refused a replica (a mount its runtime cannot make; a memory limit below its minimum) was "an
    internal error ... a bug in recon": the whole apply stopped, the created container was left behind. Now the
    refusal is that Model's failure in the engine's own words, like a failed health check: the old replica keeps
    serving, nothing of the new one is left, and the other Models of the apply converge."""
    env = {"DOCKER_HOST": engine.host}
    docker_engine.build(engine, "recon-test/refused:1", tmp_path / "ctx")
    port = free_block(8)
    # a directory mounted on a file of the image: the runtime refuses to start the container
    for version, bad in (("v1", ""), ("v2", "  volumes: [{source: ., target: /www/cgi-bin/health}]\n")):
        _spec(tmp_path, "refused", port, 1, version, image="recon-test/refused:1", extra=bad)
        _spec(tmp_path, "bystander", port + 4, 1, version, image="recon-test/refused:1")
        applied = recon("apply", "--auto-approve", "--parallelism", "2", cwd=tmp_path, env=env)
    assert applied.rc == 1 and "bug in recon" not in applied.text and "Traceback" not in applied.text, applied.text
    assert ("rolled back: the new replica 0 could not start: the engine could not start it: " in applied.out
            and "not a directory" in applied.out and "the old one keeps serving on port" in applied.out), applied.out
    left = engine.docker("ps", "-a", "--filter", "label=recon.dev/spec=Model/refused", "--format", "{{.State}}")
    assert left.split() == ["running"]
    assert _get(port) == (200, "ok v1\n")
    assert [r["recon.dev/port"] for r in _replicas(engine, "bystander")] == [str(port + 5)]
    assert _get(port + 5) == (200, "ok v2\n")

    # a limit the engine will not create a container with, for a Model with no replica yet
    _spec(tmp_path, "refused", port, 1, "v1", image="recon-test/refused:1")
    _spec(tmp_path, "starved", port + 2, 1, "v1", image="recon-test/refused:1",
          extra="  resources: {memory: 1m}\n")
    got = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert got.rc == 1 and "bug in recon" not in got.text, got.text
    assert "replica 0 could not start: the engine would not create it: " in got.out and "memory" in got.out, got.out
    assert engine.docker("ps", "-a", "--filter", "label=recon.dev/spec=Model/starved", "-q") == ""
    (tmp_path / "specs" / "starved.yaml").unlink()
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0


def test_a_replica_that_keeps_exiting_fails_at_its_third_restart_not_at_its_timeout(
        tmp_path: Path, engine: docker_engine.Engine) -> None:
    """A successor whose process exits at once, under the default `restart: unless-stopped`: the engine restarts it
    over and over ("restarting"), and the rollout waited the whole startTimeout (here 300 s) before it said "no
    answer". Now its third restart fails it, in its exit code and its own last words; the old replica keeps
    serving. One that exits once or twice (a dependency still coming up) and then answers is healthy."""
    env = {"DOCKER_HOST": engine.host}
    docker_engine.build(engine, "recon-test/crashing:1", tmp_path / "ctx")
    port = free_block(4)

    def model(version: str, command: str) -> None:
        _spec(tmp_path, "crashing", port, 1, version, extra=command, image="recon-test/crashing:1", start_timeout=300)

    model("v1", "")
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    model("v2", '  command: ["sh", "-c", "echo cannot load the weights; exit 3"]\n')
    got = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert got.rc == 1, got.text
    assert "rolled back: the new replica 0 failed its health check (it keeps exiting: " in got.out, got.out
    assert "exit code 3" in got.out and "cannot load the weights" in got.out and "within 300s" not in got.out, got.out
    assert _get(port) == (200, "ok v1\n")
    assert len(engine.docker("ps", "-a", "--filter", "label=recon.dev/spec=Model/crashing", "-q").split()) == 1

    # exits at its first two starts (a counter in the container's own file /n), then serves
    flaky = ('  command: ["sh", "-c", "n=$(cat /n 2>/dev/null || echo 0); echo $((n+1)) > /n; '
             '[ $n -ge 2 ] || exit 4; exec /bin/busybox httpd -f -p 127.0.0.1:$PORT -h /www"]\n')
    model("v3", flaky)
    settled = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert settled.rc == 0, settled.text
    [replica] = _replicas(engine, "crashing")
    assert _get(int(replica["recon.dev/port"])) == (200, "ok v3\n")
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0


def test_a_missing_image_and_no_engine_are_clear_errors(tmp_path: Path, engine: docker_engine.Engine) -> None:
    _spec(tmp_path, "ghost", 19990, 1, "v1", image="recon-test/not-here:1")
    got = recon("apply", "--auto-approve", cwd=tmp_path, env={"DOCKER_HOST": engine.host})
    assert got.rc == 1 and "image recon-test/not-here:1 is not on the engine" in got.out, got.text
    nothing = recon("plan", cwd=tmp_path, env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert nothing.rc == 1 and "Traceback" not in nothing.err and "Docker engine" in nothing.err, nothing.text


def test_a_secret_env_value_never_shows(tmp_path: Path, engine: docker_engine.Engine) -> None:
    secret = "model-api-key-" + str(time.time_ns())
    docker_engine.model_context(tmp_path / "specs" / "model")
    _spec(tmp_path, "vault", free_block(2), 1, "v1", extra="  command: null\n")
    text = (tmp_path / "specs" / "vault.yaml").read_text().replace(
        "env: {MODEL_VERSION: v1}", "env: {MODEL_VERSION: v1, API_KEY: {valueFrom: {env: API_KEY}}}")
    (tmp_path / "specs" / "vault.yaml").write_text(text)
    env = {"DOCKER_HOST": engine.host, "API_KEY": secret}
    outs = [recon("plan", "--json", cwd=tmp_path, env=env), recon("apply", "--auto-approve", cwd=tmp_path, env=env)]
    assert outs[1].rc == 0, outs[1].text
    labels = engine.docker("ps", "--filter", "label=recon.dev/spec=Model/vault", "--format", "{{json .Labels}}")
    for text in [o.text for o in outs] + [labels]:
        assert secret not in text
    assert "(secret) hmac:" in outs[0].out


def test_the_example_on_the_test_engine(tmp_path: Path, engine: docker_engine.Engine) -> None:
    """examples/model-docker as shipped: its Dockerfile builds with nothing to pull (issue 22: 9), once Debian's
    static busybox is copied in, as the README and scripts/sandbox say."""
    import shutil

    from tests.conftest import ROOT

    shutil.copytree(ROOT / "examples" / "model-docker", tmp_path / "ex", ignore=shutil.ignore_patterns("busybox"))
    context = tmp_path / "ex" / "model-service"
    assert "FROM scratch" in (context / "Dockerfile").read_text()
    shutil.copy(docker_engine.BUSYBOX, context / "busybox")
    env = {"DOCKER_HOST": engine.host}
    applied = recon("apply", "ex", "--auto-approve", cwd=tmp_path, env=env)
    assert applied.rc == 0, applied.text
    for port in (18080, 18081):
        assert _get(port) == (200, "ok 1.3.0\n")
        code, body = _get(port, "/cgi-bin/predict")
        assert code == 200 and json.loads(body)["model"] == "1.3.0"
    assert recon("plan", "ex", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0
    (tmp_path / "ex" / "model.yaml").write_text((tmp_path / "ex" / "model.yaml").read_text().replace(
        "replicas: 2", "replicas: 0"))
    assert recon("apply", "ex", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    assert _replicas(engine, "churn-model") == []


def test_model_files_from_a_bundle_roll_the_replicas_when_they_change(tmp_path: Path,
                                                                       engine: docker_engine.Engine) -> None:
    from tests.peers import registry as registries

    reg = registries.start(tmp_path / "registry")
    try:
        env = {"DOCKER_HOST": engine.host, "RECON_CACHE_DIR": str(tmp_path / "cache")}
        (tmp_path / "weights").mkdir()
        (tmp_path / "weights" / "version.txt").write_text("w1")
        docker_engine.model_context(tmp_path / "specs" / "model")
        (tmp_path / "specs" / "bundle.yaml").write_text(
            "apiVersion: recon/v1\nkind: Bundle\nmetadata: {name: weights}\nspec:\n  source: ../weights\n"
            f"  ref: {reg.host}/models/weights:v1\n")
        port = free_block(4)
        _spec(tmp_path, "scorer", port, 2, "v1", extra="  bundle: {spec: weights, mountPath: /model}\n")
        applied = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
        assert applied.rc == 0, applied.text
        assert applied.out.index("Bundle/weights") < applied.out.index("Model/scorer")  # the bundle goes first
        for i in range(2):
            assert json.loads(_get(port + i, "/cgi-bin/predict")[1])["files"] == "w1"
        assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0

        (tmp_path / "weights" / "version.txt").write_text("w2")
        plan = recon("plan", cwd=tmp_path, env=env)
        assert "~ update  Bundle/weights" in plan.out and "~ update  Model/scorer" in plan.out, plan.text
        assert "bundle:" in plan.out
        assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
        ports = [int(r["recon.dev/port"]) for r in _replicas(engine, "scorer")]
        assert [json.loads(_get(p, "/cgi-bin/predict")[1])["files"] for p in ports] == ["w2", "w2"]
        assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0
    finally:
        reg.stop()


def test_prune_clears_up_after_the_last_model(tmp_path: Path, engine: docker_engine.Engine) -> None:
    env = {"DOCKER_HOST": engine.host}
    docker_engine.model_context(tmp_path / "specs" / "model")
    _spec(tmp_path, "last", free_block(2), 1, "v1")
    (tmp_path / "specs" / "hosts.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: here}\nspec:\n  hosts: [{name: me, root: ../me}]\n")
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    (tmp_path / "specs" / "last.yaml").unlink()
    quiet = recon("plan", cwd=tmp_path, env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert quiet.rc == 0, quiet.text  # no Model in the project: Docker is not asked
    assert recon("apply", "--prune", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    assert _replicas(engine, "last") == []


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[docker_engine.Engine]:
    """An engine with a bridge network, in a network namespace of its own."""
    name = f"recon-dkb-{os.getpid()}"
    eng = docker_engine.start(Path("/tmp") / f"recon-dockerd-bridge-{tmp_path_factory.getbasetemp().name}",
                              bridge=name)
    yield eng
    eng.stop()


def _curl(prefix: list[str], port: int, path: str = "/cgi-bin/health") -> str:
    done = subprocess.run([*prefix, "curl", "-s", "-m", "3", f"http://127.0.0.1:{port}{path}"], capture_output=True,
                          text=True, check=False)
    return done.stdout


def test_bridge_networks_publish_each_replica_on_its_port(tmp_path: Path, bridged: docker_engine.Engine) -> None:
    env = {"DOCKER_HOST": bridged.host}
    docker_engine.model_context(tmp_path / "specs" / "model")
    port = 18500
    extra = "  network: bridge\n  containerPort: 8080\n"
    _spec(tmp_path, "bridged", port, 2, "v1", extra=extra)
    spec = tmp_path / "specs" / "bridged.yaml"
    spec.write_text(spec.read_text().replace("env: {MODEL_VERSION: v1}", "env: {MODEL_VERSION: v1, LISTEN: 0.0.0.0}"))
    applied = recon("apply", "--auto-approve", cwd=tmp_path, env=env, prefix=bridged.prefix)
    assert applied.rc == 0, applied.text
    for i in range(2):
        assert _curl(bridged.prefix, port + i) == "ok v1\n"
    assert _curl([], port) == ""  # published inside the engine's namespace only, not on this machine
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env, prefix=bridged.prefix).rc == 0
    spec.write_text(spec.read_text().replace("MODEL_VERSION: v1", "MODEL_VERSION: v2"))
    rolled = recon("apply", "--auto-approve", cwd=tmp_path, env=env, prefix=bridged.prefix)
    assert rolled.rc == 0, rolled.text
    ports = [int(r["recon.dev/port"]) for r in _replicas(bridged, "bridged")]
    assert sorted(ports) == [port + 2, port + 3]  # the successors' ports
    assert [_curl(bridged.prefix, p) for p in ports] == ["ok v2\n", "ok v2\n"]
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env, prefix=bridged.prefix).rc == 0


def test_two_projects_on_one_engine_never_plan_or_prune_each_other(tmp_path: Path,
                                                                    engine: docker_engine.Engine) -> None:
    """Issue 19 (4): planning one project listed another project's Model as "no spec declares it", and `--prune`
    from it would have removed that project's containers. Containers carry their stack (repository and spec
    root); plan and prune see only their own, containers of no recorded stack are shown and never pruned, and a
    Model name taken by another project on the engine is refused."""
    env = {"DOCKER_HOST": engine.host}
    one, two = tmp_path / "one", tmp_path / "two"
    base = free_block(20)  # (ports of its own: another run on this machine must not take them)
    for cwd, name, port in ((one, "alpha", base), (two, "beta", base + 10)):
        docker_engine.model_context(cwd / "specs" / "model")
        _spec(cwd, name, port, 1, "v1")
        assert recon("apply", "--auto-approve", cwd=cwd, env=env).rc == 0
    for cwd in (one, two):
        got = recon("plan", "--detailed-exitcode", cwd=cwd, env=env)
        assert got.rc == 0 and "no spec declares" not in got.out, got.text
    [alpha] = _replicas(engine, "alpha")
    assert alpha["recon.dev/stack-name"] == str(one / "specs")
    # a container an earlier recon made (no stack recorded): shown, kept even with --prune
    image = engine.docker("ps", "--filter", "label=recon.dev/spec=Model/alpha", "--format", "{{.Image}}")
    engine.docker("run", "-d", "--name", "legacy-0", "--label", "recon.dev/managed-by=recon", "--label",
                  "recon.dev/spec=Model/legacy", "--label", "recon.dev/replica=0", image.strip(), "sleep", "300")
    (one / "specs" / "alpha.yaml").unlink()  # alpha leaves project one, gamma comes
    _spec(one, "gamma", base + 2, 1, "v1")
    planned = recon("plan", "--prune", cwd=one, env=env)
    assert "- delete  Model/alpha" in planned.out and "Model/beta" not in planned.out, planned.text
    assert "Model/legacy" in planned.out and "did not record its project" in planned.out, planned.text
    assert recon("apply", "--prune", "--auto-approve", cwd=one, env=env).rc == 0
    assert _replicas(engine, "alpha") == [] and len(_replicas(engine, "beta")) == 1
    assert engine.docker("ps", "-q", "--filter", "name=legacy-0").strip()  # kept
    engine.docker("rm", "-f", "legacy-0")
    # the same Model name in the other project: refused, naming the project that runs it
    _spec(two, "gamma", base + 12, 1, "v1")
    clash = recon("plan", cwd=two, env=env)
    assert clash.rc == 1 and "runs on this engine from another project" in clash.err, clash.text
    assert str(one / "specs") in clash.err and "Traceback" not in clash.err


def test_an_apply_killed_while_a_broken_successor_waits_never_swaps_the_healthy_replica_for_it(
        tmp_path: Path, engine: docker_engine.Engine) -> None:
    """Issue 19 (3): kill -9 the apply while the new replica waits for its health check; the next apply took the
    broken container for replica 0 and removed the healthy one. (6): the recovering apply's summary said
    "0 removed" while it removed a container. A container counts only when it is healthy now."""
    env = {"DOCKER_HOST": engine.host}
    docker_engine.model_context(tmp_path / "specs" / "model")
    port = free_block(4)
    _spec(tmp_path, "crash", port, 1, "v1")
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    [old] = _replicas(engine, "crash")
    docker_engine.model_context(tmp_path / "specs" / "model", status=500)  # a successor that never gets healthy
    _spec(tmp_path, "crash", port, 1, "v2")
    crash_apply(tmp_path, lambda: len(_replicas(engine, "crash")) == 2, settle=0.5, env=env)
    assert len(_replicas(engine, "crash")) == 2  # the healthy one, and the broken one the killed apply left
    again = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert again.rc == 1 and "rolled back" in again.out, again.text
    assert _replicas(engine, "crash") == [old] and _get(port)[0] == 200  # the healthy one serves, untouched
    crash_apply(tmp_path, lambda: len(_replicas(engine, "crash")) == 2, settle=0.5, env=env)
    docker_engine.model_context(tmp_path / "specs" / "model")  # fixed: a good v3
    _spec(tmp_path, "crash", port, 1, "v3")
    fixed = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert fixed.rc == 0 and "1 replaced, 1 removed" in fixed.out, fixed.text  # the broken one counted
    [new] = _replicas(engine, "crash")
    assert new["recon.dev/config"] != old["recon.dev/config"] and _get(int(new["recon.dev/port"]))[0] == 200
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0


def _healthy_now(engine: docker_engine.Engine, name: str) -> int:
    return sum(1 for r in _replicas(engine, name) if _get_ok(int(r["recon.dev/port"])))


@pytest.mark.parametrize(("successor", "phase"), [("good", "waiting"), ("good", "draining"), ("good", "between"),
                                                  ("broken", "waiting")])
def test_crash_matrix_the_healthy_replicas_serve_through_a_kill_and_the_next_apply(
        tmp_path: Path, engine: docker_engine.Engine, successor: str, phase: str) -> None:
    """Issue 19 (3), every phase: kill -9 an apply of a two-replica Model while a successor waits for its health
    check, while an old replica drains beside a healthy successor, or between two replicas; then apply again.
    Two healthy replicas serve at every moment, from the kill to the end of the next apply; a good rollout then
    converges, a broken one is rolled back with the old replicas serving."""
    env = {"DOCKER_HOST": engine.host}
    name = f"crash-{successor}-{phase}"
    docker_engine.build(engine, "recon-test/crash:good", tmp_path / "good")
    docker_engine.build(engine, "recon-test/crash:broken", tmp_path / "broken", status=500)
    port = free_block(8)
    extra = "  drainSeconds: 1.5\n"

    def spec(image: str, version: str) -> None:
        _spec(tmp_path, name, port, 2, version, image=f"recon-test/crash:{image}", extra=extra)
        text = (tmp_path / "specs" / f"{name}.yaml").read_text().replace("startTimeout: 10", "startTimeout: 3")
        (tmp_path / "specs" / f"{name}.yaml").write_text(text)

    spec("good", "v1")
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    old = {r["recon.dev/config"] for r in _replicas(engine, name)}
    spec(successor, "v2")

    hit: list[bool] = []

    def reached() -> bool:
        reps = _replicas(engine, name)
        new = [r for r in reps if r["recon.dev/config"] not in old]
        if phase == "waiting":
            hit.append(len(reps) == 3)
        elif phase == "draining":
            hit.append(len(reps) == 3 and any(_get_ok(int(r["recon.dev/port"])) for r in new))
        else:
            hit.append(len(reps) == 3 and any(r["recon.dev/replica"] == "1" for r in new))  # replica 1's successor
        return hit[-1]

    crash_apply(tmp_path, reached, env=env)
    assert hit and hit[-1], f"the apply never reached the phase {phase}"
    assert _healthy_now(engine, name) >= 2
    least = [99]

    def watch() -> None:
        least[0] = min(least[0], _healthy_now(engine, name))
        time.sleep(0.02)

    again = _watching(watch, tmp_path, env, "apply", "--auto-approve")
    assert least[0] >= 2, f"only {least[0]} healthy replicas at one moment"
    if successor == "broken":
        assert again.rc == 1 and "rolled back" in again.out, again.text
        assert {r["recon.dev/config"] for r in _replicas(engine, name)} == old and _healthy_now(engine, name) == 2
        spec("good", "v3")
        assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    else:
        assert again.rc == 0, again.text
    final = _replicas(engine, name)
    assert len(final) == 2 and not {r["recon.dev/config"] for r in final} & old and _healthy_now(engine, name) == 2
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0


class Load:
    """A bounded client on loopback: 50 requests a second to one port, each on a new connection, counting what
    failed (an error or a status other than 200) and which model versions answered."""

    def __init__(self, port: int) -> None:
        self.port, self.ok = port, 0
        self.failed: list[str] = []
        self.versions: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            due += 0.02
            try:
                status, body = _get(self.port)
            except OSError as exc:
                status, body = 0, str(exc)
            if status == 200:
                self.ok += 1
                self.versions.add(body.split()[-1])
            else:
                self.failed.append(f"{status} {body}")
            self._stop.wait(max(0.0, due - time.monotonic()))


@pytest.fixture(scope="module")
def haproxy(engine: docker_engine.Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Debian's HAProxy as an image on the test engine (what endpoint.image names, as it would haproxy:2.6)."""
    haproxy_image.build(engine, tmp_path_factory.mktemp("haproxy"))
    return haproxy_image.TAG


def test_a_stable_endpoint_answers_every_request_through_good_and_failed_rollouts(
        tmp_path: Path, engine: docker_engine.Engine, haproxy: str) -> None:
    """Issue 19 (1): every rollout moved a Model's replicas to the other ports, and a client of the documented
    ports saw 68 of 154 requests fail. With `endpoint`, one address stays; a replica joins it once healthy and
    leaves it (its requests finished) before it goes: 0 failed requests at 50 a second through a rolling update,
    a failed one, a restart, and the endpoint itself replaced; re-plans empty; the endpoint removed with it."""
    env = {"DOCKER_HOST": engine.host}
    docker_engine.build(engine, "recon-test/front:good", tmp_path / "good")
    docker_engine.build(engine, "recon-test/front:broken", tmp_path / "broken", status=500)
    port, front = free_block(4), free_block(1)
    endpoint = f"  endpoint: {{port: {front}, image: '{haproxy}'}}\n"

    def spec(image: str, version: str, extra: str = endpoint) -> None:
        _spec(tmp_path, "front", port, 2, version, image=f"recon-test/front:{image}", extra=extra)
        text = (tmp_path / "specs" / "front.yaml").read_text().replace("startTimeout: 10", "startTimeout: 3")
        (tmp_path / "specs" / "front.yaml").write_text(text)

    spec("good", "v1")
    plan = recon("plan", cwd=tmp_path, env=env)
    assert f"endpoint.address: (none) → 127.0.0.1:{front}" in plan.out, plan.text
    done = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert done.rc == 0 and f"endpoint 127.0.0.1:{front}" in done.out, done.text
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0
    assert _get(front) == (200, "ok v1\n")
    with Load(front) as load:
        time.sleep(0.5)
        spec("good", "v2")
        assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0  # replicas on the other ports now
        spec("broken", "v3")
        broken = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
        assert broken.rc == 1 and "rolled back" in broken.out, broken.text
        spec("good", "v2")
        restart = recon("do", "restart", "front", "--yes", cwd=tmp_path, env=env)
        assert restart.rc == 0, restart.text
        spec("good", "v2", endpoint.replace("}", ", drainTimeout: 20}"))  # the endpoint replaced on its port
        moved = recon("plan", cwd=tmp_path, env=env)
        assert "the endpoint to replace" in moved.out and "endpoint.drainTimeout: 30 → 20" in moved.out, moved.text
        assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
        time.sleep(0.5)
    assert not load.failed and load.ok > 100 and {"v1", "v2"} <= load.versions, (load.ok, load.failed[:5])
    assert "v3" not in load.versions
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0
    assert len(engine.docker("ps", "-q", "--filter", "label=recon.dev/spec=Model/front").split()) == 3

    [front_id] = engine.docker("ps", "-q", "--filter", "label=recon.dev/role=endpoint", "--filter",
                               "label=recon.dev/spec=Model/front").split()
    engine.docker("stop", front_id)  # stopped by hand: planned to run again, and made again under its name
    stopped = recon("plan", cwd=tmp_path, env=env)
    assert "endpoint: stopped → running" in stopped.out, stopped.text
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0 and _get(front)[0] == 200
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0

    spec("good", "v2", extra="")  # no endpoint: it goes, the replicas stay
    gone = recon("plan", cwd=tmp_path, env=env)
    assert "the endpoint to remove" in gone.out and f"endpoint.address: 127.0.0.1:{front} → (none)" in gone.out
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0
    assert len(_replicas(engine, "front")) == 2 and not engine.docker(
        "ps", "-aq", "--filter", "label=recon.dev/role=endpoint", "--filter", "label=recon.dev/spec=Model/front")


def test_an_apply_killed_behind_the_endpoint_loses_no_request(tmp_path: Path, engine: docker_engine.Engine,
                                                               haproxy: str) -> None:
    """Issue 19 (3) with the endpoint: kill -9 an apply while a broken successor waits, and while a good one has
    joined the endpoint beside the replica it replaces; the next apply takes out of the endpoint what it removes
    first. No request fails from the first kill to the end."""
    env = {"DOCKER_HOST": engine.host}
    docker_engine.build(engine, "recon-test/front:good", tmp_path / "good")
    docker_engine.build(engine, "recon-test/front:broken", tmp_path / "broken", status=500)
    port, front = free_block(4), free_block(1)

    def spec(image: str, version: str) -> None:
        _spec(tmp_path, "killed", port, 2, version, image=f"recon-test/front:{image}",
              extra=f"  endpoint: {{port: {front}, image: '{haproxy}'}}\n")

    spec("good", "v1")
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    old = {r["recon.dev/config"] for r in _replicas(engine, "killed")}
    hit: list[bool] = []

    def joined() -> bool:  # replica 1's good successor answers (so it joins, or has joined, the endpoint)
        hit.append(any(r["recon.dev/replica"] == "1" and r["recon.dev/config"] not in old
                       and _get_ok(int(r["recon.dev/port"])) for r in _replicas(engine, "killed")))
        return hit[-1]

    with Load(front) as load:
        spec("broken", "v2")
        crash_apply(tmp_path, lambda: len(_replicas(engine, "killed")) == 3, settle=0.3, env=env)
        spec("good", "v3")
        crash_apply(tmp_path, joined, settle=0.1, env=env)
        assert hit and hit[-1], "the apply never reached replica 1's successor"
        again = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
        assert again.rc == 0, again.text
        time.sleep(0.5)
    assert not load.failed and load.ok > 50 and "v3" in load.versions, (load.ok, load.failed[:5])
    assert len(_replicas(engine, "killed")) == 2
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0
    (tmp_path / "specs" / "killed.yaml").unlink()  # pruned: the endpoint goes with the replicas
    (tmp_path / "specs" / "hosts.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: here}\nspec:\n  hosts: [{name: me, root: ../me}]\n")
    pruned = recon("apply", "--prune", "--auto-approve", cwd=tmp_path, env=env)
    assert pruned.rc == 0 and "3 containers of Model/killed removed" in pruned.out, pruned.text
    assert not engine.docker("ps", "-aq", "--filter", "label=recon.dev/spec=Model/killed")


OPS_POLICY = """\
apiVersion: recon/v1
kind: Policy
metadata: {name: ops}
spec:
  environments:
    - {name: prod, match: {labels: {env: prod}}, confirm: true}
  rules:
    - name: capacity
      effect: deny
      when: {actions: [scale], field: {path: replicas, above: 4}}
      message: more than 4 replicas needs the capacity team
    - {name: on-call, effect: allow}
"""


def _started(engine: docker_engine.Engine, name: str) -> list[str]:
    ids = engine.docker("ps", "-q", "--filter", f"label=recon.dev/spec=Model/{name}").split()
    return sorted(engine.docker("inspect", "-f", "{{.State.StartedAt}}", i).strip() for i in ids)


def test_operational_actions_on_a_model_under_policy_confirmation_and_audit(tmp_path: Path,
                                                                           engine: docker_engine.Engine) -> None:
    """recon do health, logs, restart and scale on real containers: previewed with an id, a risky one in prod
    confirmed by it, a scale past the Policy's limit denied, a retried request id done once, a secret of the
    Model's environment masked in its logs, every action audited, and a scale shown as drift until applied back."""
    secret = "ops-api-key-" + str(time.time_ns())
    env = {"DOCKER_HOST": engine.host, "API_KEY": secret}
    port = free_block(12)
    docker_engine.model_context(tmp_path / "specs" / "model")
    command = ('  command: ["sh", "-c", "echo starting with key $API_KEY; echo serving $MODEL_VERSION; exec '
               '/bin/busybox httpd -f -p 127.0.0.1:$PORT -h /www"]\n')
    _spec(tmp_path, "ops", port, 2, "v1", extra=command)
    text = (tmp_path / "specs" / "ops.yaml").read_text().replace(
        "env: {MODEL_VERSION: v1}", "env: {MODEL_VERSION: v1, API_KEY: {valueFrom: {env: API_KEY}}}").replace(
        "metadata: {name: ops}", "metadata: {name: ops, labels: {env: prod}}")
    (tmp_path / "specs" / "ops.yaml").write_text(text)
    (tmp_path / "specs" / "policy.yaml").write_text(OPS_POLICY)
    planned = recon("plan", "--json", cwd=tmp_path, env=env)
    assert planned.rc == 0, planned.text
    assert recon("apply", "--confirm", json.loads(planned.out)["plan_id"], cwd=tmp_path, env=env).rc == 0

    # health and logs: not risky, no confirmation even in prod; the secret is masked
    health = recon("do", "health", "ops", "--json", cwd=tmp_path, env=env)
    got = json.loads(health.out)
    assert health.rc == 0 and got["ok"] and len(got["output"]) == 2, health.text
    assert all("healthy (http :" in line["text"] for line in got["output"])
    logs = recon("do", "logs", "Model/ops", "--tail", "5", cwd=tmp_path, env=env)
    assert logs.rc == 0 and "Action " in logs.err, logs.text
    assert logs.out.count("starting with key (secret API_KEY)") == 2 and "serving v1" in logs.out
    assert secret not in logs.text
    _follow_then_interrupt(tmp_path, env, "starting with key (secret API_KEY)", 2)

    # restart: risky, in prod: refused without the preview's id, nothing restarted
    before = _started(engine, "ops")
    refused = recon("do", "restart", "ops", cwd=tmp_path, env=env)
    assert refused.rc == 3 and "--confirm" in refused.err, refused.text
    action_id = refused.err.split("--confirm ")[1].split()[0].strip("()")
    assert f"Action {action_id}: restart Model/ops" in refused.err
    assert _started(engine, "ops") == before
    wrong = recon("do", "restart", "ops", "--confirm", "000000000000", cwd=tmp_path, env=env)
    assert wrong.rc == 3 and "confirms another action" in wrong.err
    done = recon("do", "restart", "ops", "--confirm", action_id, "--request-id", "inc-42", cwd=tmp_path, env=env)
    assert done.rc == 0 and "2 replicas restarted" in done.err, done.text
    restarted = _started(engine, "ops")
    assert len(restarted) == 2 and not set(restarted) & set(before)
    assert all(_get(port + i) == (200, "ok v1\n") for i in range(2))
    again = recon("do", "restart", "ops", "--confirm", action_id, "--request-id", "inc-42", cwd=tmp_path, env=env)
    assert again.rc == 0 and "request inc-42 was already done" in again.err, again.text
    assert _started(engine, "ops") == restarted

    # scale: a wrong type, and past the Policy's limit, do nothing
    bad = recon("do", "scale", "ops", "--replicas", "three", cwd=tmp_path, env=env)
    assert bad.rc == 1 and "scale --replicas 'three'" in bad.err and "Traceback" not in bad.err
    big = recon("do", "scale", "ops", "--replicas", "9", "--yes", cwd=tmp_path, env=env)
    assert big.rc == 3 and "capacity" in big.err and "more than 4 replicas" in big.err, big.text
    assert len(_replicas(engine, "ops")) == 2
    first = recon("do", "scale", "ops", "--replicas", "3", cwd=tmp_path, env=env)
    scale_id = first.err.split("--confirm ")[1].split()[0]
    assert "the spec says replicas: 2" in first.err
    scaled = recon("do", "scale", "ops", "--replicas", "3", "--confirm", scale_id, cwd=tmp_path, env=env)
    assert scaled.rc == 0 and "Live now differs from the specs" in scaled.err, scaled.text
    assert len(_replicas(engine, "ops")) == 3 and _get(port + 2) == (200, "ok v1\n")

    # the next plan shows it as drift; applied back, the plan is empty
    replan = json.loads(recon("plan", "--json", cwd=tmp_path, env=env).out)
    (change,) = [c for c in replan["changes"] if c["action"] != "noop"]
    assert change["drift"] and {"path": "replicas", "before": 3, "after": 2} in change["fields"]
    assert recon("apply", "--confirm", replan["plan_id"], cwd=tmp_path, env=env).rc == 0
    assert len(_replicas(engine, "ops")) == 2
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0

    # every action is in the audit log: who, what, parameters, preview id, result, time
    runs = json.loads(recon("audit", "--json", cwd=tmp_path, env=env).out)
    did = [r for r in runs if r.get("command") == "do"]
    assert {(r["plan_id"], r["outcome"]) for r in did} >= {(action_id, "ok"), (scale_id, "ok")}, did
    text = json.dumps(runs)
    assert secret not in text and '"replicas": 3' in text and "inc-42" in text


def _follow_then_interrupt(cwd: Path, env: dict[str, str], wanted: str, count: int) -> None:
    """`recon do logs --follow` prints every replica's lines as they come, until Ctrl-C (exit 130, audited)."""
    import signal

    from tests.conftest import RECON

    proc = subprocess.Popen([*RECON, "do", "logs", "ops", "--follow", "--tail", "3"], cwd=cwd,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while sum(wanted in line for line in seen) < count and time.monotonic() < deadline:
        seen.append(proc.stdout.readline())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert sum(wanted in line for line in seen) == count and proc.returncode == 130, (seen, err)
    assert env["API_KEY"] not in "".join(seen) + err
