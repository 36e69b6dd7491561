"""End to end over SSH: real OpenSSH hosts in network namespaces (tests/peers/fleet.py), recon run
from the fleet's control namespace. The fleet must start: a missing sshd fails these tests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RECON, ROOT, SERVED, Outcome, recon, served, start_planner, warm_env
from tests.peers import fleet as fleetmod

HOSTS = 5


@pytest.fixture(scope="module")
def fleet() -> Iterator[fleetmod.Fleet]:
    f = fleetmod.start(HOSTS)
    yield f
    f.stop()


def group_yaml(f: fleetmod.Fleet, hosts: list[fleetmod.Host] | None = None, known: Path | None = None,
               key: Path | None = None, extra: str = "") -> str:
    items = "\n".join(f"    - {{name: {h.name}, address: {h.address}}}" for h in (hosts or f.hosts))
    return textwrap.dedent(f"""\
        apiVersion: recon/v1
        kind: HostGroup
        metadata: {{name: web}}
        spec:
          connection: ssh
          ssh:
            user: root
            identity: {{file: {key or f.key}}}
            knownHosts: {known or f.known_hosts}
            connectTimeout: 3
          hosts:
        """).replace("connectTimeout: 3\n", f"connectTimeout: 3{extra}\n") + items + "\n"


STATE = """\
apiVersion: recon/v1
kind: HostState
metadata: {name: site}
spec:
  group: web
  resources:
    - type: directory
      path: /srv/www
      mode: "0755"
    - type: file
      path: /srv/www/index.html
      content: "<h1>hello from recon</h1>\\n"
      mode: "0644"
      notify: [reload]
    - type: file
      path: /etc/app/app.conf
      content: "workers = 4\\n"
      mode: "0600"
    - type: command
      id: reload
      run: date > /srv/www/reloaded
      onlyWhenNotified: true
    - type: command
      id: init
      run: touch /srv/www/.initialised
      creates: /srv/www/.initialised
"""


def project(tmp_path: Path, group: str, state: str = STATE) -> Path:
    specs = tmp_path / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    (specs / "group.yaml").write_text(group)
    (specs / "site.yaml").write_text(state)
    return tmp_path


def run(f: fleetmod.Fleet, cwd: Path, *args: str) -> Outcome:
    return recon(*args, cwd=cwd, prefix=f.exec_prefix)


def pending(got: Outcome) -> set[str]:
    return {c["id"] for c in json.loads(got.out)["changes"] if c["action"] != "noop"}


def _log_sizes(f: fleetmod.Fleet) -> list[int]:
    return [(h.dir / "sshd.log").stat().st_size for h in f.hosts]


def _log_since(f: fleetmod.Fleet, sizes: list[int]) -> list[str]:
    return [(h.dir / "sshd.log").read_bytes()[n:].decode(errors="replace") for h, n in zip(f.hosts, sizes, strict=True)]


def test_plan_apply_replan_drift_on_one_host(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    cwd = project(tmp_path, group_yaml(fleet))
    sizes = _log_sizes(fleet)
    got = run(fleet, cwd, "plan", "--json", "--detailed-exitcode")
    assert got.rc == 2, got.text
    assert len(pending(got)) == 5 * HOSTS  # init runs, reload is notified by index.html
    # one connection and one session channel per host for a whole plan
    for log in _log_since(fleet, sizes):
        assert log.count("Accepted publickey for root") == 1, log
        assert len(re.findall(r"Starting session: command", log)) == 1, log

    sizes = _log_sizes(fleet)
    got = run(fleet, cwd, "apply", "--auto-approve")
    assert got.rc == 0, got.text
    assert f"Apply complete: {5 * HOSTS} succeeded, 0 failed" in got.out
    # issue 16: two session channels per host, the plan's read and one change script that reports the state after
    # it (no re-read before it: the plan was read just now under the apply's locks; none after it)
    for log in _log_since(fleet, sizes):
        assert len(re.findall(r"Starting session: command", log)) == 2, log
    for i in range(HOSTS):
        assert fleet.ssh(i, "cat /srv/www/index.html") == "<h1>hello from recon</h1>\n"
        assert fleet.ssh(i, "stat -c %a /etc/app/app.conf").strip() == "600"
        assert fleet.ssh(i, "test -e /srv/www/reloaded && test -e /srv/www/.initialised && echo ok").strip() == "ok"
    got = run(fleet, cwd, "plan", "--detailed-exitcode")
    assert got.rc == 0, got.text
    assert "No changes." in got.out

    fleet.ssh(2, "echo 'workers = 64' > /etc/app/app.conf")
    got = run(fleet, cwd, "plan", "--json", "--detailed-exitcode", "--out", "plan.json")
    assert got.rc == 2
    assert pending(got) == {f"HostState/site/file:/etc/app/app.conf@{fleet.hosts[2].name}"}
    sizes = _log_sizes(fleet)
    assert run(fleet, cwd, "apply", "plan.json").rc == 0
    # a saved plan: read again before it is carried out (its plan was read by another run), then one change script
    sessions = [len(re.findall(r"Starting session: command", log)) for log in _log_since(fleet, sizes)]
    assert sessions == [0, 0, 2, 0, 0], sessions  # hosts without changes: untouched
    assert fleet.ssh(2, "cat /etc/app/app.conf") == "workers = 4\n"
    assert run(fleet, cwd, "plan", "--detailed-exitcode").rc == 0


def test_fleet_example_on_the_test_fleet(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    """examples/fleet as shipped, with only its HostGroup pointed at three hosts of the test fleet."""
    shutil.copytree(ROOT / "examples" / "fleet", tmp_path / "specs")
    hosts = "\n".join(f"    - {{name: web{i + 1}, address: {h.address}}}" for i, h in enumerate(fleet.hosts[:3]))
    group = group_yaml(fleet, fleet.hosts[:3]).replace("name: web}", "name: web}")
    group = group.split("  hosts:\n")[0] + "  hosts:\n" + hosts + "\n"
    (tmp_path / "specs" / "hosts.yaml").write_text(group)
    got = run(fleet, tmp_path, "plan", "--detailed-exitcode")
    assert got.rc == 2, got.text
    assert "@ web1, web2, web3 (3 targets)" in got.out  # identical changes are shown once
    assert run(fleet, tmp_path, "apply", "--auto-approve").rc == 0
    assert fleet.ssh(1, "cat /srv/www/index.html") == (ROOT / "examples/fleet/files/index.html").read_text()
    assert fleet.ssh(2, "stat -c %a /etc/web/site.conf").strip() == "640"
    assert run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0


ROLL = """\
apiVersion: recon/v1
kind: HostState
metadata: {name: roll}
spec:
  group: web
  strategy: {batch: 2, maxFailures: MAXF}
  resources:
    - type: file
      path: /srv/roll/version
      content: "v2\\n"
    - type: command
      id: check
      run: 'case "$(hostname)" in FAILING) echo "check failed on $(hostname)" >&2; exit 1;; esac; touch /srv/roll/ok'
      creates: /srv/roll/ok
