"""An OCI distribution client on http.client: keep-alive connections per thread, basic and token auth.

Why not oras-py: it retries a wrong password for minutes, does not verify digests on pull, and
cannot move a tag after the manifest is up. This client does only what bundles need, fails at
once on refused credentials, and streams files in 1 MiB blocks (close to curl's throughput).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode, urlsplit

from providers.proxies import Route, connection
from specs.errors import ReconError, TransportError
from specs.ref import Reference

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
BLOCK = 1 << 20
Progress = Callable[[int], None]


class AuthError(ReconError):
    """The registry refused the credentials, or wants some and none were given. Never retried."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(default="", repr=False)  # resolved from a reference just before use; never printed
    source: str = ""  # where the password came from, for messages ("env REG_PW")


class RegistryStore:
    """Blobs and manifests of one repository in a registry."""

    def __init__(self, ref: Reference, credentials: Credentials | None = None, plain_http: bool | None = None):
        self.ref = ref
        self.creds = credentials
        self.plain = ref.plain_http if plain_http is None else plain_http
        self.host, self.port = ref.address
        self._local = threading.local()
        self._auth_lock = threading.Lock()
        self._authorization = ""  # the header value that last worked

    def __str__(self) -> str:
        return str(self.ref)

    # -- HTTP ----------------------------------------------------------------------------------------

    def _conn(self) -> tuple[http.client.HTTPConnection, Route]:
        """This thread's connection (through the environment's proxy where it applies: providers/proxies.py)."""
        made = getattr(self._local, "conn", None)
        if made is None:
            try:
                made = connection("http" if self.plain else "https", self.host, self.port, timeout=60,
                                  blocksize=BLOCK)
            except ValueError as exc:
                raise TransportError(f"registry {self.ref.registry}: {exc}") from None
            self._local.conn = made
        return made

    def _send(self, method: str, path: str, headers: Mapping[str, str], body: _Upload | bytes | None
              ) -> http.client.HTTPResponse:
        conn, how = self._conn()
        path, headers = how.path(path), {**headers, **how.headers}
        for attempt in (1, 2):
            try:
                if isinstance(body, _Upload):
                    conn.putrequest(method, path, skip_accept_encoding=True)
                    for key, value in headers.items():
                        conn.putheader(key, value)
                    conn.endheaders()
                    body.send(conn)
                else:
                    conn.request(method, path, body=body, headers=dict(headers))
                return conn.getresponse()
            except (ConnectionRefusedError, TimeoutError, socket.gaierror) as exc:
                conn.close()
                why = {ConnectionRefusedError: "connection refused", TimeoutError: "timed out"}.get(type(exc), str(exc))
                if how.via:
                    raise TransportError(f"registry {self.ref.registry} cannot be reached{how.via}: {why} (is the "
                                         "proxy right, or should NO_PROXY name the registry?)",
                                         transient=True) from None
                raise TransportError(f"registry {self.ref.registry} cannot be reached: {why} (is it running, and is "
                                     "the address in the ref right?)", transient=True) from None
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest,
                    http.client.BadStatusLine) as exc:
                conn.close()  # a kept-alive connection the server closed: one fresh try
                if attempt == 2:
                    raise TransportError(f"registry {self.ref.registry}: {exc}", transient=True) from None
            except OSError as exc:  # (a proxy that refused the tunnel too: "Tunnel connection failed: 403 …")
                conn.close()
                raise TransportError(f"registry {self.ref.registry} cannot be reached{how.via}: {exc}",
                                     transient=True) from None
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                body: _Upload | bytes | None = None, ok: tuple[int, ...] = (200,)) -> http.client.HTTPResponse:
        """One request with auth; the response is returned unread when its status is in `ok`."""
        hdrs = dict(headers or {})
        if self._authorization:
            hdrs["Authorization"] = self._authorization
        resp = self._send(method, path, hdrs, body)
        for _ in range(2):  # a token for another scope may need one more round
            if resp.status != 401:
                break
            challenge = resp.getheader("WWW-Authenticate", "")
            resp.read()
            hdrs["Authorization"] = self._authorize(challenge, hdrs.get("Authorization", ""))
            resp = self._send(method, path, hdrs, body)
        if resp.status == 401:
            resp.read()
            raise self._refused()
        if resp.status not in ok:
            text = resp.read(4096).decode("utf-8", "replace")
            raise TransportError(f"registry {self.ref.registry}: {method} {path.split('?')[0]} answered "
                                 f"{resp.status} {resp.reason}{_errors(text)}")
        return resp

    def _refused(self) -> AuthError:
        if self.creds is None:
            return AuthError(f"registry {self.ref.registry} needs credentials: give the Bundle "
                             "`credentials: {username: …, password: {env: …}}`, or set RECON_REGISTRY_USERNAME "
                             "and RECON_REGISTRY_PASSWORD for `recon bundle` commands")
        return AuthError(f"registry {self.ref.registry} refused the credentials of user {self.creds.username!r}"
                         f"{' (password from ' + self.creds.source + ')' if self.creds.source else ''}: "
                         "check the user name and password; not retried")

    def _authorize(self, challenge: str, tried: str) -> str:
        """The Authorization header value for a 401 challenge (Basic, or a Bearer token fetched now)."""
        with self._auth_lock:
            if self._authorization and self._authorization != tried:
                return self._authorization  # another thread has just authorized
            scheme, _, params = challenge.partition(" ")
            if scheme.lower() == "basic":
                if self.creds is None or tried == _basic(self.creds):
                    raise self._refused()
                self._authorization = _basic(self.creds)
            elif scheme.lower() == "bearer":
                self._authorization = "Bearer " + self._token(dict(re.findall(r'(\w+)="([^"]*)"', params)))
            else:
                raise AuthError(f"registry {self.ref.registry} asks for {scheme or 'an unknown'} authentication, "
                                "which recon does not speak (it speaks Basic and Bearer tokens)")
            return self._authorization

    def _token(self, params: dict[str, str]) -> str:
        realm = params.get("realm", "")
        url = urlsplit(realm)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise AuthError(f"registry {self.ref.registry} gave a token realm that is not a URL: {realm!r}")
        scope = params.get("scope") or f"repository:{self.ref.repository}:pull,push"
        query = urlencode([("service", params.get("service", "")), ("scope", scope)])
        try:
            conn, how = connection(url.scheme, url.hostname, url.port, timeout=30)
        except ValueError as exc:
            raise TransportError(f"token server {url.netloc} of registry {self.ref.registry}: {exc}") from None
        headers = {**({"Authorization": _basic(self.creds)} if self.creds else {}), **how.headers}
        try:
            conn.request("GET", how.path(f"{url.path or '/'}?{query}"), headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except OSError as exc:
            raise TransportError(f"token server {url.netloc} of registry {self.ref.registry} cannot be reached: "
                                 f"{exc}", transient=True) from None
        finally:
            conn.close()
        if resp.status in (401, 403):
            raise self._refused()
        try:
            data = json.loads(body)
            return str(data.get("token") or data["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise AuthError(f"token server {url.netloc} answered {resp.status} without a token") from None

    # -- the distribution API ------------------------------------------------------------------------

    def _path(self, kind: str, reference: str) -> str:
        return f"/v2/{self.ref.repository}/{kind}/{reference}"

    def resolve(self, reference: str = "") -> str | None:
        """The digest a tag (or the reference's tag) points to, or None when there is none (one HEAD)."""
        resp = self.request("HEAD", self._path("manifests", reference or self.ref.reference),
                            {"Accept": MANIFEST_TYPES}, ok=(200, 404))
        resp.read()
        if resp.status == 404:
            return None
        return resp.getheader("Docker-Content-Digest")

    def manifest(self, reference: str) -> bytes:
        resp = self.request("GET", self._path("manifests", reference), {"Accept": MANIFEST_TYPES})
        return resp.read()

    def has_blob(self, digest: str) -> bool:
        resp = self.request("HEAD", self._path("blobs", digest), ok=(200, 404))
        resp.read()
        return resp.status == 200

    def put_blob(self, digest: str, size: int, source: Path | bytes, progress: Progress | None = None) -> None:
        """A monolithic upload: POST for a session, PUT of the whole body with its digest."""
        resp = self.request("POST", f"/v2/{self.ref.repository}/blobs/uploads/", {"Content-Length": "0"},
                            ok=(202, 201))
        resp.read()
        location = resp.getheader("Location", "")
        url = urlsplit(location)
        path = (url.path or location) + "?" + (url.query + "&" if url.query else "") + urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if isinstance(source, bytes):
            self.request("PUT", path, headers, source, ok=(201, 204)).read()
        else:
            with source.open("rb") as fh:
                self.request("PUT", path, headers, _Upload(fh, size, progress), ok=(201, 204)).read()

    def get_blob(self, digest: str) -> Iterator[bytes]:
        resp = self.request("GET", self._path("blobs", digest), ok=(200, 404))
        if resp.status == 404:
            resp.read()
            raise FileNotFoundError(digest)
        while chunk := resp.read(BLOCK):
            yield chunk

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> str:
        resp = self.request("PUT", self._path("manifests", reference),
                            {"Content-Type": media_type, "Content-Length": str(len(body))}, body, ok=(201, 200))
        resp.read()
        return resp.getheader("Docker-Content-Digest", "")

    def close(self) -> None:
        made = getattr(self._local, "conn", None)
        if made is not None:
            made[0].close()


class _Upload:
    """A file body sent with sendfile(2) (no copy through Python), in blocks that report progress."""

    def __init__(self, fh: BinaryIO, size: int, progress: Progress | None):
        self.fh, self.size, self.progress = fh, size, progress

    def send(self, conn: http.client.HTTPConnection) -> None:
        sock = conn.sock
        assert sock is not None
        offset = 0
        while offset < self.size:
            sent = sock.sendfile(self.fh, offset, min(BLOCK * 8, self.size - offset))
            if not sent:
                raise ConnectionError("the registry closed the connection during an upload")
            offset += sent
            if self.progress:
                self.progress(sent)


def _basic(creds: Credentials | None) -> str:
    assert creds is not None
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def _errors(text: str) -> str:
    try:
        errs = json.loads(text).get("errors", [])
        return ": " + "; ".join(f"{e.get('code')} {e.get('message')}" for e in errs) if errs else ""
    except (ValueError, AttributeError):
        return ""
