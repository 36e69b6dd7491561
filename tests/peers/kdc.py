"""A real Kerberos KDC for the WinRM tests: Debian's MIT krb5-kdc, with a realm made in a temporary
directory and run inside a network namespace (the one recon runs in), so that recon's `kinit` and
pywinrm's Kerberos client get real tickets from it. The WinRM test hosts accept those tickets with a
keytab of their HTTP/<name> service principals (pyspnego's Kerberos acceptor through gssapi).

The realm is RECON.TEST; the user is `tester@RECON.TEST`; host names are `<name>.recon.test`, which
the control namespace resolves through /etc/netns/<namespace>/hosts (`ip netns exec` mounts it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REALM = "RECON.TEST"
DOMAIN = "recon.test"
USER, PASSWORD = f"tester@{REALM}", "kerberos-password"
PORT = 8888


@dataclass
class Kdc:
    base: Path
    proc: subprocess.Popen[bytes]

    @property
    def krb5_conf(self) -> Path:
        return self.base / "krb5.conf"

    @property
    def keytab(self) -> Path:
        return self.base / "http.keytab"

    @property
    def env(self) -> dict[str, str]:
        """What a Kerberos client (recon, kinit) needs to find the realm."""
        return {"KRB5_CONFIG": str(self.krb5_conf)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)


def _tool(name: str) -> str:
    for d in ("/usr/sbin", "/usr/bin", "/sbin"):
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    raise RuntimeError(f"the Kerberos tests need {name} (Debian's krb5-kdc, krb5-admin-server, krb5-user): "
                       "run scripts/setup")


def start(exec_prefix: list[str], hosts: list[str]) -> Kdc:
    """The KDC inside `exec_prefix`'s namespace on 127.0.0.1:PORT, with HTTP/<host>.recon.test for each host."""
    base = Path(tempfile.mkdtemp(prefix="recon-kdc-"))
    (base / "krb5.conf").write_text(
        f"[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n dns_lookup_realm = false\n"
        " rdns = false\n dns_canonicalize_hostname = false\n udp_preference_limit = 1\n ticket_lifetime = 1h\n"
        f"[realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{PORT}\n }}\n[domain_realm]\n .{DOMAIN} = {REALM}\n")
    (base / "kdc.conf").write_text(
        f"[kdcdefaults]\n kdc_ports = {PORT}\n kdc_tcp_ports = {PORT}\n[realms]\n {REALM} = {{\n"
        f"  database_name = {base}/principal\n  key_stash_file = {base}/stash\n  acl_file = {base}/kadm5.acl\n"
        "  max_life = 1h\n  supported_enctypes = aes256-cts-hmac-sha1-96:normal\n }\n"
        f"[logging]\n kdc = FILE:{base}/kdc.log\n")
    (base / "kadm5.acl").write_text("")
    env = {**os.environ, "KRB5_CONFIG": str(base / "krb5.conf"), "KRB5_KDC_PROFILE": str(base / "kdc.conf")}

    def run(*cmd: str) -> None:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])}: {done.stderr or done.stdout}")

    try:
        run(_tool("kdb5_util"), "-r", REALM, "create", "-s", "-P", "recon-test-master-key")
        admin = _tool("kadmin.local")
        run(admin, "-r", REALM, "-q", f"addprinc -pw {PASSWORD} {USER}")
        for h in hosts:
            run(admin, "-r", REALM, "-q", f"addprinc -randkey HTTP/{h}.{DOMAIN}")
            run(admin, "-r", REALM, "-q", f"ktadd -k {base}/http.keytab HTTP/{h}.{DOMAIN}")
        proc = subprocess.Popen([*exec_prefix, _tool("krb5kdc"), "-n"], env=env, stdout=subprocess.DEVNULL,
                                stderr=(base / "kdc.stderr").open("wb"), start_new_session=True)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    kdc = Kdc(base, proc)
    deadline = time.monotonic() + 20
    while "commencing operation" not in _read(base / "kdc.log"):
        if proc.poll() is not None or time.monotonic() > deadline:
            kdc.stop()
            raise RuntimeError(f"the test KDC did not start: {_read(base / 'kdc.log')[-1000:]}")
        time.sleep(0.05)
    return kdc


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