"""


@pytest.mark.parametrize(("max_failures", "failing", "done", "failed", "skipped"), [
    (0, "host2", {"host1"}, {"host2"}, {"host3", "host4", "host5"}),
    (1, "host1|host3", {"host2", "host4"}, {"host1", "host3"}, {"host5"}),
])
def test_rolling_batches_stop_after_max_failures(
    fleet: fleetmod.Fleet, tmp_path: Path, max_failures: int, failing: str, done: set[str], failed: set[str],
    skipped: set[str],
) -> None:
    for i in range(HOSTS):
        fleet.ssh(i, "rm -rf /srv/roll")
    state = ROLL.replace("MAXF", str(max_failures)).replace("FAILING", failing)
    cwd = project(tmp_path, group_yaml(fleet), state)
    got = run(fleet, cwd, "apply", "--auto-approve")
    assert got.rc == 1, got.text
    assert "HostState/roll: batch 1/3: host1, host2" in got.out
    for name in done:
        assert f"HostState/roll/command:check@{name}" in got.out
        assert fleet.ssh(int(name[-1]) - 1, "cat /srv/roll/ok && echo ok").strip() == "ok"
    for name in failed:
        assert re.search(rf"✗ HostState/roll/command:check@{name}\n\s+exit 1: check failed on {name}", got.out)
    for name in skipped:
        assert re.search(rf"✗ HostState/roll/file:/srv/roll/version@{name}\n\s+skipped: the rollout of HostState/roll "
                         rf"stopped after \d failed targets \(maxFailures {max_failures}\)", got.out), got.out
        assert fleet.ssh(int(name[-1]) - 1, "test -e /srv/roll/version || echo untouched").strip() == "untouched"
    journal = next((cwd / ".recon" / "journal").glob("*.jsonl")).read_text()
    assert '"event": "batch"' in journal
    # fixed: a re-run finishes the rollout and converges
    (cwd / "specs" / "site.yaml").write_text(ROLL.replace("MAXF", "0").replace("FAILING", "nohost"))
    assert run(fleet, cwd, "apply", "--auto-approve").rc == 0
    assert run(fleet, cwd, "plan", "--detailed-exitcode").rc == 0


INIT_SCRIPT = r"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          demo
# Required-Start:    $remote_fs
# Required-Stop:     $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: a System V init script, as a package would install it
### END INIT INFO
P=/run/demo.pid
case "$1" in
  start) start-stop-daemon --start --oknodo --quiet --background --make-pidfile --pidfile $P \
           --exec /bin/sleep -- 100000; echo "$(hostname) demo started" >> /var/log/demo.log ;;
  stop) start-stop-daemon --stop --oknodo --quiet --pidfile $P --remove-pidfile --retry 5 ;;
  restart) "$0" stop; "$0" start; echo restarted >> /run/demo.restarts ;;
  status) start-stop-daemon --status --pidfile $P ;;
  *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
"""

