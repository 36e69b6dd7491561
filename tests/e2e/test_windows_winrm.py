"""Windows hosts over WinRM, end to end: the recon CLI in a network namespace of its own, unmodified
pywinrm, HTTPS with the certificate checked, and WinRM test hosts (tests/peers/winrm_host.py) in
namespaces of their own, which emulate recon's PowerShell against a sandbox per host."""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, recon
from tests.peers import kdc, winrm_fleet
from tests.peers.winrm_fleet import WinFleet, WinHost

BINARY = r"C:\Program Files\Station\stationcontroller.exe"
ENV = {"CIS_WINRM_PASSWORD": winrm_fleet.PASSWORD}


@pytest.fixture(scope="module")
def fleet() -> Iterator[WinFleet]:
    f = winrm_fleet.start(3)
    yield f
    f.stop()


@pytest.fixture
def hosts(fleet: WinFleet) -> list[WinHost]:
    """Each test starts from hosts that run StationController 2.4.0."""
    for h in fleet.hosts:
        for item in h.root.iterdir():
            if item.is_dir():
                import shutil

                shutil.rmtree(item)
            else:
                item.unlink()
        (h.root / "C").mkdir()
        program = h.sandbox.path(BINARY)
        program.parent.mkdir(parents=True)
        program.write_bytes(b"stationcontroller 2.4.0\n")
        h.sandbox.add_service("StationController", BINARY)
    return fleet.hosts


