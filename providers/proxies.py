"""Which HTTP proxy a request goes through, by the environment, as recon's peers decide it.

kubectl, docker, oras and terraform are Go programs, and Go's net/http reads the environment one way
(golang.org/x/net/http/httpproxy): `HTTPS_PROXY` for https URLs and `HTTP_PROXY` for http ones (the
upper-case name first, then the lower-case one), `NO_PROXY` to go direct, and never a proxy for
`localhost` or a loopback address. Python's own rules differ (urllib and requests send 127.0.0.1 to the
proxy unless NO_PROXY names it, and they read ALL_PROXY), so with a proxy in the environment of a runner
recon failed where kubectl worked: its health checks and the Kubernetes API of a local cluster went to
the proxy. Every HTTP client of recon asks here instead.

NO_PROXY is a comma-separated list of `*` (no proxy at all), IP addresses, CIDR blocks, and host names
that match themselves and their subdomains (`example.com`, `.example.com`), each with an optional port.

`connection` is the same rule for a client on http.client (the OCI registry's): an https server is reached
through a CONNECT tunnel of the proxy, a plain http one by requests in the proxy's absolute form.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
from typing import Any
from urllib.parse import unquote, urlsplit


def _env(*names: str) -> str:
    return next((os.environ[n] for n in names if os.environ.get(n)), "")


def proxy_for(url: str) -> str | None:
    """The proxy for `url` (its scheme, host and port), or None to connect directly."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return None
    proxy = _env("HTTPS_PROXY", "https_proxy") if scheme == "https" else _env("HTTP_PROXY", "http_proxy")
    if not proxy:
        return None
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = 443 if scheme == "https" else 80
    if not _use_proxy(host, port, _env("NO_PROXY", "no_proxy")):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _use_proxy(host: str, port: int, no_proxy: str) -> bool:
    if not host or host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return False
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return False
        if "/" in entry and ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return False
            except ValueError:
                pass
            continue
        name, want = _split_port(entry)
        if want and want != port:
            continue
        if ip is not None:
            try:
                if ip == ipaddress.ip_address(name.strip("[]")):
                    return False
            except ValueError:
                pass
            continue
        name = name.lstrip("*").lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return False
    return True


def _split_port(entry: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) into its parts; 0 when no port is given."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 0
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, int(port) if port.isdigit() else 0
    return entry, 0


class Route:
    """How a request's path is written on a connection: as it is, or as the absolute URL a proxy takes."""

    def __init__(self, prefix: str = "", headers: dict[str, str] | None = None, proxy: str = "") -> None:
        self.prefix = prefix  # "http://host:port" when a plain-http request goes through a proxy
        self.headers = headers or {}  # Proxy-Authorization for that proxy
        self.via = f" through the proxy {proxy}" if proxy else ""  # for messages (the proxy without its password)

    def path(self, path: str) -> str:
        return self.prefix + path


def connection(scheme: str, host: str, port: int | None, **kwargs: Any) -> tuple[http.client.HTTPConnection, Route]:
    """A connection to scheme://host:port, through the environment's proxy where it applies, and how requests on
    it are written. ValueError for a proxy that is not an http:// URL (http.client cannot speak TLS to one)."""
    https = scheme == "https"
    cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
    where = f"[{host}]" if ":" in host else host
    proxy = proxy_for(f"{scheme}://{where}" + (f":{port}" if port else ""))
    if proxy is None:
        return cls(host, port, **kwargs), Route()
    p = urlsplit(proxy)
    if p.scheme != "http" or not p.hostname:
        raise ValueError(f"the proxy {p.scheme}://{p.hostname or ''} is not an http:// proxy, the only kind recon's "
                         "registry client reaches")
    auth = {}
    if p.username is not None:
        pair = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
        auth = {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode()}
    shown = f"http://{p.hostname}:{p.port or 80}"
    if https:
        conn = cls(p.hostname, p.port or 80, **kwargs)
        conn.set_tunnel(host, port or 443, headers=auth)
        return conn, Route(proxy=shown)
    return cls(p.hostname, p.port or 80, **kwargs), Route(f"http://{where}:{port or 80}", auth, shown)
