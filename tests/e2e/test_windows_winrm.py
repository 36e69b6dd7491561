"""Windows hosts over WinRM, end to end: the recon CLI in a network namespace of its own, unmodified
pywinrm, HTTPS with the certificate checked, and WinRM test hosts (tests/peers/winrm_host.py) in
namespaces of their own, which emulate recon's PowerShell against a sandbox per host.

With RECON_TEST_WINRM_HOST=a,b,c the same tests run against those real Windows hosts instead
(tests/peers/windows_real.py says what they need and what is made there); the tests that inspect
the peers' own logs or need what only the peers provide (the test KDC, MSI files of the peer's
format) are for the peers only."""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, crash_apply, recon
from tests.peers import kdc, windows_real, winrm_fleet
from tests.peers.windows_real import PeerHost, RealFleet, RealHost
from tests.peers.winrm_fleet import WinFleet

REAL = [a.strip() for a in os.environ.get("RECON_TEST_WINRM_HOST", "").split(",") if a.strip()]
if REAL:  # below C:\recon-test, with a service of the tests' own name
    BINARY, SERVICE, VERIFY = windows_real.BASE + r"\Station\stationcontroller.exe", "ReconTestStationController", "3"
    ENV = {"CIS_WINRM_PASSWORD": os.environ.get("RECON_TEST_WINRM_PASSWORD", "")}
else:
    BINARY, SERVICE, VERIFY = r"C:\Program Files\Station\stationcontroller.exe", "StationController", "0.2"
    ENV = {"CIS_WINRM_PASSWORD": winrm_fleet.PASSWORD}
Fleet = WinFleet | RealFleet
Host = PeerHost | RealHost
peer_only = pytest.mark.skipif(bool(REAL), reason="inspects the test peers (their logs, KDC or MSI format)")


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    f: Fleet = windows_real.connect(REAL) if REAL else winrm_fleet.start(3)
    yield f
    f.stop()


def builds(fleet: Fleet) -> dict[str, bytes]:
    return fleet.builds if isinstance(fleet, RealFleet) else windows_real.PEER_BUILDS


@pytest.fixture
def hosts(fleet: Fleet) -> list[Host]:
    """Each test starts from hosts that run StationController 2.4.0 (three of them)."""
    got: list[Host] = list(fleet.hosts) if isinstance(fleet, RealFleet) else windows_real.peer_hosts(fleet)
    assert len(got) >= 3, "RECON_TEST_WINRM_HOST: the WinRM tests need three hosts, comma-separated"
    for h in got:
        h.clean()
        h.install_build("2.4.0", BINARY)
        h.add_service(SERVICE, BINARY)
    return got


def _winrm(fleet: Fleet, password: str, ca: bool) -> str:
    """The group's winrm settings for the peers (Basic over HTTPS) or the real hosts (as configured)."""
    if isinstance(fleet, RealFleet):
        user, transport, scheme, ca_file = fleet.user, fleet.transport, fleet.scheme, fleet.ca
    else:
        user, transport, scheme, ca_file = winrm_fleet.USER, "basic", "https", str(fleet.ca)
    ca_part = f", caFile: '{ca_file}'" if ca and ca_file else ""
    return f"{{user: '{user}', password: {password}, transport: {transport}, scheme: {scheme}{ca_part}}}"


