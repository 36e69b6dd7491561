"""What recon's PowerShell does, emulated for the WinRM test peer (no PowerShell can run here).

It runs scripts made of the prelude in ps_prelude.ps1 (its own copy of what recon's
providers/hosts/windows/powershell.py sends; a script with any other prelude is refused) and calls
of its functions, against a per-host sandbox directory: `C:\\X\\Y` is `<root>/C/X/Y`; services and
processes live in `<root>/state.json`. Each function is emulated as the prelude defines it, and
nothing else is: a script with any other line is refused.

Windows behaviour it keeps: a running service's program file is locked (replacing it fails with
the error Windows gives); a service whose program file contains `RECON-TEST-CRASH` stops right
after it starts (as a broken build would); stopping a service ends its process; a test can make a
host's next start of a service fail (`faults.json`: {"failStartOnce": [name]}); an MSI is a text file
`MSI {product code} version`, and installed products are listed in state.json. The user's own
PowerShell (a command's `run` and `unless`) is emulated only for these statements, one per line or
`;`: `exit N`, `Write-Output 'text'`, `Set-Content -Path 'p' -Value 'v'`, `New-Item -ItemType File
-Path 'p' -Force`, `Start-Sleep -Seconds N`, `if (Test-Path 'p') { exit 0 } else { exit 1 }`; others
exit 1, saying so.
What it does not emulate: ACLs, case-insensitive paths, services' dependencies, real timing.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The prelude this emulator was written against: its own copy, never recon's module (a test peer shares no code
# with recon). A script whose prelude differs is refused, so a change to recon's PowerShell fails the WinRM tests
# until this copy and the emulation of what changed are brought along with it.
PRELUDE = (Path(__file__).with_name("ps_prelude.ps1")).read_bytes().decode("utf-8")
BODY = "# recon body"

QUOTES = "'\u2018\u2019\u201a\u201b"
_ARG = re.compile(f"[{QUOTES}]((?:[^{QUOTES}]|[{QUOTES}][{QUOTES}])*)[{QUOTES}]")
CRASH = b"RECON-TEST-CRASH"
LOCKED = "The process cannot access the file '{}' because it is being used by another process."


class Failed(Exception):
    def __init__(self, step: str, error: str) -> None:
        super().__init__(error)
        self.step, self.error = step, error


def parse_call(line: str) -> tuple[str, list[str]]:
    name, _, rest = line.partition(" ")
    args, pos = [], 0
    rest = rest.strip()
    while pos < len(rest):
        m = _ARG.match(rest, pos)
        if m is None:
            raise ValueError(f"not a quoted value at {rest[pos:pos + 20]!r}")
        args.append(re.sub(f"([{QUOTES}])[{QUOTES}]", r"\1", m.group(1)))
        pos = m.end()
        while pos < len(rest) and rest[pos] == " ":
            pos += 1
    return name, args


class Sandbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_file = root / "state.json"

    # the host's file system and services

    def path(self, win: str) -> Path:
        if not re.match(r"^[A-Za-z]:\\", win):
            raise Failed("", f"Cannot find path '{win}' because it is not absolute.")
        return self.root.joinpath(win[0].upper(), *[p for p in win[3:].split("\\") if p])

    def state(self) -> dict[str, Any]:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())  # type: ignore[no-any-return]
        return {"services": {}, "processes": {}}

    def save(self, state: dict[str, Any]) -> None:
        self.state_file.write_text(json.dumps(state, indent=1))

    def add_service(self, name: str, binary: str, status: str = "Running", startup: str = "Automatic") -> None:
        state = self.state()
        state["services"][name] = {"binary": binary, "status": status, "startup": startup}
        self.save(state)

    def service(self, name: str) -> dict[str, Any]:
        svc = self.state()["services"].get(name)
        if svc is None:
            raise Failed("", f"Cannot find any service with service name '{name}'.")
        return svc  # type: ignore[no-any-return]

    def set_service(self, name: str, **values: str) -> None:
        state = self.state()
        state["services"][name].update(values)
        self.save(state)

    def start(self, name: str) -> None:
        svc = self.service(name)
        faults = self.root / "faults.json"
        once = json.loads(faults.read_text()) if faults.exists() else {}
        if name in once.get("failStartOnce", []):  # a host-specific fault, set by a test
            once["failStartOnce"].remove(name)
            faults.write_text(json.dumps(once))
            raise Failed("", f"Service '{name}' cannot be started: the service did not respond to the start or "
                         "control request in a timely fashion.")
        if svc["startup"] == "Disabled":
            raise Failed("", f"Service '{name}' cannot be started because it is disabled.")
        program = self.path(svc["binary"])
        if not program.is_file():
            raise Failed("", f"Service '{name}' cannot be started: its program {svc['binary']} is missing.")
        self.set_service(name, status="Running", crashes="yes" if CRASH in program.read_bytes() else "")
        self.event(name, "running")

    def stop(self, name: str) -> None:
        self.service(name)
        self.set_service(name, status="Stopped")
        self.event(name, "stopped")

    def event(self, name: str, status: str) -> None:
        """What the Service Control Manager writes to the System event log when a service changes state."""
        state = self.state()
        at = datetime.datetime.now(datetime.UTC).isoformat()
        state.setdefault("events", []).append({"t": at, "service": name,
                                               "m": f"The {name} service entered the {status} state."})
        self.save(state)

    def settle(self) -> None:
        """Time passes: services whose program crashes have stopped."""
        state = self.state()
        for svc in state["services"].values():
            if svc.get("crashes") and svc["status"] == "Running":
                svc["status"] = "Stopped"
        self.save(state)

    def processes(self, name: str) -> int:
        state = self.state()
        running = sum(1 for s in state["services"].values() if s["status"] == "Running"
                      and Path(s["binary"].replace("\\", "/")).stem.lower() == name.lower())
        return running + int(state["processes"].get(name.lower(), 0))

    def locked(self, win: str) -> bool:
        return any(s["status"] == "Running" and s["binary"].lower() == win.lower()
                   for s in self.state()["services"].values())

    # scripts

    def run(self, text: str, emit: Callable[[str], None]) -> int:
        """Run a script of recon's; its output lines go to `emit`; the exit code is returned."""
        head, sep, body = text.partition(BODY + "\n")
        if not sep or head != PRELUDE:
            emit(json.dumps({"error": "the test peer emulates the prelude of tests/peers/ps_prelude.ps1, and this "
                                      "script's is another: change that copy and the emulation with recon's"}))
            return 2
        for line in body.splitlines():
            if not line.strip():
                continue
            try:
                name, args = parse_call(line)
                handler = getattr(self, "do_" + name.replace("Recon-", "").replace("-", "_"), None)
                if handler is None:
                    raise ValueError(f"unknown function {name}")
                handler(emit, *args)
            except Failed as exc:
                emit(json.dumps({"s": int(exc.step or 0), "ok": False, "error": exc.error}))
                return 1
            except (ValueError, TypeError) as exc:
                emit(json.dumps({"error": f"the test peer cannot run {line[:80]!r}: {exc}"}))
                return 2
        return 0

    # the prelude's functions

    def do_FileFact(self, emit: Callable[[str], None], i: str, p: str, want: str = "", most: str = "0") -> None:
        path = self.path(p)
        out: dict[str, Any] = {"i": int(i), "exists": path.exists(), "backup": self.path(p + ".recon-bak").exists()}
        if path.exists():
            out["dir"] = path.is_dir()
            if path.is_file():
                data = path.read_bytes()
                out["size"] = len(data)
                out["sha256"] = hashlib.sha256(data).hexdigest()
                if want and out["sha256"] != want and len(data) <= int(most):  # [Convert]::ToBase64String
                    out["text"] = base64.b64encode(data).decode()
        emit(json.dumps(out))

    def do_DirFact(self, emit: Callable[[str], None], i: str, p: str) -> None:
        path = self.path(p)
        emit(json.dumps({"i": int(i), "exists": path.exists(), **({"dir": path.is_dir()} if path.exists() else {})}))

    def do_ServiceFact(self, emit: Callable[[str], None], i: str, n: str) -> None:
        self.settle()
        svc = self.state()["services"].get(n)
        emit(json.dumps({"i": int(i), "exists": False} if svc is None else
                        {"i": int(i), "exists": True, "status": svc["status"], "startup": svc["startup"]}))

    def do_ServiceLog(self, emit: Callable[[str], None], n: str, tail: str, since: str) -> None:
        """Get-WinEvent of the service and of the Service Control Manager about it: the newest `tail`, oldest
        first, newer than `since` seconds (0: any)."""
        self.service(n)
        events = [e for e in self.state().get("events", []) if e["service"] == n]
        if int(since):
            start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=int(since))
            events = [e for e in events if datetime.datetime.fromisoformat(e["t"]) >= start]
        for e in events[-int(tail):] if int(tail) else []:
            emit(json.dumps({"t": e["t"], "m": e["m"]}))

    def do_ProcessFact(self, emit: Callable[[str], None], i: str, n: str) -> None:
        self.settle()
        emit(json.dumps({"i": int(i), "count": self.processes(n)}))

    def do_GuardFact(self, emit: Callable[[str], None], i: str, creates: str, unless: str) -> None:
        out: dict[str, Any] = {"i": int(i), "creates": bool(creates) and self.path(creates).exists()}
        if unless:
            out["unless"] = self.child(unless)[0]
        emit(json.dumps(out))

    def do_Begin(self, emit: Callable[[str], None], p: str) -> None:
        new = self.path(p + ".recon-new")
        new.parent.mkdir(parents=True, exist_ok=True)
        new.write_bytes(b"")

    def do_Chunk(self, emit: Callable[[str], None], p: str, b64: str) -> None:
        with self.path(p + ".recon-new").open("ab") as f:
            f.write(base64.b64decode(b64))

    def _services(self, s: str, names: str, want: str) -> None:
        for n in [x for x in names.split("/") if x]:
            try:
                self.start(n) if want == "Running" else self.stop(n)
            except Failed as exc:
                raise Failed(s, f"service {n}: {exc.error}") from None

    def do_PutFile(self, emit: Callable[[str], None], s: str, p: str, sha: str, names: str, verify: str,
                   t: str) -> None:
        new, path = self.path(p + ".recon-new"), self.path(p)
        if hashlib.sha256(new.read_bytes()).hexdigest() != sha:
            raise Failed(s, "the file arrived corrupted (sha256 differs)")
        self._services(s, names, "Stopped")
        if self.locked(p):
            raise Failed(s, f"replacing {p}: " + LOCKED.format(p))
        if path.exists():
            self.path(p + ".recon-bak").write_bytes(path.read_bytes())
        new.replace(path)
        self._services(s, names, "Running")
        if names:
            time.sleep(min(float(verify), 0.2))  # the real function waits verifySeconds
            self.settle()
            for n in [x for x in names.split("/") if x]:
                if self.service(n)["status"] != "Running":
                    raise Failed(s, f"service {n} stopped after it started")
        emit(json.dumps({"s": int(s), "ok": True}))

    def do_Dir(self, emit: Callable[[str], None], s: str, p: str) -> None:
        self.path(p).mkdir(parents=True, exist_ok=True)
        emit(json.dumps({"s": int(s), "ok": True}))

    def do_Remove(self, emit: Callable[[str], None], s: str, p: str) -> None:
        path = self.path(p)
        if path.is_file():
            if self.locked(p):
                raise Failed(s, LOCKED.format(p))
            path.replace(self.path(p + ".recon-bak"))
        elif path.is_dir():
            import shutil

            shutil.rmtree(path)
        emit(json.dumps({"s": int(s), "ok": True}))

    def do_Service(self, emit: Callable[[str], None], s: str, n: str, want: str, startup: str, t: str) -> None:
        try:
            self.service(n)
            if startup:
                self.set_service(n, startup=startup)
            if want in ("Running", "Restart"):
                if want == "Restart":
                    self.stop(n)
                self.start(n)
            elif want == "Stopped":
                self.stop(n)
        except Failed as exc:
            raise Failed(s, f"service {n}: {exc.error}") from None
        emit(json.dumps({"s": int(s), "ok": True}))

    def do_StopProcess(self, emit: Callable[[str], None], s: str, n: str, t: str) -> None:
        state = self.state()
        state["processes"].pop(n.lower(), None)
        for svc in state["services"].values():  # its service stops with it
            if Path(svc["binary"].replace("\\", "/")).stem.lower() == n.lower():
                svc["status"] = "Stopped"
        self.save(state)
        emit(json.dumps({"s": int(s), "ok": True}))

    def do_Run(self, emit: Callable[[str], None], s: str, b64: str) -> None:
        code, out = self.child(b64)
        if code != 0:
            raise Failed(s, f"exit {code}: {out}")
        emit(json.dumps({"s": int(s), "ok": True}))

    def do_UndoFile(self, emit: Callable[[str], None], s: str, p: str, names: str, t: str) -> None:
        self._services(s, names, "Stopped")
        bak, path = self.path(p + ".recon-bak"), self.path(p)
        if bak.exists():
            bak.replace(path)
        elif path.exists():
            path.unlink()
        self.path(p + ".recon-new").unlink(missing_ok=True)
        self._services(s, names, "Running")
        emit(json.dumps({"s": int(s), "ok": True}))

    def do_MsiFact(self, emit: Callable[[str], None], i: str, code: str) -> None:
        version = self.state().get("products", {}).get(code)
        emit(json.dumps({"i": int(i), "installed": version is not None,
                         **({"version": version} if version is not None else {})}))

    def do_Stage(self, emit: Callable[[str], None], s: str, p: str, sha: str) -> None:
        new = self.path(p + ".recon-new")
        if hashlib.sha256(new.read_bytes()).hexdigest() != sha:
            raise Failed(s, "the file arrived corrupted (sha256 differs)")
        new.replace(self.path(p))

    def do_Msi(self, emit: Callable[[str], None], s: str, verb: str, p: str, code: str) -> None:
        """An installer here is a text file `MSI {product code} version`: msiexec fails (1603) on anything else."""
        state = self.state()
        products = state.setdefault("products", {})
        if verb == "install":
            words = self.path(p).read_text(errors="replace").split()
            if len(words) < 3 or words[0] != "MSI" or words[1] != code:
                raise Failed(s, "msiexec install exited 1603")
            products[code] = words[2]
        else:
            if code not in products:
                raise Failed(s, "msiexec remove exited 1605")
            del products[code]
        self.save(state)
        emit(json.dumps({"s": int(s), "ok": True}))

    def do_Ok(self, emit: Callable[[str], None], s: str) -> None:
        emit(json.dumps({"s": int(s), "ok": True}))

    def do_Clean(self, emit: Callable[[str], None], p: str) -> None:
        self.path(p + ".recon-bak").unlink(missing_ok=True)

    # a command's own PowerShell, in the small subset this peer knows

    def child(self, b64: str) -> tuple[int, str]:
        text = base64.b64decode(b64).decode("utf-16-le")
        out: list[str] = []
        for stmt in [x.strip() for x in re.split(r"[;\n]", text) if x.strip()]:
            if m := re.fullmatch(r"exit (\d+)", stmt):
                return int(m.group(1)), "\n".join(out)
            if m := re.fullmatch(r"Write-Output '([^']*)'", stmt):
                out.append(m.group(1))
            elif m := re.fullmatch(r"Set-Content -Path '([^']*)' -Value '([^']*)'", stmt):
                self.path(m.group(1)).write_text(m.group(2) + "\r\n")
            elif m := re.fullmatch(r"New-Item -ItemType File -Path '([^']*)' -Force( \| Out-Null)?", stmt):
                self.path(m.group(1)).parent.mkdir(parents=True, exist_ok=True)
                self.path(m.group(1)).touch()
            elif m := re.fullmatch(r"Start-Sleep -Seconds (\d+)", stmt):
                time.sleep(int(m.group(1)))
            elif m := re.fullmatch(r"if \(Test-Path '([^']*)'\) \{ exit 0 \} else \{ exit 1 \}", stmt):
                return (0 if self.path(m.group(1)).exists() else 1), "\n".join(out)
            else:
                return 1, f"the test peer does not emulate: {stmt}"
        return 0, "\n".join(out)