def _project(tmp: Path, fleet: WinFleet, binary: bytes = b"stationcontroller 2.4.1\n", strategy: str = "",
             extra: str = "", password: str = "{env: CIS_WINRM_PASSWORD}", ca: bool = True) -> None:
    """The stationcontroller example, pointed at the test hosts."""
    (tmp / "specs" / "files").mkdir(parents=True, exist_ok=True)
    hosts = "\n".join(f"    - {{name: {h.name}, address: {h.address}}}" for h in fleet.hosts)
    (tmp / "specs" / "group.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: recon/v1
        kind: HostGroup
        metadata: {{name: cis-servers}}
        spec:
          connection: winrm
          winrm: {{user: Administrator, password: {password}, transport: basic{f', caFile: {fleet.ca}' if ca else ''}}}
          hosts:
        """) + hosts + "\n")
    example = (ROOT / "examples" / "stationcontroller" / "stationcontroller.yaml").read_text()
    example = example.replace("strategy: {batch: 1, maxFailures: 0}", strategy or "strategy: {batch: 1, "
                              "maxFailures: 0}").replace("verifySeconds: 5", "verifySeconds: 0.2")
    (tmp / "specs" / "stationcontroller.yaml").write_text(example + extra)
    (tmp / "specs" / "files" / "stationcontroller.exe").write_bytes(binary)


def _run(fleet: WinFleet, tmp: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return recon(*args, cwd=tmp, env={**ENV, **(env or {})}, prefix=fleet.exec_prefix, timeout=180)


def test_the_stationcontroller_update_on_three_hosts(tmp_path: Path, fleet: WinFleet, hosts: list[WinHost]) -> None:
    _project(tmp_path, fleet)
    for h in hosts:
        (h.root / "requests.log").unlink(missing_ok=True)
    planned = _run(fleet, tmp_path, "plan", "--detailed-exitcode")
    assert planned.rc == 2, planned.text
    assert "@ win1, win2, win3 (3 targets)" in planned.out
    assert r"file:C:\Program Files\Station\stationcontroller.exe" in planned.out
    assert "replaced while StationController is stopped" in planned.out
    assert winrm_fleet.PASSWORD not in planned.text
    for h in hosts:  # one shell, one command (its script in one Send), its output as it came, the shell closed
        got = h.requests()
        assert [r for r in got if r != "Receive"] == ["Create", "Command", "Send", "Signal", "Delete"], got
        assert 1 <= got.count("Receive") <= 3, got

    applied = _run(fleet, tmp_path, "apply", "--auto-approve")
    assert applied.rc == 0, applied.text
    for h in hosts:
        assert h.sandbox.path(BINARY).read_bytes() == b"stationcontroller 2.4.1\n"
        assert h.sandbox.service("StationController")["status"] == "Running"
        assert not h.sandbox.path(BINARY + ".recon-bak").exists()  # backups go after a success
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0


def test_a_host_that_fails_is_rolled_back_while_the_others_complete(tmp_path: Path, fleet: WinFleet,
                                                                    hosts: list[WinHost]) -> None:
    _project(tmp_path, fleet, strategy="strategy: {batch: 3, maxFailures: 1}")
    (hosts[1].root / "faults.json").write_text(json.dumps({"failStartOnce": ["StationController"]}))
    applied = _run(fleet, tmp_path, "apply", "--auto-approve")
    assert applied.rc == 1, applied.text
    assert "did not respond to the start" in applied.out and "the host was rolled back" in applied.out
    assert [h.sandbox.path(BINARY).read_bytes() for h in hosts] == [
        b"stationcontroller 2.4.1\n", b"stationcontroller 2.4.0\n", b"stationcontroller 2.4.1\n"]
    assert all(h.sandbox.service("StationController")["status"] == "Running" for h in hosts)
    again = _run(fleet, tmp_path, "plan")
    assert "win2" in again.out and "1 to update" in again.out, again.out


def test_a_broken_build_stops_the_rollout_after_the_first_host(tmp_path: Path, fleet: WinFleet,
                                                               hosts: list[WinHost]) -> None:
    _project(tmp_path, fleet, binary=b"stationcontroller 2.5.0 RECON-TEST-CRASH\n")
    applied = _run(fleet, tmp_path, "apply", "--auto-approve")
    assert applied.rc == 1 and "service StationController stopped after it started" in applied.out, applied.text
    assert all(h.sandbox.path(BINARY).read_bytes() == b"stationcontroller 2.4.0\n" for h in hosts)
    assert all(h.sandbox.service("StationController")["status"] == "Running" for h in hosts)
    assert applied.out.count("the host was rolled back") == 1  # batch 1, maxFailures 0: no second host


def test_a_service_and_a_process_with_awkward_names(tmp_path: Path, fleet: WinFleet, hosts: list[WinHost]) -> None:
    weird_service = 'Station "Ctl" $env:x'
    for h in hosts:
        h.sandbox.add_service(weird_service, BINARY, status="Stopped", startup="Manual")
        state = h.sandbox.state()
        state["processes"]["notepad"] = 2
        h.sandbox.save(state)
    _project(tmp_path, fleet, extra=textwrap.indent(textwrap.dedent(f"""\
        - type: service
          name: '{weird_service}'
          state: running
          startup: automatic
        - type: process
          name: notepad
        """), "    "))
    planned = _run(fleet, tmp_path, "plan")
    assert "state: stopped → running" in planned.out and "startup: Manual → Automatic" in planned.out, planned.out
    assert "processes: 2 → 0" in planned.out
    assert _run(fleet, tmp_path, "apply", "--auto-approve").rc == 0
    for h in hosts:
        assert {k: v for k, v in h.sandbox.service(weird_service).items() if k != "crashes"} == {
            "binary": BINARY, "status": "Running", "startup": "Automatic"}
        assert h.sandbox.processes("notepad") == 0
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0


REAL = os.environ.get("RECON_TEST_WINRM_HOST")


def test_a_large_file_awkward_paths_and_a_command_on_any_windows_host(tmp_path: Path, fleet: WinFleet,
                                                                     hosts: list[WinHost]) -> None:
    """Against the first test host, or a real Windows host when RECON_TEST_WINRM_HOST is set (with
    RECON_TEST_WINRM_USER, RECON_TEST_WINRM_PASSWORD, and RECON_TEST_WINRM_TRANSPORT / _CA if needed):
    everything below C:\\recon-test there is made by this test."""
    base = "C:\\recon-test"
    weird_path = base + r"\it's $HOME (x86)\model ‘weights’.bin"
    big = os.urandom(1536 * 1024)
    bs = "\\"
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "weights.bin").write_bytes(big)
    if REAL:
        address, user = REAL, os.environ.get("RECON_TEST_WINRM_USER", "Administrator")
        env = {"CIS_WINRM_PASSWORD": os.environ.get("RECON_TEST_WINRM_PASSWORD", "")}
        transport = os.environ.get("RECON_TEST_WINRM_TRANSPORT", "ntlm")
        ca = os.environ.get("RECON_TEST_WINRM_CA")
        prefix: list[str] = []
    else:
        address, user, env, transport, ca = hosts[0].address, winrm_fleet.USER, ENV, "basic", str(fleet.ca)
        prefix = fleet.exec_prefix
    ca_file = f", caFile: {ca}" if ca else ""
    (tmp_path / "specs" / "win.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: recon/v1
        kind: HostGroup
        metadata: {{name: windows}}
        spec:
          connection: winrm
          winrm: {{user: '{user}', password: {{env: CIS_WINRM_PASSWORD}}, transport: {transport}{ca_file}}}
          hosts: [{{name: target, address: '{address}'}}]
        ---
        apiVersion: recon/v1
        kind: HostState
        metadata: {{name: files}}
        spec:
          group: windows
          resources:
            - type: file
              path: '{weird_path.replace("'", "''")}'
              source: weights.bin
            - type: directory
              path: '{base}{bs}logs $(whoami)'
            - type: command
              id: marker
              run: New-Item -ItemType File -Path '{base}{bs}marker.txt' -Force
              creates: '{base}{bs}marker.txt'
        """))

    def run(*args: str):  # type: ignore[no-untyped-def]
        return recon(*args, cwd=tmp_path, env=env, prefix=prefix, timeout=300)

    applied = run("apply", "--auto-approve")
    assert applied.rc == 0, applied.text
    assert run("plan", "--detailed-exitcode").rc == 0  # re-read on the host: sha256, directory, marker
    if not REAL:
        sandbox = hosts[0].sandbox
        assert hashlib.sha256(sandbox.path(weird_path).read_bytes()).hexdigest() == hashlib.sha256(big).hexdigest()
        assert sandbox.path(base + "\\logs $(whoami)").is_dir() and sandbox.path(base + "\\marker.txt").exists()
        assert hosts[0].requests().count("Send") >= 8  # the 1.5 MB travelled in several messages
    (tmp_path / "specs" / "weights.bin").write_bytes(big[:-1] + b"x")
    changed = run("plan")
    assert "sha256:" in changed.out and "size: 1572864 → 1572864" in changed.out, changed.out


