"""Shards across network zones, as a platform team runs them: three zones of real OpenSSH hosts, each a
network of its own (tests/peers/fleet.py, one control namespace per zone); the runner of a zone runs in that
zone's namespace, so it reaches only its zone's hosts, and the shared PostgreSQL (by its Unix socket). Shards are
planned in parallel by zone, merged, and applied per zone; maxFailures of a rolling HostState is counted across
the zones. The fleets and the server must start: a missing sshd or postgres fails these tests."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RECON, Outcome, recon
from tests.e2e.test_ssh_fleet import ROLL as SSH_ROLL
from tests.e2e.test_trusted_policy import _git
from tests.peers import fleet as fleetmod
from tests.peers import postgres

ZONES = "abc"


@pytest.fixture(scope="module")
def zones() -> Iterator[dict[str, fleetmod.Fleet]]:
    started: dict[str, fleetmod.Fleet] = {}
    try:
        for n, zone in enumerate(ZONES, 1):
            key = started["a"].key if started else None
            started[zone] = fleetmod.start(2, f"rz{os.getpid() % 10000}{zone}", f"10.231.{n}", key, names=zone)
        yield started
    finally:
        for f in started.values():
            f.stop()


@pytest.fixture(scope="module")
def pg() -> Iterator[postgres.Postgres]:
    server = postgres.start()
    yield server
    server.stop()


ROLL = SSH_ROLL.replace("group: web", "group: fleet").replace("batch: 2, maxFailures: MAXF", "batch: 1, maxFailures: 0")


def project(tmp_path: Path, zones: dict[str, fleetmod.Fleet], failing: str) -> Path:
    cwd = tmp_path / "repo"
    (cwd / "specs").mkdir(parents=True)
    known = cwd / "known_hosts"
    known.write_text("".join(f.known_hosts.read_text() for f in zones.values()))
    hosts = "".join(f"    - {{name: {h.name}, address: {h.address}, labels: {{zone: {z}}}}}\n"
                    for z, f in zones.items() for h in f.hosts)
    (cwd / "specs" / "group.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: fleet}\nspec:\n  connection: ssh\n  ssh:\n"
        f"    user: root\n    identity: {{file: {zones['a'].key}}}\n    knownHosts: ../known_hosts\n"
        f"    connectTimeout: 3\n  hosts:\n{hosts}")
    (cwd / "specs" / "roll.yaml").write_text(ROLL.replace("FAILING", failing))
    (cwd / ".gitignore").write_text(".recon/\n*.json\n")
    _git(cwd, "init", "-q", "-b", "main")
    _git(cwd, "add", "-A")
    _git(cwd, "commit", "-q", "-m", "the zones")
    return cwd


def in_zones(zones: dict[str, fleetmod.Fleet], cwd: Path, env: dict[str, str], *args: str) -> dict[str, Outcome]:
    """`recon ARGS` run by every zone's runner at once, inside its zone; {K} in the args is its shard number."""
    procs = {z: subprocess.Popen([*f.exec_prefix, *RECON, *(a.replace("{K}", str(k)) for a in args)], cwd=cwd,
                                 env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, (z, f) in enumerate(zones.items(), 1)}
    out = {}
    for z, p in procs.items():
        stdout, stderr = p.communicate(timeout=180)
        out[z] = Outcome(p.returncode, stdout, stderr)
    return out


def test_zones_plan_in_parallel_merge_apply_and_one_zones_failure_stops_every_zones_next_batch(
        zones: dict[str, fleetmod.Fleet], pg: postgres.Postgres, tmp_path: Path) -> None:
    pg.create_db("zones")
    env = {"RECON_STATE_BACKEND": "postgres",
           "RECON_STATE_DSN": f"postgresql://recon:{pg.password}@/zones?host={pg.root}&port={pg.port}"}
    for f in zones.values():
        for i in range(len(f.hosts)):
            f.ssh(i, "rm -rf /srv/roll")
    cwd = project(tmp_path, zones, "a1")
    planned = in_zones(zones, cwd, env, "plan", "--shard", "{K}/3", "--shard-by", "zone", "--out", "part{K}.json")
    for z, got in planned.items():
        assert got.rc == 0 and f"Shard {ZONES.index(z) + 1}/3 by zone: 2 targets of 6" in got.out, got.text
        assert {c["target"] for c in json.loads((cwd / f"part{ZONES.index(z) + 1}.json").read_text())["changes"]} \
            == {f"{z}1", f"{z}2"}
    # a zone's runner reaches only its zone: zone a's cannot plan zone b
    wrong = recon("plan", "--shard", "2/3", "--shard-by", "zone", cwd=cwd, env=env, prefix=zones["a"].exec_prefix)
    assert wrong.rc != 0 and "b1" in wrong.err and "Traceback" not in wrong.err, wrong.text
    merged = recon("plan", "merge", "part1.json", "part2.json", "part3.json", "--out", "plan.json", cwd=cwd, env=env)
    assert merged.rc == 0, merged.text

    first = recon("apply", "plan.json", "--shard", "1/3", cwd=cwd, env=env, prefix=zones["a"].exec_prefix)
    assert first.rc == 1 and "check failed on a1" in first.out, first.text
    assert "stopped after 1 failed targets (maxFailures 0)" in first.out  # a2: the next batch, not started
    for z, k in (("b", 2), ("c", 3)):  # after zone a's failure, no batch starts in the other zones
        got = recon("apply", "plan.json", "--shard", f"{k}/3", cwd=cwd, env=env, prefix=zones[z].exec_prefix)
        assert got.rc == 1 and "stopped after 1 failed targets (maxFailures 0)" in got.out, got.text
        for i in range(2):
            assert zones[z].ssh(i, "test -e /srv/roll/version || echo untouched").strip() == "untouched"
    shown = recon("show", "plan.json", cwd=cwd, env=env).out
    assert "Applied: 0 of 3 parts" in shown and shown.count(", failed") == 3, shown

    # fixed: planned, merged and applied again, every zone at once; then each shard plans empty
    (cwd / "specs" / "roll.yaml").write_text(ROLL.replace("FAILING", "nohost"))
    _git(cwd, "commit", "-q", "-am", "the check passes")
    planned = in_zones(zones, cwd, env, "plan", "--shard", "{K}/3", "--shard-by", "zone", "--out", "part{K}.json")
    assert all(got.rc == 0 for got in planned.values()), planned
    assert recon("plan", "merge", "part1.json", "part2.json", "part3.json", "--out", "plan.json", cwd=cwd,
                 env=env).rc == 0
    applied = in_zones(zones, cwd, env, "apply", "plan.json", "--shard", "{K}/3")
    assert all(got.rc == 0 and "Apply complete" in got.out for got in applied.values()), applied
    assert "Applied: 3 of 3 parts" in recon("show", "plan.json", cwd=cwd, env=env).out
    again = in_zones(zones, cwd, env, "plan", "--shard", "{K}/3", "--shard-by", "zone", "--detailed-exitcode")
    assert all(got.rc == 0 and "No changes." in got.out for got in again.values()), again
    for f in zones.values():
        for i in range(2):
            assert f.ssh(i, "cat /srv/roll/version").strip() == "v2"
