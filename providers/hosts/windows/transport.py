"""WinRM with pywinrm: one shell per host for the whole run; each script is one powershell.exe command
whose standard input carries the script in messages of bounded size, its output read as it comes."""

from __future__ import annotations

import contextlib
import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from providers.hosts.model import HostInfo, Payload
from providers.hosts.transport import RunResult, Script
from providers.hosts.windows.powershell import COMMAND
from providers.proxies import proxy_for
from specs.errors import TransportError, reason_of

_GSS_TEXT = re.compile(r"\('([^']*)', -?\d+\)")

SEND = 192 * 1024  # bytes of script per Send message: base64 makes it 256 KiB, below WinRM's 500 KB envelope


class WinrmTransport:
    def __init__(self, host: HostInfo) -> None:
        assert host.winrm is not None
        self.host = host
        self.settings = host.winrm
        self.protocol: Any = None
        self.shell = ""
        self.round_trips = 0  # WS-Man requests, for benchmarks

    @property
    def endpoint(self) -> str:
        address = f"[{self.host.address}]" if ":" in self.host.address else self.host.address  # IPv6 in a URL
        return f"{self.settings.scheme}://{address}:{self.host.port}/wsman"

    def _open(self) -> None:
        from winrm.protocol import Protocol

        w = self.settings
        password = ""
        if w.password is not None:
            password = w.password.resolve(Path(self.host.base)).get_secret_value()
        ca = str(w.ca_file_at(Path(self.host.base)) or "legacy_requests")
        if w.transport == "kerberos" and password:
            from providers.hosts.windows.kerberos import ensure_ticket

            ensure_ticket(self.host.user, password, self.host.name)
        self.protocol = Protocol(
            endpoint=self.endpoint, transport=w.transport, username=self.host.user, password=password,
            server_cert_validation="validate" if w.validateCerts else "ignore", ca_trust_path=ca,
            operation_timeout_sec=w.operationTimeout, read_timeout_sec=w.operationTimeout + 10,
            message_encryption="auto",
            proxy=proxy_for(self.endpoint),  # the environment's, as Go's tools take it (never for loopback)
        )
        self.shell = self._guard(lambda: self.protocol.open_shell(codepage=65001))

    def _guard(self, call: Callable[[], Any]) -> Any:
        """One WS-Man request; its failure as a TransportError that says what to do."""
        import requests
        from winrm.exceptions import InvalidCredentialsError, WinRMError, WinRMTransportError

        self.round_trips += 1
        name = self.host.name
        try:
            return call()
        except InvalidCredentialsError:
            raise TransportError(f"{name}: {self.endpoint} refused the user {self.host.user!r} (401): check "
                                 "winrm.user and the password it refers to") from None
        except PermissionError as exc:  # requests-ntlm: a 401 that offers no NTLM (e.g. Negotiate/Kerberos only)
            raise TransportError(f"{name}: {self.endpoint} answered 401 without an NTLM challenge ({exc}): the "
                                 "listener does not offer NTLM; use winrm.transport: kerberos (or basic over https), "
                                 "or allow NTLM on the host") from None
        except requests.exceptions.SSLError:
            raise TransportError(f"{name}: the certificate of {self.endpoint} cannot be verified: give its CA in "
                                 "winrm.caFile (or validateCerts: false, on a test network only)") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise TransportError(f"{name}: {self.endpoint} cannot be reached ({reason_of(exc)}): check the address, "
                                 "the port, and that WinRM listens there (winrm quickconfig)", transient=True) from None
        except (WinRMTransportError, WinRMError) as exc:
            raise TransportError(f"{name}: WinRM error from {self.endpoint}: {exc}") from None
        except requests.exceptions.RequestException as exc:
            if type(exc).__name__ in ("KerberosExchangeError", "MutualAuthenticationError"):
                raise TransportError(f"{name}: Kerberos to {self.endpoint} failed: {_kerberos_reason(exc)}") from None
            raise TransportError(f"{name}: {self.endpoint}: {exc.__class__.__name__}: {exc}") from None
        except ET.ParseError:
            raise TransportError(f"{name}: {self.endpoint} answered something that is not WS-Management: is it "
                                 "a WinRM listener?") from None

    def run(self, script: Script, on_line: Callable[[bytes], None] | None = None) -> RunResult:
        from winrm.exceptions import WinRMOperationTimeoutError

        if self.protocol is None:
            self._open()
        p = self.protocol
        command = self._guard(lambda: p.run_command(self.shell, "powershell.exe", COMMAND))
        pieces = _pieces(script)
        piece = next(pieces, b"")
        while True:  # a piece ahead, to know which is the last
            following = next(pieces, None)
            self._guard(functools.partial(p.send_command_input, self.shell, command, piece, end=following is None))
            if following is None:
                break
            piece = following
        out, err = bytearray(), bytearray()
        pending = b""
        while True:
            try:
                stdout, stderr, rc, done = self._guard(lambda: p.get_command_output_raw(self.shell, command))
            except WinRMOperationTimeoutError:
                continue  # no output within the operation timeout: ask again
            out += stdout
            err += stderr
            if on_line is not None:
                pending += stdout
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line + b"\n")
            if done:
                break
        if on_line is not None and pending:
            on_line(pending)
        self._guard(lambda: p.cleanup_command(self.shell, command))
        return RunResult(rc, bytes(out), bytes(err))

    def put(self, payload: Payload, remote: str) -> None:
        """Windows hosts take contents as chunks inside the change script (resources/file.py), made as they are
        sent; there is no separate upload."""
        raise TransportError(f"{self.host.name}: WinRM hosts take contents inside the change script")

    def close(self) -> None:
        if self.protocol is not None and self.shell:
            with contextlib.suppress(Exception):
                self.protocol.close_shell(self.shell)
            self.shell = ""


def _kerberos_reason(exc: Exception) -> str:
    """The GSSAPI's own words (its last minor status), and what to do about the usual ones."""
    found = _GSS_TEXT.findall(str(exc))
    reason = found[-1] if found else str(exc)
    if "client principal" in reason or "No credentials" in reason or "credentials cache" in reason.lower():
        return f"{reason}: give winrm.password (recon then runs kinit), or run kinit as that user first"
    if "not found in Kerberos database" in reason:
        return (f"{reason}: address the host by the name the KDC knows it by (HTTP/NAME, usually its DNS "
                "name), not by an IP address or alias")
    return reason


def _pieces(script: Script) -> Iterator[bytes]:
    """The script's bytes in pieces of SEND, made as they are sent."""
    buf = bytearray()
    for part in ([script] if isinstance(script, str) else script):
        buf += part.encode()
        while len(buf) >= SEND:
            yield bytes(buf[:SEND])
            del buf[:SEND]
    if buf:
        yield bytes(buf)