def test_wrong_credentials_and_an_unknown_certificate_are_one_clear_message(tmp_path: Path, fleet: WinFleet,
                                                                            hosts: list[WinHost]) -> None:
    _project(tmp_path, fleet)
    wrong = _run(fleet, tmp_path, "plan", env={"CIS_WINRM_PASSWORD": "not-it"})
    assert wrong.rc == 1 and "refused the user 'Administrator' (401)" in wrong.text, wrong.text
    assert "not-it" not in wrong.text and "Traceback" not in wrong.text
    _project(tmp_path, fleet, ca=False)
    unknown = _run(fleet, tmp_path, "plan")
    assert unknown.rc == 1 and "cannot be verified: give its CA in winrm.caFile" in unknown.text, unknown.text


def test_resources_for_the_wrong_kind_of_host_are_refused_before_any_connection(tmp_path: Path,
                                                                               fleet: WinFleet) -> None:
    _project(tmp_path, fleet, extra="    - {type: file, path: /etc/app.conf, content: x}\n"
                                    "    - {type: package, name: nginx}\n")
    got = _run(fleet, tmp_path, "plan")
    assert got.rc == 1 and "/etc/app.conf is not a Windows path (win1 is reached by winrm)" in got.err, got.text
    assert "package nginx: on Windows a package is an MSI: give its productCode" in got.err


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_ntlm_over_http_with_message_encryption_and_over_https(tmp_path: Path, fleet: WinFleet,
                                                               hosts: list[WinHost], scheme: str) -> None:
    """pywinrm's NTLM (pyspnego) against the peer's NTLM acceptor: over http every message is sealed with the
    NTLM session key (MS-WSMV 2.2.9.1.1); over https TLS protects them."""
    _project(tmp_path, fleet)
    group = tmp_path / "specs" / "group.yaml"
    group.write_text(group.read_text().replace("transport: basic", f"transport: ntlm, scheme: {scheme}"))
    applied = _run(fleet, tmp_path, "apply", "--auto-approve")
    assert applied.rc == 0, applied.text
    assert all(h.sandbox.path(BINARY).read_bytes() == b"stationcontroller 2.4.1\n" for h in hosts)
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0
    sealed = [(h.root / "auth.log").read_text().count("ntlm-encrypted") if (h.root / "auth.log").exists() else 0
              for h in hosts]
    assert all(n > 5 for n in sealed) if scheme == "http" else sealed == [0, 0, 0], sealed
    wrong = _run(fleet, tmp_path, "plan", env={"CIS_WINRM_PASSWORD": "not-it"})
    assert wrong.rc == 1 and "refused the user 'Administrator' (401)" in wrong.text, wrong.text


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_kerberos_with_tickets_from_a_real_kdc(tmp_path: Path, fleet: WinFleet, hosts: list[WinHost],
                                               scheme: str) -> None:
    """pywinrm's Kerberos (pykerberos) with the ticket recon gets by kinit from the test KDC (MIT krb5-kdc) for
    the group's user; the hosts accept it with their HTTP/win<i>.recon.test keys; over http every message is
    sealed with the Kerberos session key (MS-WSMV 2.2.9.1.1)."""
    _project(tmp_path, fleet, password="{env: CIS_KRB_PASSWORD}")
    group = tmp_path / "specs" / "group.yaml"
    text = group.read_text().replace("user: Administrator", f"user: {kdc.USER}")
    text = text.replace("transport: basic", f"transport: kerberos, scheme: {scheme}")
    for h in hosts:
        text = text.replace(f"address: {h.address}}}", f"address: {h.name}.{kdc.DOMAIN}}}")
    group.write_text(text)
    env = {**fleet.kerberos_env, "CIS_KRB_PASSWORD": kdc.PASSWORD}
    applied = _run(fleet, tmp_path, "apply", "--auto-approve", env=env)
    assert applied.rc == 0, applied.text
    assert all(h.sandbox.path(BINARY).read_bytes() == b"stationcontroller 2.4.1\n" for h in hosts)
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode", env=env).rc == 0
    for h in hosts:
        log = (h.root / "auth.log").read_text()
        assert f"kerberos:{kdc.USER}" in log and "ntlm" not in log, log
        assert (log.count("kerberos-encrypted") > 5) == (scheme == "http"), log
    wrong = _run(fleet, tmp_path, "plan", env={**env, "CIS_KRB_PASSWORD": "not-the-password"})
    assert wrong.rc == 1 and f"kinit {kdc.USER} failed" in wrong.text, wrong.text
    assert "not-the-password" not in wrong.text and "Traceback" not in wrong.text
    if scheme == "https":
        return
    group.write_text(text.replace(", password: {env: CIS_KRB_PASSWORD}", ""))  # no password: the user's own cache
    none = _run(fleet, tmp_path, "plan", env={**env, "KRB5CCNAME": f"FILE:{tmp_path / 'no-tickets'}"})
    assert none.rc == 1 and "give winrm.password (recon then runs kinit)" in none.text, none.text
    group.write_text(text.replace(f"address: {hosts[0].name}.{kdc.DOMAIN}}}", f"address: {hosts[0].address}}}"))
    by_ip = _run(fleet, tmp_path, "plan", env=env)  # no service principal HTTP/<ip> in the realm
    assert by_ip.rc == 1 and f"Server HTTP/{hosts[0].address}@{kdc.REALM} not found" in by_ip.text, by_ip.text
    assert "address the host by the name the KDC knows it by" in by_ip.text


