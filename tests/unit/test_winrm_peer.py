"""The WinRM test peer emulates recon's PowerShell from its own copy of it, and refuses anything else."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from providers.hosts.windows import powershell
from tests.peers import ps_emulator, winrm_host


def test_the_peer_emulates_the_prelude_recon_sends_today() -> None:
    """When this fails, recon's prelude changed: bring tests/peers/ps_prelude.ps1 and the emulation of what
    changed (tests/peers/ps_emulator.py) along, and run the same tests on a real Windows host."""
    assert ps_emulator.PRELUDE == powershell.PRELUDE
    assert winrm_host.BOOTSTRAP == powershell.BOOTSTRAP


def test_a_script_with_another_prelude_or_command_line_is_refused(tmp_path: Path) -> None:
    said: list[str] = []
    changed = powershell.PRELUDE.replace("Stop-Service -Name $n -Force", "Stop-Service -Name $n")
    code = ps_emulator.Sandbox(tmp_path).run(changed + "# recon body\nRecon-Ok '1'\n", said.append)
    assert code == 2 and "tests/peers/ps_prelude.ps1" in json.loads(said[0])["error"]
    said.clear()
    assert ps_emulator.Sandbox(tmp_path).run(powershell.script([powershell.call("Recon-Ok", 1)]), said.append) == 0
    assert json.loads(said[0]) == {"s": 1, "ok": True}

    other = base64.b64encode("Remove-Item C:\\ -Recurse".encode("utf-16-le")).decode()
    assert winrm_host.encoded_command(f"-NoProfile -EncodedCommand {other}") == "Remove-Item C:\\ -Recurse"
    assert winrm_host.encoded_command(" ".join(powershell.COMMAND)) == winrm_host.BOOTSTRAP
    assert winrm_host.encoded_command("-NoProfile -Command Get-Date") is None
