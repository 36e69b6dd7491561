"""A WS-Management (WinRM) test host that unmodified pywinrm talks to: HTTPS (port PORT) with Basic or NTLM
authentication, and HTTP (5985) with NTLM and message encryption, as Windows offers them.

    python tests/peers/winrm_host.py ADDRESS PORT ROOT USER PASSWORD CERT KEY

Operations: transfer/Create (a shell), shell/Command, shell/Send (stdin), shell/Receive (output as
it comes; the w:TimedOut fault after the request's OperationTimeout, which pywinrm retries),
shell/Signal, transfer/Delete; anything else is a SOAP fault. Commands: `powershell.exe` with
recon's bootstrap (-EncodedCommand), whose standard input is run by the emulator
(tests/peers/ps_emulator.py) against the sandbox ROOT. Every request's action is appended to
ROOT/requests.log, so tests and benchmarks count round trips.
"""

from __future__ import annotations

import base64
import os
import queue
import re
import ssl
import struct
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.peers.jsonhttp import Server
from tests.peers.ps_emulator import Sandbox

# The one command line the peer runs, as its own text (not recon's): powershell.exe reading a script from its
# standard input and running it as one script block.
BOOTSTRAP = ("$l = [Collections.Generic.List[string]]::new(); foreach ($x in $input) { $l.Add($x) }; "
             ". ([ScriptBlock]::Create($l -join \"`n\"))")


def encoded_command(args: str) -> str | None:
    """The script of `-EncodedCommand B64` in a command line (base64 of UTF-16LE), as powershell.exe decodes it."""
    m = re.search(r"-(?:EncodedCommand|enc|e|ec)\s+(\S+)", args, re.IGNORECASE)
    if m is None:
        return None
    try:
        return base64.b64decode(m.group(1), validate=True).decode("utf-16-le")
    except (ValueError, UnicodeDecodeError):
        return None

NS = {"s": "http://www.w3.org/2003/05/soap-envelope", "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
      "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
      "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"}
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
DONE = f"{SHELL}/CommandState/Done"
RUNNING = f"{SHELL}/CommandState/Running"
TIMED_OUT = 2150858793