def test_an_interrupted_apply_is_rolled_back_on_the_windows_host(tmp_path: Path, fleet: WinFleet,
                                                                  hosts: list[WinHost]) -> None:
    import signal
    import subprocess
    import time

    from tests.conftest import RECON

    _project(tmp_path, fleet, extra=textwrap.indent(textwrap.dedent("""\
        - {type: directory, path: 'C:\\Station\\logs'}
        - type: command
          id: slow
          run: Start-Sleep -Seconds 5; New-Item -ItemType File -Path 'C:\\Station\\done' -Force
          creates: 'C:\\Station\\done'
        """), "    "))
    group = tmp_path / "specs" / "group.yaml"  # one host
    group.write_text("\n".join(line for line in group.read_text().splitlines()
                               if "win2" not in line and "win3" not in line) + "\n")
    proc = subprocess.Popen([*fleet.exec_prefix, *RECON, "apply", "--auto-approve"], cwd=tmp_path,
                            env={**os.environ, **ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    sandbox = hosts[0].sandbox
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not sandbox.path("C:\\Station\\logs").is_dir():
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert sandbox.path(BINARY).read_bytes() == b"stationcontroller 2.4.1\n"
    listed = _run(fleet, tmp_path, "rollback", "--list")
    assert "2 of 3 changes finished" in listed.out, listed.text  # the file and the directory
    done = _run(fleet, tmp_path, "rollback", "--auto-approve")
    assert done.rc == 0 and "Rollback complete: 2 undone, 0 not." in done.out, done.text
    assert sandbox.path(BINARY).read_bytes() == b"stationcontroller 2.4.0\n"
    assert not sandbox.path(BINARY + ".recon-bak").exists() and not sandbox.path("C:\\Station\\logs").exists()
    assert sandbox.service("StationController")["status"] == "Running"


def test_an_msi_package_installed_then_removed(tmp_path: Path, fleet: WinFleet, hosts: list[WinHost]) -> None:
    """Windows packages are MSI packages, known by product code (the peer's installers are text files
    `MSI {code} version`; its msiexec fails on anything else)."""
    code = "{6C1D1A72-8E3B-4F2A-9C57-2D4A1B0E9F11}"
    _project(tmp_path, fleet, extra=f"    - {{type: package, name: station-tools, productCode: '{code}', "
                                    "source: files/tools.msi}\n")
    (tmp_path / "specs" / "files" / "tools.msi").write_text(f"MSI {code} 3.1.0\n")
    planned = _run(fleet, tmp_path, "plan")
    assert "+ create  HostState/stationcontroller/package:station-tools" in planned.out, planned.out
    assert _run(fleet, tmp_path, "apply", "--auto-approve").rc == 0
    assert all(h.sandbox.state()["products"] == {code: "3.1.0"} for h in hosts)
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0
    spec = tmp_path / "specs" / "stationcontroller.yaml"
    spec.write_text(spec.read_text().replace("source: files/tools.msi}", "state: absent}"))
    removed = _run(fleet, tmp_path, "apply", "--auto-approve")
    assert removed.rc == 0, removed.text
    assert "- delete  HostState/stationcontroller/package:station-tools" in removed.out
    assert all(h.sandbox.state()["products"] == {} for h in hosts)
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0
    wrong = (tmp_path / "specs" / "stationcontroller.yaml").read_text().replace(f"productCode: '{code}', ", "")
    spec.write_text(wrong)
    refused = _run(fleet, tmp_path, "plan")
    assert refused.rc == 1 and "on Windows a package is an MSI: give its productCode" in refused.err, refused.text
