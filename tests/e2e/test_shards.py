"""One plan and one apply over many runners (reconciler/shards.py): `recon plan --shard K/N`, `recon plan merge`,
`recon apply plan.json --shard K/N`, with real processes side by side, a real git repository and local hosts.
Over SSH zones in network namespaces and a shared PostgreSQL: tests/e2e/test_shards_zones.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RECON, Outcome, crash_apply, recon
from tests.e2e.test_state_backend import pg, shared  # noqa: F401  (the PostgreSQL server fixture)
from tests.e2e.test_trusted_policy import _git

HOSTS = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": "c", "c2": "c", "c3": "c"}


def group(name: str, hosts: dict[str, str]) -> str:
    items = "\n".join(f"    - {{name: {h}, root: ../roots/{h}, labels: {{zone: {z}}}}}" for h, z in hosts.items())
    return f"apiVersion: recon/v1\nkind: HostGroup\nmetadata: {{name: {name}}}\nspec:\n  hosts:\n{items}\n"


def state(name: str, grp: str, resources: str, meta: str = "") -> str:
    return (f"apiVersion: recon/v1\nkind: HostState\nmetadata:\n  name: {name}\n{meta}spec:\n  group: {grp}\n"
            f"  resources:\n" + "".join(f"    {line}\n" for line in resources.strip().splitlines()))


FILES = """\
- {type: file, path: /etc/app.conf, content: "workers = 4\\n"}
- {type: directory, path: /srv/data}
"""


def repo(tmp_path: Path, files: dict[str, str], name: str = "repo") -> Path:
    root = tmp_path / name
    (root / "specs").mkdir(parents=True)
    for h in HOSTS:
        (root / "roots" / h).mkdir(parents=True)
    for f, text in files.items():
        (root / "specs" / f).write_text(text)
    (root / ".gitignore").write_text("roots/\n.recon/\n*.json\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", f"the specs of {name}")
    return root


def plan_shards(cwd: Path, count: int, *extra: str, env: dict[str, str] | None = None) -> list[Outcome]:
    """Every shard planned at once, each by its own process, as a CI matrix would."""
    import os

    procs = [subprocess.Popen([*RECON, "plan", "--shard", f"{k}/{count}", *extra, "--out", f"part{k}.json"],
                              cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(1, count + 1)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(Outcome(p.returncode, stdout, stderr))
    return out


def changes(path: Path) -> list[dict[str, object]]:
    return [c for c in json.loads(path.read_text())["changes"] if c["action"] != "noop"]


def test_shards_planned_apart_merge_into_the_whole_plan_and_each_runner_applies_its_part(tmp_path: Path) -> None:
    cwd = repo(tmp_path, {"group.yaml": group("fleet", HOSTS), "app.yaml": state("app", "fleet", FILES)})
    whole = json.loads(recon("plan", "--json", cwd=cwd).out)
    for got in plan_shards(cwd, 3):
        assert got.rc == 0 and "merge every shard's fragment" in got.out, got.text
    fragments = [json.loads((cwd / f"part{k}.json").read_text()) for k in (1, 2, 3)]
    mine = [set(f["shards"]["parts"][str(k)]) for k, f in enumerate(fragments, 1)]
    assert set().union(*mine) == set(HOSTS) and sum(map(len, mine)) == len(HOSTS)  # a partition: each once
    assert sorted(map(len, mine)) == [2, 2, 3]  # balanced by weight
    for k, f in enumerate(fragments):
        assert {c["target"] for c in f["changes"]} == mine[k]
    again = plan_shards(cwd, 3)  # deterministic: another run splits the same way
    assert [json.loads((cwd / f"part{k}.json").read_text())["shards"]["parts"] for k in (1, 2, 3)] == \
        [f["shards"]["parts"] for f in fragments], again

    merged = recon("plan", "merge", "part3.json", "part1.json", "part2.json", "--out", "plan.json", cwd=cwd)
    assert merged.rc == 0, merged.text
    plan = json.loads((cwd / "plan.json").read_text())
    assert plan["plan_id"] == whole["plan_id"]  # one binding plan: the id an unsharded plan of it has
    assert [c["id"] for c in plan["changes"]] == [c["id"] for c in whole["changes"]]  # and its order
    assert "Merged from 3 shards (targets per shard: 3, 2, 2)" in merged.out
    assert "recon apply plan.json --shard K/3" in merged.out

    assert recon("apply", "plan.json", "--shard", "2/3", cwd=cwd).rc == 0
    shown = recon("show", "plan.json", cwd=cwd)
    assert "Applied: 1 of 3 parts" in shown.out and "part 1/3: 6 changes, not applied" in shown.out, shown.text
    assert "✓ part 2/3: 4 changes, ok" in shown.out
    for k in (1, 3):
        got = recon("apply", "plan.json", "--shard", f"{k}/3", cwd=cwd)
        assert got.rc == 0 and "Apply complete" in got.out, got.text
    assert "Applied: 3 of 3 parts" in recon("show", "plan.json", cwd=cwd).out
    table = recon("show", "plan.json", "--markdown", cwd=cwd).out
    assert "**Applied: 3 of 3 parts**" in table and "| 1/3 | 6 | ✅ ok |" in table, table
    for h in HOSTS:
        assert (cwd / "roots" / h / "etc" / "app.conf").read_text() == "workers = 4\n"
    again_part = recon("apply", "plan.json", "--shard", "1/3", cwd=cwd)
    assert again_part.rc == 0 and "part 1/3 of plan" in again_part.out and "already applied" in again_part.out
    whole_again = recon("apply", "plan.json", cwd=cwd)
    assert whole_again.rc == 0 and "(each of its 3 parts) was already applied" in whole_again.out, whole_again.text
    runs = json.loads(recon("audit", "--json", "--plan", plan["plan_id"], cwd=cwd).out)
    assert sorted(r["part"] for r in runs if r["command"] == "apply") == ["1/3", "2/3", "3/3"]
    assert "part 2/3" in recon("audit", cwd=cwd).out
    for got in plan_shards(cwd, 3):  # re-planned: every shard empty
        assert got.rc == 0 and "No changes." in got.out, got.text
    assert "No changes." in recon("plan", cwd=cwd).out


def test_shard_by_a_label_gives_each_zone_to_one_runner_and_drift_is_checked_per_shard(tmp_path: Path) -> None:
    cwd = repo(tmp_path, {"group.yaml": group("fleet", HOSTS), "app.yaml": state("app", "fleet", FILES)})
    for got in plan_shards(cwd, 3, "--shard-by", "zone"):
        assert got.rc == 0 and "by zone" in got.out, got.text
    for k, zone in enumerate("abc", 1):  # sorted values, one per shard
        assert {c["target"] for c in changes(cwd / f"part{k}.json")} == {h for h, z in HOSTS.items() if z == zone}
    two = plan_shards(cwd, 2, "--shard-by", "zone")  # fewer shards than values: in turn
    assert all(g.rc == 0 for g in two)
    assert {c["target"] for c in changes(cwd / "part1.json")} == {"a1", "a2", "c1", "c2", "c3"}
    assert recon("plan", "merge", "part1.json", "part2.json", "--out", "plan.json", cwd=cwd).rc == 0
    assert recon("apply", "plan.json", "--shard", "1/2", cwd=cwd).rc == 0
    assert recon("apply", "plan.json", "--shard", "2/2", cwd=cwd).rc == 0
    (cwd / "roots" / "b2" / "etc" / "app.conf").write_text("workers = 1\n")  # drift in zone b
    clean = recon("drift", "--shard", "1/3", "--shard-by", "zone", cwd=cwd)
    assert clean.rc == 0 and "Shard 1/3 by zone: 2 targets of 7." in clean.out, clean.text
    drifted = recon("drift", "--shard", "2/3", "--shard-by", "zone", cwd=cwd)
    assert drifted.rc == 2 and "app.conf@b2" in drifted.out.replace(" @ ", "@"), drifted.text


def test_a_dependency_across_targets_keeps_both_in_one_shard(tmp_path: Path) -> None:
    db = {"d1": "x"}
    web = {h: "y" for h in ("w1", "w2", "w3", "w4")}
    misc = {h: "z" for h in ("a1", "a2", "b1", "b2", "c1", "c2")}
    files = {"db.yaml": group("db", db), "web.yaml": group("web", web), "misc.yaml": group("misc", misc),
             "schema.yaml": state("schema", "db", FILES),
             "app.yaml": state("app", "web", FILES, "  dependsOn: [HostState/schema]\n"),
             "other.yaml": state("other", "misc", FILES)}
    cwd = repo(tmp_path, files)
    for h in ("d1", *web):
        (cwd / "roots" / h).mkdir()
    for got in plan_shards(cwd, 3):
        assert got.rc == 0, got.text
    parts = json.loads((cwd / "part1.json").read_text())["shards"]["parts"]
    together = next(set(ts) for ts in parts.values() if "d1" in ts)
    assert {"w1", "w2", "w3", "w4"} <= together  # the app hosts wait for the schema host: one runner
    refused = recon("plan", "--shard", "1/3", "--shard-by", "zone", cwd=cwd)
    assert refused.rc == 1 and "HostState/app on w1 (zone=y) depends on HostState/schema on d1 (zone=x)" in \
        refused.err, refused.text
    assert "Traceback" not in refused.err
    assert recon("plan", "merge", "part1.json", "part2.json", "part3.json", "--out", "plan.json", cwd=cwd).rc == 0
    for k in (1, 2, 3):
        assert recon("apply", "plan.json", "--shard", f"{k}/3", cwd=cwd).rc == 0
    assert "No changes." in recon("plan", cwd=cwd).out


@pytest.mark.parametrize("args, says", [
    (("plan", "--shard", "3/2"), "--shard 3/2: shard 3 of 2 does not exist; shards are numbered 1 to 2"),
    (("plan", "--shard", "0/0"), "--shard 0/0: the number of shards must be 1 to 1000"),
    (("plan", "--shard", "two"), "give the shard as K/N, e.g. 1/3"),
    (("plan", "--shard", "1/2", "--shard-by", "rack"), "--shard-by rack: no target has the label 'rack'"),
    (("plan", "--shard-by", "zone"), "--shard-by goes with --shard K/N"),
    (("apply", "part.json", "--shard", "1/2"), "part.json: no such plan file"),
])
def test_bad_shard_options_are_one_clear_message(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    cwd = repo(tmp_path, {"group.yaml": group("fleet", HOSTS), "app.yaml": state("app", "fleet", FILES)})
    got = recon(*args, cwd=cwd)
    assert got.rc == 1 and says in got.err and "Traceback" not in got.err, got.text
    assert not any((cwd / "roots" / h / "etc").exists() for h in HOSTS)


def test_merge_refuses_fragments_that_do_not_belong_together(tmp_path: Path) -> None:
    files = {"group.yaml": group("fleet", HOSTS), "app.yaml": state("app", "fleet", FILES)}
    cwd = repo(tmp_path, files)
    other = repo(tmp_path, files, "other")
    assert all(g.rc == 0 for g in plan_shards(cwd, 3))
    assert all(g.rc == 0 for g in plan_shards(other, 3))

    def merge(*names: str | Path) -> Outcome:
        return recon("plan", "merge", *map(str, names), "--out", "plan.json", cwd=cwd)

    for names, says in [
        (("part1.json", "part2.json"), "shard 3/3 missing; merge needs all 3 fragments"),
        (("part1.json", "part2.json", "part2.json", "part3.json"), "shard 2/3 is given twice"),
        (("part1.json", "part2.json", other / "part3.json"), "was planned in another repository"),
    ]:
        got = merge(*names)
        assert got.rc == 1 and says in got.err and "Traceback" not in got.err, (names, got.text)
    assert recon("plan", "--shard", "3/3", "--shard-by", "zone", "--out", "zone3.json", cwd=cwd).rc == 0
    got = merge("part1.json", "part2.json", "zone3.json")
    assert got.rc == 1 and "merge the shards of one split" in got.err, got.text
    # a fragment claiming a change of another shard's target (edited, or planned from other specs)
    forged = json.loads((cwd / "part1.json").read_text())
    stolen = json.loads((cwd / "part2.json").read_text())["changes"][0]
    forged["changes"].append(stolen)
    (cwd / "forged.json").write_text(json.dumps(forged))
    got = merge("forged.json", "part2.json", "part3.json")
    assert got.rc == 1 and f"a change of {stolen['target']}, a target of another shard" in got.err, got.text
    # another commit, and other specs
    (cwd / "specs" / "app.yaml").write_text(state("app", "fleet", FILES.replace("workers = 4", "workers = 8")))
    _git(cwd, "commit", "-q", "-am", "more workers")
    assert recon("plan", "--shard", "3/3", "--out", "newer.json", cwd=cwd).rc == 0
    got = merge("part1.json", "part2.json", "newer.json")
    assert got.rc == 1 and "was planned at commit" in got.err and "plan every shard from one commit" in got.err
    # applying: a fragment, or a merged plan with the wrong count
    got = recon("apply", "part1.json", cwd=cwd)
    assert got.rc == 1 and "is the fragment of shard 1/3; merge the fragments" in got.err, got.text
    _git(cwd, "reset", "-q", "--hard", "HEAD~1")
    assert merge("part1.json", "part2.json", "part3.json").rc == 0
    got = recon("apply", "plan.json", "--shard", "1/2", cwd=cwd)
    assert got.rc == 1 and "was split into 3 shards; give K/3" in got.err, got.text
    assert not any((cwd / "roots" / h / "etc").exists() for h in HOSTS)


def test_a_runner_killed_mid_part_keeps_its_targets_locked_until_the_lease_ends_and_a_rerun_converges(
        tmp_path: Path, pg) -> None:  # noqa: F811
    env = shared(pg.create_db("killed_part"))
    slow = FILES + "- {type: command, id: slow, run: 'sleep 4; touch done', creates: /done}\n"
    cwd = repo(tmp_path, {"group.yaml": group("fleet", HOSTS), "app.yaml": state("app", "fleet", slow)})
    (cwd / "recon.yaml").write_text("state:\n  backend: postgres\n  dsn: {env: RECON_STATE_DSN}\n  lease: 5\n")
    assert all(g.rc == 0 for g in plan_shards(cwd, 2, env=env))
    assert recon("plan", "merge", "part1.json", "part2.json", "--out", "plan.json", cwd=cwd, env=env).rc == 0
    one = set(json.loads((cwd / "plan.json").read_text())["shards"]["parts"]["1"])

    def held() -> bool:
        return recon("lock", "list", cwd=cwd, env=env).out.count("held by") >= len(one)

    crash_apply(cwd, held, settle=0.5, env=env, args=("apply", "plan.json", "--shard", "1/2"))
    listed = recon("lock", "list", cwd=cwd, env=env).out
    assert listed.count("held by") == len(one), listed  # the killed runner's targets, and only those
    refused = recon("apply", "plan.json", "--shard", "1/2", cwd=cwd, env=env)  # until its lease ends
    assert refused.rc == 1 and "is locked by" in refused.err, refused.text
    other = recon("apply", "plan.json", "--shard", "2/2", cwd=cwd, env=env, timeout=60)  # other targets: not held
    assert other.rc == 0 and "Waiting for the lock" not in other.out, other.text
    states = recon("show", "plan.json", cwd=cwd, env=env).out
    assert "part 1/2: 12 changes, unfinished" in states, states  # running, or killed: its lock tells
    # the re-run: planned, merged and applied again (what the killed part did moved its targets: its plan is stale)
    assert all(g.rc == 0 for g in plan_shards(cwd, 2, env=env))
    assert recon("plan", "merge", "part1.json", "part2.json", "--out", "plan.json", cwd=cwd, env=env).rc == 0
    rerun = recon("apply", "plan.json", "--shard", "1/2", "--lock-timeout", "30s", cwd=cwd, env=env, timeout=90)
    assert rerun.rc == 0 and "Apply complete" in rerun.out, rerun.text
    assert recon("apply", "plan.json", "--shard", "2/2", cwd=cwd, env=env).rc == 0  # nothing there: at once
    states = recon("show", "plan.json", cwd=cwd, env=env).out
    assert "Applied: 2 of 2 parts" in states and "part 2/2: no changes" in states, states
    assert "No changes." in recon("plan", cwd=cwd, env=env).out


def test_the_kubernetes_drift_cronjob_validates_offline_applies_with_kubectl_and_its_command_covers_every_shard(
        tmp_path: Path) -> None:
    """examples/kubernetes: the Indexed Job of the nightly drift check, validated against Kubernetes' own schemas
    (offline), applied by a stock kubectl to the test API server, and its container's command run as each index's
    pod would run it (JOB_COMPLETION_INDEX 0..N-1): the shards it checks are every target, each once."""
    import os
    import shutil

    import kubernetes_validate
    from kubernetes_validate.utils import latest_version
    from ruamel.yaml import YAML

    from tests.conftest import ROOT
    from tests.peers import kube_api

    example = ROOT / "examples" / "kubernetes" / "drift-cronjob.yaml"
    cron = YAML(typ="safe").load(example.read_text())
    kubernetes_validate.validate(cron, latest_version(), strict=True)
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"] == 3
    [container] = job["template"]["spec"]["containers"]
    assert f'/{job["completions"]}"' in container["args"][0]  # the N of --shard is the number of indexes

    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: run scripts/setup (Debian's kubectl)"
    peer = kube_api.start()
    try:
        config = str(peer.kubeconfig(tmp_path / "kubeconfig"))
        applied = subprocess.run([kubectl, "--kubeconfig", config, "apply", "--server-side", "--validate=false",
                                  "-f", str(example)], capture_output=True, text=True, timeout=60, check=False)
        assert applied.returncode == 0 and "cronjob.batch/recon-drift serverside-applied" in applied.stdout, \
            applied.stdout + applied.stderr
        got = subprocess.run([kubectl, "--kubeconfig", config, "get", "cronjob", "recon-drift", "-o", "json"],
                             capture_output=True, text=True, timeout=60, check=True)
        stored = json.loads(got.stdout)["spec"]["jobTemplate"]["spec"]
        assert stored["completionMode"] == "Indexed" and stored["template"]["spec"]["containers"][0]["args"] == \
            container["args"]
    finally:
        peer.stop()

    cwd = repo(tmp_path, {"group.yaml": group("fleet", HOSTS), "app.yaml": state("app", "fleet", FILES)})
    env = {**os.environ, "PATH": f"{Path(RECON[0]).parent}:{os.environ['PATH']}", "COLUMNS": "200"}
    checked = 0
    for index in range(job["completions"]):
        pod = subprocess.run([*container["command"], container["args"][0]], cwd=cwd, capture_output=True, text=True,
                             env={**env, "JOB_COMPLETION_INDEX": str(index)}, timeout=120, check=False)
        found = re.search(rf"Shard {index + 1}/3: (\d+) targets? of {len(HOSTS)}\.", pod.stdout)
        assert pod.returncode == 2 and found, pod.stdout + pod.stderr  # never applied here: all pending
        checked += int(found[1])
    assert checked == len(HOSTS)