SERVICE = """\
apiVersion: recon/v1
kind: HostState
metadata: {name: demo}
spec:
  group: web
  resources:
    - type: file
      path: /etc/demo.conf
      content: "level = LEVEL\\n"
      notify: [demo]
    - type: service
      name: demo
      state: running
      enabled: true
"""


def test_service_running_enabled_restarted_when_notified(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    for i in range(HOSTS):
        fleet.ssh(i, f"cat > /etc/init.d/demo <<'EOF'\n{INIT_SCRIPT}EOF\nchmod +x /etc/init.d/demo; "
                     "rm -f /etc/demo.conf /run/demo.restarts /etc/rc?.d/[SK]??demo")
    cwd = project(tmp_path, group_yaml(fleet), SERVICE.replace("LEVEL", "1"))
    got = run(fleet, cwd, "plan")
    assert "~ update  HostState/site/service:demo" not in got.out  # the spec is named demo
    assert "~ update  HostState/demo/service:demo @ host1, host2, host3, host4, host5 (5 targets)" in got.out
    assert "state: stopped → running" in got.out and "enabled: false → true" in got.out
    assert run(fleet, cwd, "apply", "--auto-approve").rc == 0
    for i in range(HOSTS):
        assert fleet.ssh(i, "/etc/init.d/demo status && ls /etc/rc2.d/S??demo && echo up").strip().endswith("up")
        assert fleet.ssh(i, "cat /run/demo.restarts 2>/dev/null || echo none").strip() == "none"
    assert run(fleet, cwd, "plan", "--detailed-exitcode").rc == 0

    # a config change restarts the service, once, on every host
    (cwd / "specs" / "site.yaml").write_text(SERVICE.replace("LEVEL", "2"))
    got = run(fleet, cwd, "plan", "--detailed-exitcode")
    assert got.rc == 2
    assert "↻ restart HostState/demo/service:demo @ host1, host2, host3, host4, host5 (5 targets)" in got.out
    assert "notified by file:/etc/demo.conf" in got.out
    assert run(fleet, cwd, "apply", "--auto-approve").rc == 0
    for i in range(HOSTS):
        assert fleet.ssh(i, "cat /run/demo.restarts").strip() == "restarted"
    assert run(fleet, cwd, "plan", "--detailed-exitcode").rc == 0

    # stopped by hand on one host: drift there only, and started again
    fleet.ssh(3, "/etc/init.d/demo stop")
    got = run(fleet, cwd, "plan", "--json", "--detailed-exitcode")
    assert got.rc == 2 and pending(got) == {"HostState/demo/service:demo@host4"}
    assert run(fleet, cwd, "apply", "--auto-approve").rc == 0
    assert run(fleet, cwd, "plan", "--detailed-exitcode").rc == 0


def test_do_restart_and_logs_of_a_service_host_by_host(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    """recon do restart of a service: host after host, one host by @HOST, stopped at the first host that fails
    (the rest not started, each audited); recon do logs reads each host's log."""
    for i in range(HOSTS):
        fleet.ssh(i, f"cat > /etc/init.d/demo <<'EOF'\n{INIT_SCRIPT}EOF\nchmod +x /etc/init.d/demo; "
                     "rm -f /etc/demo.conf /run/demo.restarts /var/log/demo.log /etc/rc?.d/[SK]??demo")
    cwd = project(tmp_path, group_yaml(fleet), SERVICE.replace("LEVEL", "1"))
    assert run(fleet, cwd, "apply", "--auto-approve").rc == 0
    svc = "HostState/demo/service:demo"
    done = run(fleet, cwd, "do", "restart", svc, "--yes")
    assert done.rc == 0 and "Done: 5 ok, 0 failed" in done.err, done.text
    assert [fleet.ssh(i, "cat /run/demo.restarts").strip() for i in range(HOSTS)] == ["restarted"] * HOSTS
    one = run(fleet, cwd, "do", "restart", f"{svc}@host2", "--yes")
    assert one.rc == 0 and "Done: 1 ok" in one.err, one.text
    assert [len(fleet.ssh(i, "cat /run/demo.restarts").split()) for i in range(HOSTS)] == [1, 2, 1, 1, 1]

    logs = run(fleet, cwd, "do", "logs", svc, "--tail", "1")
    assert logs.rc == 0, logs.text
    assert [line for line in logs.out.splitlines()] == [f"host{i} | host{i} demo started" for i in range(1, 6)]
    bad = run(fleet, cwd, "do", "logs", svc, "--since", "yesterday")
    assert bad.rc == 1 and "--since 'yesterday'" in bad.err

    # host3's restart fails: hosts 4 and 5 are not touched
    fleet.ssh(2, "sed -i 's|restart) \"$0\" stop; \"$0\" start;|restart) exit 1;|' /etc/init.d/demo")
    failed = run(fleet, cwd, "do", "restart", svc, "--yes", "--json")
    got = json.loads(failed.out)
    assert failed.rc == 1 and [r["ok"] for r in got["results"]] == [True, True, False], failed.text
    assert got["skipped"] == [f"{svc}@host4", f"{svc}@host5"]
    assert [len(fleet.ssh(i, "cat /run/demo.restarts").split()) for i in range(HOSTS)] == [2, 3, 1, 1, 1]
    runs = json.loads(run(fleet, cwd, "audit", "--json").out)
    last = runs[0]
    assert last["command"] == "do" and last["outcome"] == "failed" and last["action"] == "restart"
    assert [e["change"] for e in last["events"] if e["event"] == "result" and not e["ok"]] == [
        f"{svc}@host3", f"{svc}@host4", f"{svc}@host5"]


UPDATE = """\
apiVersion: recon/v1
kind: HostState
metadata: {name: update}
spec:
  group: web
  resources:
    - type: file
      path: /opt/app/app.bin
      content: "v2\\n"
      mode: "0755"
      notify: [demo, verify]
    - type: file
      path: /opt/app/old.txt
      state: absent
    - type: file
      path: /opt/app/new.txt
      content: "new\\n"
    - type: service
      name: demo
      state: running
    - type: command
      id: verify
      run: 'grep -q v2 /opt/app/app.bin && [ "$(hostname)" != host2 ] || { echo "v2 does not answer" >&2; exit 3; }'
      onlyWhenNotified: true
"""


def test_failed_verification_rolls_that_host_back(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    for i in range(HOSTS):
        fleet.ssh(i, f"cat > /etc/init.d/demo <<'EOF'\n{INIT_SCRIPT}EOF\nchmod +x /etc/init.d/demo; "
                     "mkdir -p /opt/app && printf 'v1\\n' > /opt/app/app.bin && chmod 0750 /opt/app/app.bin && "
                     "echo old > /opt/app/old.txt && rm -f /opt/app/new.txt /run/demo.restarts && "
                     "/etc/init.d/demo start")
    cwd = project(tmp_path, group_yaml(fleet), UPDATE)
    got = run(fleet, cwd, "apply", "--auto-approve")
    assert got.rc == 1, got.text
    failed = r"✗ HostState/update/command:verify@host2\n\s+exit 3: v2 does not answer; the host was rolled back"
    assert re.search(failed, got.out), got.out
    assert "HostState/update/file:/opt/app/app.bin@host2\n      rolled back: HostState/update/command:verify@host2" \
        in got.out
    # host2 is as it was: old binary and mode, old.txt back, new.txt gone, service running, restarted twice
    # (once for v2, once more to load v1 again)
    assert fleet.ssh(1, "cat /opt/app/app.bin; stat -c %a /opt/app/app.bin; cat /opt/app/old.txt") == "v1\n750\nold\n"
    assert fleet.ssh(1, "test -e /opt/app/new.txt || echo gone").strip() == "gone"
    assert fleet.ssh(1, "/etc/init.d/demo status && cat /run/demo.restarts") == "restarted\nrestarted\n"
    assert fleet.ssh(1, "ls /opt/app") == "app.bin\nold.txt\n"  # no backups left behind
    for i in (0, 2, 3, 4):
        assert fleet.ssh(i, "cat /opt/app/app.bin; ls /opt/app") == "v2\napp.bin\nnew.txt\n"
    # progress lines count targets; the last one has them all settled
    assert "· targets: 4 done, 1 failed, 0 pending" in got.out
    # the per-host summary
    assert "  4 targets fully applied: host1, host3, host4, host5\n  host2: 1 failed, 4 rolled back\n" in got.out
    got = run(fleet, cwd, "plan", "--json", "--detailed-exitcode")
    assert {c.rsplit("@", 1)[1] for c in pending(got)} == {"host2"}


BECOME = """\
apiVersion: recon/v1
kind: HostState
metadata: {name: root-owned}
spec:
  group: web
  resources:
    - type: file
      path: /etc/recon-become.conf
      content: "as root\\n"
      owner: root
      mode: "0600"
"""


def test_become_with_sudo(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    hosts = fleet.hosts[:2]
    for i in range(2):
        fleet.ssh(i, "for u in deploy plain; do id $u >/dev/null 2>&1 || useradd -m -s /bin/sh -p '*' $u; done; "
                     "echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy; chmod 440 /etc/sudoers.d/deploy; "
                     "rm -f /etc/recon-become.conf")

    def with_user(user: str, become: bool) -> Path:
        extra = f"\n    become: {str(become).lower()}"
        group = group_yaml(fleet, hosts, extra=extra).replace("user: root", f"user: {user}")
        return project(tmp_path / f"{user}-{become}", group, BECOME)

    cwd = with_user("deploy", False)
    got = run(fleet, cwd, "apply", "--auto-approve")
    assert got.rc == 1 and "Permission denied" in got.out, got.text

    cwd = with_user("plain", True)
    got = run(fleet, cwd, "plan")
    assert got.rc == 1, got.text
    assert "sudo refused" in got.err and "give plain passwordless sudo, or set ssh.becomePassword" in got.err

    cwd = with_user("deploy", True)
    got = run(fleet, cwd, "apply", "--auto-approve")
    assert got.rc == 0, got.text
    for i in range(2):
        assert fleet.ssh(i, "stat -c '%U %a' /etc/recon-become.conf").strip() == "root 600"
    assert run(fleet, cwd, "plan", "--detailed-exitcode").rc == 0


def _deb_repo(base: Path) -> Path:
    """A flat apt repository with recon-demo 1.0 and 2.0, built with dpkg-deb (no network)."""
    repo = base / "repo"
    repo.mkdir(exist_ok=True)
    entries = []
    for version in ("1.0", "2.0"):
        root = base / f"pkg-{version}"
        (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
        (root / "usr/share/recon-demo").mkdir(parents=True, exist_ok=True)
        (root / "usr/share/recon-demo/VERSION").write_text(version + "\n")
        control = (f"Package: recon-demo\nVersion: {version}\nArchitecture: all\n"
                   "Maintainer: recon tests <t@localhost>\nDescription: a package for recon's tests\n")
        (root / "DEBIAN/control").write_text(control)
        deb = repo / f"recon-demo_{version}_all.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True,
                       capture_output=True)
        data = deb.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        entries.append(control + f"Filename: ./{deb.name}\nSize: {len(data)}\nSHA256: {digest}\n")
    (repo / "Packages").write_text("\n".join(entries))
    return repo


PACKAGE = """\
apiVersion: recon/v1
kind: HostState
metadata: {name: pkg}
spec:
  group: web
  resources:
    - type: package
      name: recon-demo
      STATE
"""


def test_package_install_upgrade_remove(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    repo = _deb_repo(fleet.base)
    hosts = fleet.hosts[:2]
    for i in range(2):  # only the local repository: nothing may reach outside the test network
        fleet.ssh(i, "rm -f /etc/apt/sources.list.d/*; "
                     f"echo 'deb [trusted=yes] file:{repo} ./' > /etc/apt/sources.list; "
                     "apt-get -q update >/dev/null 2>&1; dpkg -r recon-demo >/dev/null 2>&1; true", timeout=120)

    def apply_state(state: str) -> None:
        cwd = project(tmp_path, group_yaml(fleet, hosts), PACKAGE.replace("STATE", state))
        got = run(fleet, cwd, "apply", "--auto-approve")
        assert got.rc == 0, got.text
        assert run(fleet, cwd, "plan", "--detailed-exitcode").rc == 0

    apply_state('version: "1.0"')
    assert fleet.ssh(0, "cat /usr/share/recon-demo/VERSION") == "1.0\n"
    apply_state('version: "2.0"')
    assert fleet.ssh(1, "dpkg-query -W -f='${Version}' recon-demo") == "2.0"
    fleet.ssh(1, "dpkg -r recon-demo >/dev/null")
    cwd = project(tmp_path, group_yaml(fleet, hosts), PACKAGE.replace("STATE", 'version: "2.0"'))
    got = run(fleet, cwd, "plan", "--json", "--detailed-exitcode")
    assert got.rc == 2 and pending(got) == {"HostState/pkg/package:recon-demo@host2"}
    apply_state("state: absent")
    assert fleet.ssh(0, "dpkg-query -W recon-demo >/dev/null 2>&1 || echo gone").strip() == "gone"


def test_through_a_jump_host(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    jump, targets = fleet.hosts[0], fleet.hosts[1:3]
    extra = f"\n    jump: {{address: {jump.address}}}"
    cwd = project(tmp_path, group_yaml(fleet, targets, extra=extra), STATE)
    sizes = _log_sizes(fleet)
    got = run(fleet, cwd, "apply", "--auto-approve")
    assert got.rc == 0, got.text
    assert run(fleet, cwd, "plan", "--detailed-exitcode").rc == 0
    logs = _log_since(fleet, sizes)
    for i in (1, 2):  # the targets saw connections from the jump host, not from the control namespace
        assert f"Accepted publickey for root from {jump.address}" in logs[i]
        assert f"from {fleetmod.SUBNET}.1 " not in logs[i]
    assert "direct-tcpip" in logs[0] or "Accepted publickey for root from" in logs[0]

    ghost = f"{fleetmod.SUBNET}.250"
    cwd = project(tmp_path / "ghost", group_yaml(fleet, targets, extra=f"\n    jump: {{address: {ghost}}}"), STATE)
    got = run(fleet, cwd, "plan")
    assert got.rc == 1 and f"jump host {ghost}:22: cannot connect" in got.err, got.text


USER = """\
apiVersion: recon/v1
kind: HostState
metadata: {name: accounts}
spec:
  group: web
  resources:
    - type: user
      name: appuser
      BODY
"""


def test_user_create_update_drift_remove(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    hosts = fleet.hosts[:2]
    for i in range(2):
        fleet.ssh(i, "userdel -r appuser >/dev/null 2>&1; true")

    def state(body: str) -> Path:
        return project(tmp_path, group_yaml(fleet, hosts), USER.replace("BODY", body))

    cwd = state("uid: 2101\n      shell: /bin/sh\n      groups: [adm]")
    assert run(fleet, cwd, "apply", "--auto-approve").rc == 0
    assert fleet.ssh(0, "getent passwd appuser | cut -d: -f3,7; id -nG appuser") == "2101:/bin/sh\nappuser adm\n"
    assert run(fleet, cwd, "plan", "--detailed-exitcode").rc == 0

    cwd = state("uid: 2101\n      shell: /bin/bash\n      groups: [adm, users]")
    got = run(fleet, cwd, "plan", "--detailed-exitcode")
    assert got.rc == 2 and "shell: /bin/sh → /bin/bash" in got.out
    assert run(fleet, cwd, "apply", "--auto-approve").rc == 0
    assert fleet.ssh(1, "id -nG appuser") == "appuser adm users\n"
    assert run(fleet, cwd, "plan", "--detailed-exitcode").rc == 0

    fleet.ssh(1, "usermod -s /bin/sh appuser")
    got = run(fleet, cwd, "plan", "--json", "--detailed-exitcode")
    assert got.rc == 2 and pending(got) == {"HostState/accounts/user:appuser@host2"}

    cwd = state("state: absent")
    assert run(fleet, cwd, "apply", "--auto-approve").rc == 0
    assert fleet.ssh(0, "getent passwd appuser || echo gone").strip() == "gone"
    assert run(fleet, cwd, "plan", "--detailed-exitcode").rc == 0


def test_changed_host_key_is_refused(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    lines = fleet.known_hosts.read_text().splitlines()
    other = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    assert other.returncode == 0
    fake = (tmp_path / "k.pub").read_text().split()[:2]
    lines[0] = f"{fleet.hosts[0].address} {fake[0]} {fake[1]}"
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(lines) + "\n")
    cwd = project(tmp_path, group_yaml(fleet, fleet.hosts[:1], known=known))
    got = run(fleet, cwd, "plan")
    assert got.rc == 1
    assert "the host key changed since it was recorded" in got.err
    assert f"ssh-keygen -R {fleet.hosts[0].address}" in got.err
    assert "Traceback" not in got.text


def test_unknown_host_key_wrong_key_and_unreachable_host(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    cwd = project(tmp_path, group_yaml(fleet, fleet.hosts[:1], known=empty))
    got = run(fleet, cwd, "plan")
    assert got.rc == 1 and "the host key is not in" in got.err and "ssh-keyscan" in got.err

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "wrong")], check=True)
    cwd = project(tmp_path, group_yaml(fleet, fleet.hosts[:1], key=tmp_path / "wrong"))
    started = time.monotonic()
    got = run(fleet, cwd, "plan")
    assert got.rc == 1 and "authentication failed" in got.err, got.text
    assert time.monotonic() - started < 10, "a refused key must fail at once, not after retries"

    ghost = fleetmod.Host("ghost", f"{fleetmod.SUBNET}.250", "", tmp_path)
    cwd = project(tmp_path, group_yaml(fleet, [ghost]))
    got = run(fleet, cwd, "plan")
    assert got.rc == 1 and "ghost" in got.err and "cannot connect" in got.err, got.text
    assert "Traceback" not in got.text


def test_host_down_mid_apply_others_finish(tmp_path: Path) -> None:
    small = fleetmod.start(3, prefix="rcdown")
    try:
        state = STATE.replace("run: touch /srv/www/.initialised", "run: sleep 3 && touch /srv/www/.initialised")
        cwd = project(tmp_path, group_yaml(small), state)
        proc = subprocess.Popen([*small.exec_prefix, *RECON, "apply", "--auto-approve"], cwd=cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        small.kill(1)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        down = small.hosts[1].name
        # what the host reported before it went away is kept; the step it was in and the rest fail
        assert re.search(rf"✗ HostState/site/command:init@{down}\n\s+{down} .*connection lost", out), out
        assert re.search(rf"✓ \S+ HostState/site/file:/etc/app/app.conf@{down}", out), out
        for i in (0, 2):
            assert small.ssh(i, "test -e /srv/www/.initialised && echo ok").strip() == "ok"
        for i in (0, 2):
            assert re.search(rf"✓ \S+ HostState/site/command:init@{small.hosts[i].name}", out), out
        assert out.strip().splitlines()[-1].startswith("Apply incomplete: 14 succeeded, 1 failed"), out
    finally:
        small.stop()


def test_connections_kept_between_runs_by_the_agent(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    """ssh.persist (on by default; the other tests turn it off to count their own connections): a
    second run reuses each host's connection; the agent leaves when idle for `persist` seconds."""
    from providers.hosts.ssh_agent import socket_path

    state = STATE.replace("<h1>hello from recon</h1>", f"<h1>{tmp_path.name}</h1>")  # pending on every host
    cwd = project(tmp_path, group_yaml(fleet, extra="\n    persist: 2"), state)
    on = {"RECON_SSH_PERSIST": "1", "DEPLOY_TOKEN": "s3cret-of-the-caller"}
    sizes = _log_sizes(fleet)
    first = recon("plan", "--detailed-exitcode", cwd=cwd, prefix=fleet.exec_prefix, env=on)
    assert first.rc == 2, first.text
    agents = subprocess.run(["pgrep", "-f", "providers.hosts.ssh_agent"], capture_output=True, text=True).stdout.split()
    assert agents
    for pid in agents:  # the agent lives on, with none of the caller's variables but what it needs
        assert b"s3cret-of-the-caller" not in Path(f"/proc/{pid}/environ").read_bytes()
    again = recon("plan", "--detailed-exitcode", cwd=cwd, prefix=fleet.exec_prefix, env=on)
    assert again.rc == 2 and again.out.splitlines()[1:] == first.out.splitlines()[1:], again.text
    for log in _log_since(fleet, sizes):  # two plans, one connection per host
        assert log.count("Accepted publickey for root") == 1, log
        # per plan: the facts, and the old text of index.html for its diff (a host with a content change only)
        assert len(re.findall(r"Starting session: command", log)) == 4, log
    applied = recon("apply", "--auto-approve", cwd=cwd, prefix=fleet.exec_prefix, env=on)
    assert applied.rc == 0, applied.text
    assert recon("plan", "--detailed-exitcode", cwd=cwd, prefix=fleet.exec_prefix, env=on).rc == 0
    for log in _log_since(fleet, sizes):
        assert log.count("Accepted publickey for root") == 1, log
    netns = subprocess.run([*fleet.exec_prefix, "readlink", "/proc/self/ns/net"], capture_output=True, text=True,
                           check=True).stdout.strip().strip("net:[]")
    sock = socket_path(netns)
    assert sock.exists()
    deadline = time.monotonic() + 10
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not sock.exists()  # idle for 2 s: gone, its connections closed


def test_resident_planner_plans_the_fleet_as_recon_does(fleet: fleetmod.Fleet, tmp_path: Path,
                                                         runtime: Path) -> None:
    """The plan of the fleet from the resident planner (reconciler/warm.py), started and reached inside
    the fleet's control namespace, is the plan recon makes by itself, and it keeps serving there."""
    state = STATE.replace("<h1>hello from recon</h1>", f"<h1>{tmp_path.name}</h1>")  # pending on every host
    cwd = project(tmp_path, group_yaml(fleet), state)
    cold = recon("plan", "--detailed-exitcode", cwd=cwd, prefix=fleet.exec_prefix)
    assert cold.rc == 2, cold.text
    first = start_planner(runtime, cwd, {}, "plan", "--detailed-exitcode", prefix=fleet.exec_prefix)
    assert first.rc == 2, first.text
    for _ in range(2):
        _, got = served(recon("plan", "--detailed-exitcode", cwd=cwd, prefix=fleet.exec_prefix,
                              env=warm_env(runtime)))
        assert (got.rc, got.out, got.err) == (cold.rc, cold.out, cold.err)
    outside = recon("validate", cwd=cwd, env=warm_env(runtime))  # another network namespace: not this planner's
    assert outside.rc == 0 and not SERVED.search(outside.err), outside.text


def test_two_runners_on_one_group_take_turns_through_a_shared_postgres(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    """Separate processes, working and state directories, the group named differently in each: the locks are
    the hosts' (by address), kept in PostgreSQL, which the runners in the fleet's namespace reach by its socket."""
    from tests.peers import postgres

    pg = postgres.start()
    try:
        pg.create_db("turns")
        env = {"RECON_STATE_BACKEND": "postgres",
               "RECON_STATE_DSN": f"postgresql://recon:{pg.password}@/turns?host={pg.root}&port={pg.port}"}
        marker = f"/srv/turns-{tmp_path.name}"
        slow = (f"apiVersion: recon/v1\nkind: HostState\nmetadata: {{name: slow}}\nspec:\n  group: GROUP\n"
                f"  resources:\n    - {{type: command, id: slow, run: 'sleep 3; touch {marker}', creates: {marker}}}\n")
        one = project(tmp_path / "one", group_yaml(fleet), slow.replace("GROUP", "web"))
        two = project(tmp_path / "two", group_yaml(fleet).replace("name: web", "name: fleet"),
                      slow.replace("GROUP", "fleet"))
        full = {**os.environ, **env}
        holder = subprocess.Popen([*fleet.exec_prefix, *RECON, "apply", "--auto-approve"], cwd=one, env=full,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first_key = f"host/ssh/{fleet.hosts[0].address}:22"
        deadline = time.monotonic() + 30
        while f"{first_key}: held by" not in (listed := recon("lock", "list", cwd=two, env=env,
                                                             prefix=fleet.exec_prefix)).out:
            assert time.monotonic() < deadline and holder.poll() is None, listed.text
            time.sleep(0.2)
        refused = recon("apply", "--auto-approve", cwd=two, env=env, prefix=fleet.exec_prefix)
        assert refused.rc == 1 and f"{first_key} is locked by" in refused.err, refused.text
        waited = recon("apply", "--auto-approve", "--lock-timeout", "60s", cwd=two, env=env, prefix=fleet.exec_prefix)
        assert waited.rc == 0 and "Waiting for the lock host/ssh/" in waited.out and "No changes" in waited.out, \
            waited.text
        assert holder.wait(timeout=60) == 0
    finally:
        for i in range(len(fleet.hosts)):
            fleet.ssh(i, "rm -f /srv/turns-*")
        pg.stop()


def test_a_large_file_is_streamed_to_every_host(fleet: fleetmod.Fleet, tmp_path: Path) -> None:
    """Issue 18 case 12: content larger than the inline limit travels beside the script, a chunk at a time,
    through the agent and without it, as root and with become; owner-only from the first byte."""
    from providers.hosts.model import INLINE_MAX

    big = os.urandom(INLINE_MAX * 3 + 123)
    hosts = fleet.hosts[:2]
    for i in range(2):
        fleet.ssh(i, "id deploy >/dev/null 2>&1 || useradd -m -s /bin/sh -p '*' deploy; echo 'deploy ALL=(ALL) "
                     "NOPASSWD: ALL' > /etc/sudoers.d/deploy; chmod 440 /etc/sudoers.d/deploy; rm -rf /srv/big")
    state = ("apiVersion: recon/v1\nkind: HostState\nmetadata: {name: big}\nspec:\n  group: web\n  resources:\n"
             "    - {type: file, path: /srv/big/model.bin, source: model.bin, mode: '0640'}\n")
    for name, extra, user, env in (("agent", "", "root", {}), ("direct", "", "root", {"RECON_SSH_PERSIST": "0"}),
                                   ("become", "\n    become: true", "deploy", {})):
        cwd = project(tmp_path / name, group_yaml(fleet, hosts, extra=extra).replace("user: root", f"user: {user}"),
                      state)
        (cwd / "specs" / "model.bin").write_bytes(big)
        got = recon("apply", "--auto-approve", cwd=cwd, prefix=fleet.exec_prefix, env=env)
        assert got.rc == 0, (name, got.text)
        for i in range(2):
            digest = fleet.ssh(i, "sha256sum /srv/big/model.bin; stat -c '%a %s' /srv/big/model.bin").split()
            assert digest[0] == hashlib.sha256(big).hexdigest() and digest[2:] == ["640", str(len(big))], (name, digest)
            assert fleet.ssh(i, "ls -a /srv/big").split() == [".", "..", "model.bin"]  # no temporary left
        again = recon("plan", "--detailed-exitcode", cwd=cwd, prefix=fleet.exec_prefix, env=env)
        assert again.rc == 0, (name, again.text)
        big = big[::-1]  # the next case changes the content
    # the source changed between plan and apply: what was planned is not what would be sent
    cwd = tmp_path / "agent"
    (cwd / "specs" / "model.bin").write_bytes(os.urandom(INLINE_MAX * 2))
    assert recon("plan", "--out", "p.json", cwd=cwd, prefix=fleet.exec_prefix).rc == 0
    (cwd / "specs" / "model.bin").write_bytes(os.urandom(INLINE_MAX * 2))
    stale = recon("apply", "p.json", cwd=cwd, prefix=fleet.exec_prefix)
    assert stale.rc != 0 and "Traceback" not in stale.text, stale.text