def _project(tmp: Path, fleet: Fleet, binary: bytes | None = None, strategy: str = "",
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
          winrm: {_winrm(fleet, password, ca)}
          hosts:
        """) + hosts + "\n")
    example = (ROOT / "examples" / "stationcontroller" / "stationcontroller.yaml").read_text()
    example = example.replace("strategy: {batch: 1, maxFailures: 0}", strategy or "strategy: {batch: 1, "
                              "maxFailures: 0}").replace("verifySeconds: 5", f"verifySeconds: {VERIFY}")
    example = example.replace(r"'C:\Program Files\Station\stationcontroller.exe'", f"'{BINARY}'")
    example = example.replace("StationController", SERVICE)
    (tmp / "specs" / "stationcontroller.yaml").write_text(example + extra)
    (tmp / "specs" / "files" / "stationcontroller.exe").write_bytes(binary or builds(fleet)["2.4.1"])


def _run(fleet: Fleet, tmp: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return recon(*args, cwd=tmp, env={**ENV, **(env or {})}, prefix=fleet.exec_prefix, timeout=300)


def test_the_stationcontroller_update_on_three_hosts(tmp_path: Path, fleet: Fleet, hosts: list[Host]) -> None:
    _project(tmp_path, fleet)
    peers = [h for h in hosts if isinstance(h, PeerHost)]
    for h in peers:
        (h.host.root / "requests.log").unlink(missing_ok=True)
    planned = _run(fleet, tmp_path, "plan", "--detailed-exitcode")
    assert planned.rc == 2, planned.text
    assert f"@ {', '.join(h.name for h in hosts)} ({len(hosts)} targets)" in planned.out
    assert f"file:{BINARY}" in planned.out
    assert f"replaced while {SERVICE} is stopped" in planned.out
    assert not ENV["CIS_WINRM_PASSWORD"] or ENV["CIS_WINRM_PASSWORD"] not in planned.text
    for h in peers:  # one shell, one command (its script in one Send), its output as it came, the shell closed
        got = h.requests()
        assert [r for r in got if r != "Receive"] == ["Create", "Command", "Send", "Signal", "Delete"], got
        assert 1 <= got.count("Receive") <= 3, got

    applied = _run(fleet, tmp_path, "apply", "--auto-approve")
    assert applied.rc == 0, applied.text
    for h in hosts:
        assert h.read(BINARY) == builds(fleet)["2.4.1"]
        assert h.service(SERVICE)["status"] == "Running"
        assert not h.exists(BINARY + ".recon-bak")  # backups go after a success
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0


def test_do_restart_and_logs_of_a_windows_service(tmp_path: Path, fleet: Fleet, hosts: list[Host]) -> None:
    """recon do over WinRM: a service restarted host after host (one host by @HOST), its events read, and
    --follow refused there with the reason."""
    _project(tmp_path, fleet)
    assert _run(fleet, tmp_path, "apply", "--auto-approve").rc == 0
    svc = f"HostState/stationcontroller/service:{SERVICE}"
    done = _run(fleet, tmp_path, "do", "restart", svc, "--yes")
    assert done.rc == 0 and f"Done: {len(hosts)} ok, 0 failed" in done.err, done.text
    assert all(h.service(SERVICE)["status"] == "Running" for h in hosts)
    one = _run(fleet, tmp_path, "do", "restart", f"{svc}@{hosts[1].name}", "--yes", "--json")
    assert one.rc == 0 and [r["id"] for r in json.loads(one.out)["results"]] == [f"{svc}@{hosts[1].name}"]
    logs = _run(fleet, tmp_path, "do", "logs", f"{svc}@{hosts[0].name}", "--tail", "2", "--since", "1h")
    assert logs.rc == 0, logs.text
    lines = [line for line in logs.out.splitlines() if line.startswith(hosts[0].name)]
    assert len(lines) == 2 and "entered the stopped state" in lines[0] and "entered the running state" in lines[1]
    follow = _run(fleet, tmp_path, "do", "logs", svc, "--follow")
    assert follow.rc == 1 and "--follow is not available for Windows services" in follow.text, follow.text
    runs = [r for r in json.loads(_run(fleet, tmp_path, "audit", "--json").out) if r["command"] == "do"]
    assert [(r["action"], r["outcome"]) for r in runs] == [("logs", "failed"), ("logs", "ok"), ("restart", "ok"),
                                                           ("restart", "ok")]
    assert runs[2]["params"] == {} and len([e for e in runs[3]["events"] if e["event"] == "result"]) == len(hosts)


def test_a_host_that_fails_is_rolled_back_while_the_others_complete(tmp_path: Path, fleet: Fleet,
                                                                    hosts: list[Host]) -> None:
    _project(tmp_path, fleet, strategy="strategy: {batch: 3, maxFailures: 1}")
    hosts[1].fail_start_once(SERVICE)
    applied = _run(fleet, tmp_path, "apply", "--auto-approve")
    assert applied.rc == 1, applied.text
    assert "the host was rolled back" in applied.out, applied.text
    if not REAL:  # the peer's words for it; Windows says it in its own
        assert "did not respond to the start" in applied.out
    new, old = builds(fleet)["2.4.1"], builds(fleet)["2.4.0"]
    assert [h.read(BINARY) for h in hosts[:3]] == [new, old, new]
    assert all(h.service(SERVICE)["status"] == "Running" for h in hosts)
    again = _run(fleet, tmp_path, "plan")
    assert hosts[1].name in again.out and "1 to update" in again.out, again.out


def test_a_broken_build_stops_the_rollout_after_the_first_host(tmp_path: Path, fleet: Fleet,
                                                               hosts: list[Host]) -> None:
    _project(tmp_path, fleet, binary=builds(fleet)["crash"])
    applied = _run(fleet, tmp_path, "apply", "--auto-approve")
    assert applied.rc == 1 and f"service {SERVICE} stopped after it started" in applied.out, applied.text
    assert all(h.read(BINARY) == builds(fleet)["2.4.0"] for h in hosts)
    assert all(h.service(SERVICE)["status"] == "Running" for h in hosts)
    assert applied.out.count("the host was rolled back") == 1  # batch 1, maxFailures 0: no second host


def test_a_service_and_a_process_with_awkward_names(tmp_path: Path, fleet: Fleet, hosts: list[Host]) -> None:
    weird_service = 'Station "Ctl" $env:x'
    for h in hosts:
        h.add_service(weird_service, BINARY, status="Stopped", startup="Manual")
        h.start_processes("notepad", 2)
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
        assert h.service(weird_service) == {"binary": BINARY, "status": "Running", "startup": "Automatic"}
        assert h.processes("notepad") == 0
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0


REAL = os.environ.get("RECON_TEST_WINRM_HOST")


def test_a_large_file_awkward_paths_and_a_command_on_any_windows_host(tmp_path: Path, fleet: Fleet,
                                                                     hosts: list[Host]) -> None:
    """Against the first host: everything below C:\\recon-test there is made by this test."""
    base = "C:\\recon-test"
    weird_path = base + r"\it's $HOME (x86)\model ‘weights’.bin"
    big = os.urandom(1536 * 1024)
    bs = "\\"
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "weights.bin").write_bytes(big)
    (tmp_path / "specs" / "win.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: recon/v1
        kind: HostGroup
        metadata: {{name: windows}}
        spec:
          connection: winrm
          winrm: {_winrm(fleet, "{env: CIS_WINRM_PASSWORD}", ca=True)}
          hosts: [{{name: target, address: '{hosts[0].address}'}}]
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
        return _run(fleet, tmp_path, *args)

    applied = run("apply", "--auto-approve")
    assert applied.rc == 0, applied.text
    assert run("plan", "--detailed-exitcode").rc == 0  # re-read on the host: sha256, directory, marker
    got = hosts[0].read(weird_path)
    assert got is not None and hashlib.sha256(got).hexdigest() == hashlib.sha256(big).hexdigest()
    assert hosts[0].is_dir(base + "\\logs $(whoami)") and hosts[0].exists(base + "\\marker.txt")
    if isinstance(hosts[0], PeerHost):
        assert hosts[0].requests().count("Send") >= 8  # the 1.5 MB travelled in several messages
    # its last byte flipped: random bytes end in any given one one time in 256, and then nothing changed
    (tmp_path / "specs" / "weights.bin").write_bytes(big[:-1] + bytes([big[-1] ^ 0xFF]))
    changed = run("plan")
    assert "sha256:" in changed.out and "size: 1572864 → 1572864" in changed.out, changed.out


def test_wrong_credentials_and_an_unknown_certificate_are_one_clear_message(tmp_path: Path, fleet: Fleet,
                                                                            hosts: list[Host]) -> None:
    _project(tmp_path, fleet)
    wrong = _run(fleet, tmp_path, "plan", env={"CIS_WINRM_PASSWORD": "not-it"})
    user = fleet.user if isinstance(fleet, RealFleet) else winrm_fleet.USER
    said = f"kinit {user} failed" if "transport: kerberos" in _winrm(fleet, "", True) else f"refused the user {user!r}"
    assert wrong.rc == 1 and said in wrong.text, wrong.text
    assert "not-it" not in wrong.text and "Traceback" not in wrong.text
    if isinstance(fleet, RealFleet) and not fleet.ca:
        return  # the real hosts' certificates are trusted as they are: no unknown CA to try
    _project(tmp_path, fleet, ca=False)
    unknown = _run(fleet, tmp_path, "plan")
    assert unknown.rc == 1 and "cannot be verified: give its CA in winrm.caFile" in unknown.text, unknown.text


def test_resources_for_the_wrong_kind_of_host_are_refused_before_any_connection(tmp_path: Path,
                                                                               fleet: Fleet) -> None:
    _project(tmp_path, fleet, extra="    - {type: file, path: /etc/app.conf, content: x}\n"
                                    "    - {type: package, name: nginx}\n")
    got = _run(fleet, tmp_path, "plan")
    assert got.rc == 1 and "/etc/app.conf is not a Windows path (win1 is reached by winrm)" in got.err, got.text
    assert "package nginx: on Windows a package is an MSI: give its productCode" in got.err


@peer_only
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_ntlm_over_http_with_message_encryption_and_over_https(tmp_path: Path, fleet: WinFleet,
                                                               hosts: list[PeerHost], scheme: str) -> None:
    """pywinrm's NTLM (pyspnego) against the peer's NTLM acceptor: over http every message is sealed with the
    NTLM session key (MS-WSMV 2.2.9.1.1); over https TLS protects them."""
    _project(tmp_path, fleet)
    group = tmp_path / "specs" / "group.yaml"
    group.write_text(group.read_text().replace("transport: basic, scheme: https", f"transport: ntlm, scheme: {scheme}"))
    applied = _run(fleet, tmp_path, "apply", "--auto-approve")
    assert applied.rc == 0, applied.text
    assert all(h.read(BINARY) == builds(fleet)["2.4.1"] for h in hosts)
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0
    sealed = [h.auth_log().count("ntlm-encrypted") for h in hosts]
    assert all(n > 5 for n in sealed) if scheme == "http" else sealed == [0, 0, 0], sealed
    wrong = _run(fleet, tmp_path, "plan", env={"CIS_WINRM_PASSWORD": "not-it"})
    assert wrong.rc == 1 and "refused the user 'Administrator' (401)" in wrong.text, wrong.text


@peer_only
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_kerberos_with_tickets_from_a_real_kdc(tmp_path: Path, fleet: WinFleet, hosts: list[PeerHost],
                                               scheme: str) -> None:
    """pywinrm's Kerberos (pykerberos) with the ticket recon gets by kinit from the test KDC (MIT krb5-kdc) for
    the group's user; the hosts accept it with their HTTP/win<i>.recon.test keys; over http every message is
    sealed with the Kerberos session key (MS-WSMV 2.2.9.1.1)."""
    _project(tmp_path, fleet, password="{env: CIS_KRB_PASSWORD}")
    group = tmp_path / "specs" / "group.yaml"
    text = group.read_text().replace("user: 'Administrator'", f"user: {kdc.USER}")
    text = text.replace("transport: basic, scheme: https", f"transport: kerberos, scheme: {scheme}")
    for h in hosts:
        text = text.replace(f"address: {h.address}}}", f"address: {h.name}.{kdc.DOMAIN}}}")
    group.write_text(text)
    env = {**fleet.kerberos_env, "CIS_KRB_PASSWORD": kdc.PASSWORD}
    applied = _run(fleet, tmp_path, "apply", "--auto-approve", env=env)
    assert applied.rc == 0, applied.text
    assert all(h.read(BINARY) == builds(fleet)["2.4.1"] for h in hosts)
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode", env=env).rc == 0
    for h in hosts:
        log = h.auth_log()
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


def test_an_interrupted_apply_is_rolled_back_on_the_windows_host(tmp_path: Path, fleet: Fleet,
                                                                  hosts: list[Host]) -> None:
    work = windows_real.BASE + "\\Run"
    _project(tmp_path, fleet, extra=textwrap.indent(textwrap.dedent(f"""\
        - {{type: directory, path: '{work}\\logs'}}
        - type: command
          id: slow
          run: Start-Sleep -Seconds 5; New-Item -ItemType File -Path '{work}\\done' -Force
          creates: '{work}\\done'
        """), "    "))
    group = tmp_path / "specs" / "group.yaml"  # one host
    group.write_text("\n".join(line for line in group.read_text().splitlines()
                               if not any(f"name: {h.name}," in line for h in hosts[1:])) + "\n")
    first = hosts[0]
    crash_apply(tmp_path, lambda: first.is_dir(work + "\\logs"), settle=0.3, timeout=60, env=ENV,
                prefix=fleet.exec_prefix)
    assert first.read(BINARY) == builds(fleet)["2.4.1"]
    listed = _run(fleet, tmp_path, "rollback", "--list")
    assert "2 of 3 changes finished" in listed.out, listed.text  # the file and the directory
    done = _run(fleet, tmp_path, "rollback", "--auto-approve")
    assert done.rc == 0 and "Rollback complete: 2 undone, 0 not." in done.out, done.text
    assert first.read(BINARY) == builds(fleet)["2.4.0"]
    assert not first.exists(BINARY + ".recon-bak") and not first.exists(work + "\\logs")
    assert first.service(SERVICE)["status"] == "Running"


@peer_only
def test_an_msi_package_installed_then_removed(tmp_path: Path, fleet: WinFleet, hosts: list[PeerHost]) -> None:
    """Windows packages are MSI packages, known by product code (the peer's installers are text files
    `MSI {code} version`; its msiexec fails on anything else)."""
    code = "{6C1D1A72-8E3B-4F2A-9C57-2D4A1B0E9F11}"
    _project(tmp_path, fleet, extra=f"    - {{type: package, name: station-tools, productCode: '{code}', "
                                    "source: files/tools.msi}\n")
    (tmp_path / "specs" / "files" / "tools.msi").write_text(f"MSI {code} 3.1.0\n")
    planned = _run(fleet, tmp_path, "plan")
    assert "+ create  HostState/stationcontroller/package:station-tools" in planned.out, planned.out
    assert _run(fleet, tmp_path, "apply", "--auto-approve").rc == 0
    assert all(h.products() == {code: "3.1.0"} for h in hosts)
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0
    spec = tmp_path / "specs" / "stationcontroller.yaml"
    spec.write_text(spec.read_text().replace("source: files/tools.msi}", "state: absent}"))
    removed = _run(fleet, tmp_path, "apply", "--auto-approve")
    assert removed.rc == 0, removed.text
    assert "- delete  HostState/stationcontroller/package:station-tools" in removed.out
    assert all(h.products() == {} for h in hosts)
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0
    wrong = (tmp_path / "specs" / "stationcontroller.yaml").read_text().replace(f"productCode: '{code}', ", "")
    spec.write_text(wrong)
    refused = _run(fleet, tmp_path, "plan")
    assert refused.rc == 1 and "on Windows a package is an MSI: give its productCode" in refused.err, refused.text


def test_a_401_without_an_ntlm_challenge_is_one_clear_message(tmp_path: Path) -> None:
    """Issue 18 case 13: a listener that answers 401 offering only Negotiate (Kerberos) ended in "internal
    error" (requests-ntlm raises PermissionError)."""
    import http.server
    import threading

    class OnlyNegotiate(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(401)
            self.send_header("WWW-Authenticate", "Negotiate")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OnlyNegotiate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "specs").mkdir()
        (tmp_path / "specs" / "g.yaml").write_text(textwrap.dedent(f"""\
            apiVersion: recon/v1
            kind: HostGroup
            metadata: {{name: win}}
            spec:
              connection: winrm
              winrm: {{user: Administrator, password: {{env: P}}, transport: ntlm, scheme: http}}
              hosts: [{{name: w1, address: 127.0.0.1, port: {server.server_port}}}]
            ---
            apiVersion: recon/v1
            kind: HostState
            metadata: {{name: s}}
            spec:
              group: win
              resources: [{{type: service, name: Spooler, state: running}}]
            """))
        got = recon("plan", cwd=tmp_path, env={"P": "secret-password"})
        assert got.rc == 1, got.text
        assert "w1: " in got.err and "401 without an NTLM challenge" in got.err and "winrm.transport" in got.err
        assert "internal error" not in got.text and "Traceback" not in got.text and "secret-password" not in got.text
    finally:
        server.shutdown()


def test_a_text_file_change_shows_its_lines_read_in_the_same_round_trip(tmp_path: Path, fleet: Fleet,
                                                                        hosts: list[Host]) -> None:
    """Issue 22: a config file's change on Windows hosts showed two digests. The plan shows the lines changed; the
    old text comes with the facts (the host compares the digests and sends it only when they differ): still one
    command per host. A sensitive file shows no lines."""
    folder = BINARY.rsplit("\\", 1)[0]
    _project(tmp_path, fleet)

    def conf(mode: str, token: str) -> None:
        (tmp_path / "specs" / "conf.yaml").write_text(textwrap.dedent(f"""\
            apiVersion: recon/v1
            kind: HostState
            metadata: {{name: station-conf}}
            spec:
              group: cis-servers
              resources:
                - {{type: file, path: '{folder}\\station.ini', content: "mode = {mode}\\nlevel = 1\\n"}}
                - {{type: file, path: '{folder}\\token.txt', content: "{token}\\n", sensitive: true}}
            """))

    conf("a", "tok-1")
    assert _run(fleet, tmp_path, "apply", "--auto-approve").rc == 0
    conf("b", "tok-2")
    peers = [h for h in hosts if isinstance(h, PeerHost)]
    for h in peers:
        (h.host.root / "requests.log").unlink(missing_ok=True)
    planned = _run(fleet, tmp_path, "plan")
    assert planned.rc == 0, planned.text
    assert "-mode = a" in planned.out and "+mode = b" in planned.out, planned.out
    assert "tok-1" not in planned.text and "tok-2" not in planned.text
    for h in peers:  # one shell and one command per host, as a plan without diffs
        got = h.requests()
        assert [r for r in got if r != "Receive"] == ["Create", "Command", "Send", "Signal", "Delete"], got
    assert _run(fleet, tmp_path, "apply", "--auto-approve").rc == 0
    assert _run(fleet, tmp_path, "plan", "--detailed-exitcode").rc == 0