@dataclass
class Command:
    args: str
    stdin: bytearray = field(default_factory=bytearray)
    output: queue.Queue[bytes] = field(default_factory=queue.Queue)
    exit_code: int | None = None
    thread: threading.Thread | None = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    sandbox: Sandbox
    auth: str
    shells: ClassVar[dict[str, dict[str, Command]]] = {}
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _reply(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        if getattr(self, "mutual", ""):  # Kerberos: the acceptor's last token, for mutual authentication
            self.send_header("WWW-Authenticate", self.mutual)
            self.mutual = ""
        if getattr(self, "encrypted", False):
            data = _seal(self.sealed, data, self.protocol)
            self.send_header("Content-Type", f'multipart/encrypted;protocol="{self.protocol.decode()}"'
                             ';boundary="Encrypted Boundary"')
        else:
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _challenge(self, token: str = "") -> None:
        self.send_response(401)
        if token:
            self.send_header("WWW-Authenticate", token)
        else:
            self.send_header("WWW-Authenticate", "Negotiate")
            self.send_header("WWW-Authenticate", 'Basic realm="WSMAN"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _authenticated(self) -> bool:
        """Basic on every request, or NTLM or Kerberos (as Negotiate, NTLM or Kerberos) once per connection, by
        pyspnego (Kerberos with the keytab in $KRB5_KTNAME, when the tests made a KDC: tests/peers/kdc.py)."""
        given = self.headers.get("Authorization", "")
        if given == self.auth:
            return True
        scheme, _, token = given.partition(" ")
        if scheme in ("Negotiate", "NTLM", "Kerberos") and token:
            import spnego

            raw = base64.b64decode(token)
            if getattr(self, "ntlm", None) is None or self.ntlm.complete:
                kerberos = not raw.startswith(b"NTLMSSP")
                if kerberos and not os.environ.get("KRB5_KTNAME"):
                    self._challenge()
                    return False
                try:
                    self.ntlm = spnego.server(protocol="kerberos" if kerberos else "ntlm")
                except Exception as exc:  # no acceptor here (pyspnego without its Kerberos packages): say so
                    print(f"cannot accept {scheme}: {exc}", file=sys.stderr, flush=True)
                    self._challenge()
                    return False
                self.mech = "kerberos" if kerberos else "ntlm"
                # MS-WSMV 2.2.9.1: sealed messages are "SPNEGO" under Negotiate, whichever the mechanism
                self.protocol = KERBEROS if scheme == "Kerberos" else SPNEGO
            try:
                out = self.ntlm.step(raw)
            except Exception:  # a wrong password, a ticket for another service, or a broken token
                self.ntlm = None
                self._challenge()
                return False
            if not self.ntlm.complete:
                self._challenge(f"{scheme} {base64.b64encode(out or b'').decode()}")
                return False
            if out:
                self.mutual = f"{scheme} {base64.b64encode(out).decode()}"
            self.sealed = self.ntlm  # this connection's messages may now be encrypted with it
            with (self.sandbox.root / "auth.log").open("a") as log:
                log.write(f"{self.mech}:{self.ntlm.client_principal}\n")
            return True
        if getattr(self, "sealed", None) is not None:
            return True  # NTLM authenticates the connection, not each request
        self._challenge()
        return False

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self._authenticated():
            return
        if not data:  # pywinrm's empty message that sets up encryption
            self._reply(200, "")
            return
        encrypted = (self.headers.get("Content-Type") or "").startswith("multipart/encrypted")
        if encrypted:
            data = _unseal(self.sealed, data)
            with (self.sandbox.root / "auth.log").open("a") as log:
                log.write(f"{self.mech}-encrypted\n")
        self.encrypted = encrypted
        root = ET.fromstring(data)
        action = root.findtext("s:Header/a:Action", "", NS)
        message_id = root.findtext("s:Header/a:MessageID", "", NS)
        with self.lock, (self.sandbox.root / "requests.log").open("a") as log:
            log.write(action.rsplit("/", 1)[-1] + "\n")
        shell_id = root.findtext("s:Header/w:SelectorSet/w:Selector[@Name='ShellId']", "", NS)
        kind = action.rsplit("/", 1)[-1]
        handler = getattr(self, f"op_{kind}", None)
        if handler is None:
            self._reply(500, _fault(message_id, "unsupported action " + action, 2150858817))
            return
        code, body = handler(root, shell_id)
        self._reply(code, _envelope(action + "Response", message_id, body) if code == 200 else body)

    def op_Create(self, root: ET.Element, shell_id: str) -> tuple[int, str]:
        new = str(uuid.uuid4()).upper()
        self.shells[new] = {}
        return 200, (f'<x:ResourceCreated xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer">'
                     f"<a:Address>https://host/wsman</a:Address><a:ReferenceParameters>"
                     f"<w:ResourceURI>{SHELL}/cmd</w:ResourceURI><w:SelectorSet>"
                     f'<w:Selector Name="ShellId">{new}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
                     "</x:ResourceCreated>")

    def op_Command(self, root: ET.Element, shell_id: str) -> tuple[int, str]:
        command = root.findtext("s:Body/rsp:CommandLine/rsp:Command", "", NS)
        args = root.findtext("s:Body/rsp:CommandLine/rsp:Arguments", "", NS)
        if shell_id not in self.shells:
            return 500, _fault("", f"no shell {shell_id}", 2150858843)
        if command.lower() not in ("powershell.exe", "powershell") or encoded_command(args) != BOOTSTRAP:
            return 500, _fault("", f"the test peer runs only recon's PowerShell bootstrap, not {command!r}",
                               2147942402)
        cid = str(uuid.uuid4()).upper()
        self.shells[shell_id][cid] = Command(args)
        return 200, f"<rsp:CommandResponse><rsp:CommandId>{cid}</rsp:CommandId></rsp:CommandResponse>"

    def op_Send(self, root: ET.Element, shell_id: str) -> tuple[int, str]:
        stream = root.find("s:Body/rsp:Send/rsp:Stream", NS)
        assert stream is not None
        cmd = self.shells[shell_id][stream.get("CommandId", "")]
        cmd.stdin += base64.b64decode(stream.text or "")
        if stream.get("End") == "true":
            def work() -> None:
                def emit(line: str) -> None:
                    cmd.output.put((line + "\r\n").encode())

                cmd.exit_code = self.sandbox.run(cmd.stdin.decode("utf-8"), emit)
                cmd.output.put(b"")  # the end

            cmd.thread = threading.Thread(target=work, daemon=True)
            cmd.thread.start()
        return 200, "<rsp:SendResponse/>"

    def op_Receive(self, root: ET.Element, shell_id: str) -> tuple[int, str]:
        desired = root.find("s:Body/rsp:Receive/rsp:DesiredStream", NS)
        assert desired is not None
        cid = desired.get("CommandId", "")
        cmd = self.shells[shell_id][cid]
        timeout = float(re.sub(r"[^0-9.]", "", root.findtext("s:Header/w:OperationTimeout", "PT20S", NS)) or 20)
        chunks: list[bytes] = []
        ended = False
        try:
            first = cmd.output.get(timeout=timeout)
        except queue.Empty:
            return 500, _fault(root.findtext("s:Header/a:MessageID", "", NS), "The WS-Management service cannot "
                               "complete the operation within the time specified in OperationTimeout.", TIMED_OUT)
        if first != b"":
            time.sleep(0.01)  # as WinRM does, gather what follows closely (often the end of the command)
        for piece in [first, *_drain(cmd.output)]:
            if piece == b"":
                ended = True
            else:
                chunks.append(piece)
        streams = "".join(f'<rsp:Stream Name="stdout" CommandId="{cid}">{base64.b64encode(c).decode()}</rsp:Stream>'
                          for c in chunks)
        if ended:
            state = (f'<rsp:CommandState CommandId="{cid}" State="{DONE}"><rsp:ExitCode>{cmd.exit_code}'
                     "</rsp:ExitCode></rsp:CommandState>")
        else:
            state = f'<rsp:CommandState CommandId="{cid}" State="{RUNNING}"/>'
        return 200, f"<rsp:ReceiveResponse>{streams}{state}</rsp:ReceiveResponse>"

    def op_Signal(self, root: ET.Element, shell_id: str) -> tuple[int, str]:
        signal = root.find("s:Body/rsp:Signal", NS)
        if signal is not None:
            self.shells.get(shell_id, {}).pop(signal.get("CommandId", ""), None)
        return 200, "<rsp:SignalResponse/>"

    def op_Delete(self, root: ET.Element, shell_id: str) -> tuple[int, str]:
        self.shells.pop(shell_id, None)
        return 200, ""


BOUNDARY = b"--Encrypted Boundary"
SPNEGO = b"application/HTTP-SPNEGO-session-encrypted"  # NTLM
KERBEROS = b"application/HTTP-Kerberos-session-encrypted"


def _unseal(ctx: Any, body: bytes) -> bytes:
    """[MS-WSMV] 2.2.9.1.1: a MIME part of headers, then one of the sealed message (NTLM or Kerberos)."""
    parts = [p for p in body.split(BOUNDARY + b"\r\n") if p]
    payload = parts[1]
    if payload.endswith(BOUNDARY + b"--\r\n"):
        payload = payload[:-len(BOUNDARY + b"--\r\n")]
    sealed = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
    size = struct.unpack("<i", sealed[:4])[0]
    return bytes(ctx.unwrap_winrm(sealed[4:4 + size], sealed[4 + size:]))


def _seal(ctx: Any, message: bytes, protocol: bytes) -> bytes:
    wrapped = ctx.wrap_winrm(message)
    signature, sealed = wrapped.header, wrapped.data
    return (BOUNDARY + b"\r\n\tContent-Type: " + protocol + b"\r\n\tOriginalContent: type=application/soap+xml;"
            b"charset=UTF-8;Length=" + str(len(message)).encode() + b"\r\n" + BOUNDARY
            + b"\r\n\tContent-Type: application/octet-stream\r\n" + struct.pack("<i", len(signature)) + signature
            + sealed + BOUNDARY + b"--\r\n")


def _drain(q: queue.Queue[bytes]) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


def _envelope(action: str, relates_to: str, body: str) -> str:
    return (f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:w="{NS["w"]}" xmlns:rsp="{NS["rsp"]}">'
            f"<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
            f"<a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>")


def _fault(relates_to: str, text: str, code: int) -> str:
    return (f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}"><s:Header><a:Action>'
            "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action>"
            f"<a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver"
            f"</s:Value></s:Code><s:Reason><s:Text xml:lang=\"en-US\">{text}</s:Text></s:Reason><s:Detail>"
            f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{code}">'
            f"<f:Message>{text}</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>")


def serve(address: str, port: int, root: Path, user: str, password: str, cert: str, key: str) -> None:
    """HTTPS on `port`, and plain HTTP on 5985 for NTLM with message encryption (the user file of pyspnego's
    NTLM acceptor is written beside the sandbox)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    users = root.parent / f"{root.name}.ntlm-users"
    users.write_text(f":{user}:{password}\n")
    os.environ["NTLM_USER_FILE"] = str(users)
    handler = type("H", (Handler,), {"sandbox": Sandbox(root), "auth": f"Basic {token}", "shells": {}})
    secure = Server((address, port), handler)
    plain = Server((address, 5985), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    print("ready", flush=True)
    secure.serve_forever()


if __name__ == "__main__":
    a = sys.argv[1:]
    serve(a[0], int(a[1]), Path(a[2]), a[3], a[4], a[5], a[6])
