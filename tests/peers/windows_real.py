"""Real Windows hosts for tests/e2e/test_windows_winrm.py, and the peer hosts behind the same interface.

`RECON_TEST_WINRM_HOST=a,b,c` (with `RECON_TEST_WINRM_USER`, `RECON_TEST_WINRM_PASSWORD` and, if
needed, `RECON_TEST_WINRM_TRANSPORT` (default ntlm), `RECON_TEST_WINRM_SCHEME` (default https) and
`RECON_TEST_WINRM_CA`) runs the WinRM tests against those hosts instead of the test peers: three
hosts, which the tests change (use machines set aside for it). With kerberos, run kinit first: the
tests' own helper below reaches the hosts with the tickets in your credential cache. What the tests
make there, and remove again:
- `C:\\recon-test\\` (files, directories, the service's program) and `C:\\recon-test-builds\\`;
- services whose program is below `C:\\recon-test` (`ReconTestStationController`, and one with
  quotes and `$` in its name), running builds of a small C# service compiled on the host with
  Add-Type (.NET Framework's compiler, on every Windows): 2.4.0, 2.4.1 and a broken 2.5.0 that
  exits 0.3 s after it started. A start fails once when `C:\\recon-test\\fail-start-once` exists
  (the file is removed by that start), which is how a test makes one host fail;
- notepad processes (started through CIM, so that they outlive the WinRM shell).
This module has not been run against a real host from this project's machines (none can run here);
the peer (tests/peers/winrm_host.py) is what CI tests against.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

from tests.peers.winrm_fleet import WinFleet, WinHost

BASE = "C:\\recon-test"
BUILDS_DIR = "C:\\recon-test-builds"
SERVICE_SOURCE = r"""
using System;
using System.IO;
using System.ServiceProcess;
using System.Threading;
public class ReconTestStation_TAG : ServiceBase {
    Timer timer;
    public ReconTestStation_TAG() { ServiceName = "ReconTestStation"; }
    protected override void OnStart(string[] args) {
        string flag = @"C:\recon-test\fail-start-once";
        if (File.Exists(flag)) { File.Delete(flag); throw new InvalidOperationException("failing this start once"); }
        if (CRASH) { timer = new Timer(delegate(object s) { Environment.Exit(3); }, null, 300, Timeout.Infinite); }
    }
    public static void Main() { ServiceBase.Run(new ReconTestStation_TAG()); }
}
"""


def q(text: str) -> str:
    """A PowerShell single-quoted string: PowerShell reads the four Unicode single quotes as quotes too, so each
    of the five is doubled (written here, not taken from recon: the tests arrange hosts with their own code)."""
    return "'" + "".join(ch * 2 if ch in "'\u2018\u2019\u201a\u201b" else ch for ch in text) + "'"


@dataclass
class RealHost:
    """One real Windows host, reached with pywinrm directly (not through recon) to arrange and inspect it."""

    name: str
    address: str
    session: Any = field(repr=False)

    def ps(self, script: str) -> str:
        done = self.session.run_ps(script)
        if done.status_code != 0:
            raise RuntimeError(f"{self.name}: PowerShell failed ({done.status_code}): "
                               f"{done.std_err.decode(errors='replace')[-2000:]}")
        return str(done.std_out.decode("utf-8", "replace")).strip()

    def read(self, path: str) -> bytes | None:
        out = self.ps(f"$p = {q(path)}; if (Test-Path -LiteralPath $p -PathType Leaf) "
                      "{ [Convert]::ToBase64String([IO.File]::ReadAllBytes($p)) } else { '-' }")
        return None if out == "-" else base64.b64decode(out)

    def is_dir(self, path: str) -> bool:
        return self.ps(f"Test-Path -LiteralPath {q(path)} -PathType Container") == "True"

    def exists(self, path: str) -> bool:
        return self.ps(f"Test-Path -LiteralPath {q(path)}") == "True"

    def service(self, name: str) -> dict[str, str]:
        out = self.ps(f"$n = {q(name)}; $s = Get-Service | Where-Object {{ $_.Name -eq $n }}; "
                      "$w = Get-CimInstance Win32_Service | Where-Object { $_.Name -eq $n }; "
                      "@{status = [string]$s.Status; startup = [string]$s.StartType; "
                      "binary = [string]$w.PathName} | ConvertTo-Json -Compress")
        got = json.loads(out)
        return {"status": got["status"], "startup": got["startup"], "binary": got["binary"].strip('"')}

    def add_service(self, name: str, binary: str, status: str = "Running", startup: str = "Automatic") -> None:
        self.ps(f"$n = {q(name)}; New-Service -Name $n -BinaryPathName ('\"' + {q(binary)} + '\"') "
                f"-StartupType {startup} | Out-Null; "
                + ("Get-Service | Where-Object { $_.Name -eq $n } | Start-Service" if status == "Running" else ""))

    def processes(self, name: str) -> int:
        return int(self.ps(f"@(Get-Process -Name {q(name)} -ErrorAction SilentlyContinue).Count"))

    def start_processes(self, name: str, count: int) -> None:
        for _ in range(count):
            self.ps("Invoke-CimMethod -ClassName Win32_Process -MethodName Create "
                    f"-Arguments @{{CommandLine = {q(name + '.exe')}}} | Out-Null")

    def fail_start_once(self, service: str) -> None:
        self.ps(f"New-Item -ItemType File -Force -Path {q(BASE + chr(92) + 'fail-start-once')} | Out-Null")

    def clean(self) -> None:
        """Remove what the tests made: their services, notepads, C:\\recon-test."""
        self.ps(f"$b = {q(BASE)}; Get-CimInstance Win32_Service | Where-Object {{ $_.PathName -like \"*$b\\*\" }} | "
                "ForEach-Object { $n = $_.Name; Get-Service | Where-Object { $_.Name -eq $n } | "
                "Stop-Service -Force -ErrorAction SilentlyContinue; $_ | Invoke-CimMethod -MethodName Delete | "
                "Out-Null }; Get-Process notepad -ErrorAction SilentlyContinue | "
                "Stop-Process -Force; Start-Sleep -Seconds 1; "
                "if (Test-Path -LiteralPath $b) { Remove-Item -LiteralPath $b -Recurse -Force }; "
                "New-Item -ItemType Directory -Path $b | Out-Null")

    def install_build(self, version: str, path: str) -> None:
        """Put a build of the test service at `path` (copied from the builds compiled on the host)."""
        self.ps(f"$p = {q(path)}; New-Item -ItemType Directory -Force -Path (Split-Path -Parent $p) | Out-Null; "
                f"Copy-Item -LiteralPath {q(BUILDS_DIR + chr(92) + 'station-' + version + '.exe')} "
                "-Destination $p -Force")


@dataclass
class RealFleet:
    hosts: list[RealHost]
    user: str
    password: str
    transport: str
    scheme: str
    ca: str | None
    builds: dict[str, bytes]
    exec_prefix: list[str] = field(default_factory=list)  # recon runs here, as a user's machine would

    def stop(self) -> None:
        for h in self.hosts:
            h.clean()
            h.ps(f"Remove-Item -LiteralPath {q(BASE)}, {q(BUILDS_DIR)} -Recurse -Force -ErrorAction SilentlyContinue")


def connect(addresses: list[str]) -> RealFleet:
    import winrm

    user = os.environ.get("RECON_TEST_WINRM_USER", "Administrator")
    password = os.environ.get("RECON_TEST_WINRM_PASSWORD", "")
    transport = os.environ.get("RECON_TEST_WINRM_TRANSPORT", "ntlm")
    scheme = os.environ.get("RECON_TEST_WINRM_SCHEME", "https")
    ca = os.environ.get("RECON_TEST_WINRM_CA")
    hosts = []
    for i, address in enumerate(addresses):
        port = 5986 if scheme == "https" else 5985
        session = winrm.Session(f"{scheme}://{address}:{port}/wsman", auth=(user, password), transport=transport,
                                server_cert_validation="validate", ca_trust_path=ca or "legacy_requests")
        hosts.append(RealHost(f"win{i + 1}", address, session))
    builds = {}
    for h in hosts:  # each host compiles its own copies; the tests send the bytes of the first host's
        got = _compile(h)
        builds = builds or got
    return RealFleet(hosts, user, password, transport, scheme, ca, builds)


def _compile(host: RealHost) -> dict[str, bytes]:
    """The three builds of the test service, compiled on a host and read back (the same bytes go to every host)."""
    out = {}
    host.ps(f"New-Item -ItemType Directory -Force -Path {q(BUILDS_DIR)} | Out-Null")
    for version, crash in (("2.4.0", False), ("2.4.1", False), ("2.5.0", True)):
        tag = version.replace(".", "")
        source = SERVICE_SOURCE.replace("TAG", tag).replace("CRASH", "true" if crash else "false")
        target = f"{BUILDS_DIR}\\station-{version}.exe"
        host.ps(f"if (-not (Test-Path -LiteralPath {q(target)})) {{ Add-Type -TypeDefinition {q(source)} "
                f"-ReferencedAssemblies System.ServiceProcess -OutputAssembly {q(target)} "
                "-OutputType ConsoleApplication }")
        data = host.read(target)
        assert data is not None, f"{host.name}: {target} was not built"
        out["crash" if crash else version] = data
    return out


@dataclass
class PeerHost:
    """A test peer host (tests/peers/winrm_host.py) with the interface of RealHost, on its sandbox."""

    host: WinHost

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def address(self) -> str:
        return self.host.address

    def read(self, path: str) -> bytes | None:
        p = self.host.sandbox.path(path)
        return p.read_bytes() if p.is_file() else None

    def is_dir(self, path: str) -> bool:
        return self.host.sandbox.path(path).is_dir()

    def exists(self, path: str) -> bool:
        return self.host.sandbox.path(path).exists()

    def service(self, name: str) -> dict[str, str]:
        got = self.host.sandbox.service(name)
        return {"status": got["status"], "startup": got["startup"], "binary": got["binary"]}

    def add_service(self, name: str, binary: str, status: str = "Running", startup: str = "Automatic") -> None:
        self.host.sandbox.add_service(name, binary, status=status, startup=startup)

    def processes(self, name: str) -> int:
        return self.host.sandbox.processes(name)

    def start_processes(self, name: str, count: int) -> None:
        state = self.host.sandbox.state()
        state["processes"][name] = state["processes"].get(name, 0) + count
        self.host.sandbox.save(state)

    def fail_start_once(self, service: str) -> None:
        (self.host.root / "faults.json").write_text(json.dumps({"failStartOnce": [service]}))

    def install_build(self, version: str, path: str) -> None:
        p = self.host.sandbox.path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(PEER_BUILDS[version])

    def clean(self) -> None:
        import shutil

        for item in self.host.root.iterdir():
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()
        (self.host.root / "C").mkdir()

    def products(self) -> dict[str, str]:
        return dict(self.host.sandbox.state().get("products", {}))

    def requests(self) -> list[str]:
        return self.host.requests()

    def auth_log(self) -> str:
        log = self.host.root / "auth.log"
        return log.read_text() if log.exists() else ""


PEER_BUILDS = {"2.4.0": b"stationcontroller 2.4.0\n", "2.4.1": b"stationcontroller 2.4.1\n",
               "crash": b"stationcontroller 2.5.0 RECON-TEST-CRASH\n"}


def peer_hosts(fleet: WinFleet) -> list[PeerHost]:
    return [PeerHost(h) for h in fleet.hosts]
