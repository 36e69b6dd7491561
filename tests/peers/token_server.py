"""A Docker registry token server for the tests, on 127.0.0.1.

It answers `GET /token?service=..&scope=repository:NAME:pull,push` with basic credentials by a
JWT (RS256) carrying the requested access, with its self-signed certificate in the `x5c`
header; the registry trusts that certificate through its `rootcertbundle`. Wrong credentials
get 401, as real token servers answer.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.peers.jsonhttp import Server, send_json

ISSUER = "recon-test-token-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    server: Server
    cert: Path
    realm: str
    issued: list[str]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(root: Path, users: dict[str, str], service: str) -> TokenServer:
    root.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = root / "token.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    issued: list[str] = []

    def token(subject: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": repo, "actions": actions.split(",")})
        t = int(time.time())
        claims = {"iss": ISSUER, "sub": subject, "aud": service, "exp": t + 300, "nbf": t - 10, "iat": t,
                  "jti": secrets.token_hex(8), "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
        signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        sig = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing + "." + _b64(sig)

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            auth = self.headers.get("Authorization", "")
            user = ""
            if auth.startswith("Basic "):
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                if users.get(user) != password:
                    self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                    return
            elif users:
                self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "credentials required"}]})
                return
            if url.path != "/token" or query.get("service", [""])[0] != service:
                self._send(400, {"errors": [{"code": "BAD_REQUEST", "message": "unknown service"}]})
                return
            issued.append(user)
            tok = token(user, query.get("scope", []))
            self._send(200, {"token": tok, "access_token": tok, "expires_in": 300})

        def _send(self, status: int, body: dict[str, object]) -> None:
            send_json(self, status, body)

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    return TokenServer(server, cert_path, realm, issued)
