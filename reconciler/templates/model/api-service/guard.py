"""What stands between the internet and the model: API keys with scopes, rate limits, request size and time
limits, a JSON access log without secrets, and Prometheus metrics. Settings come from the environment (the
Model spec sets them; keys as secret references, see specs/models.yaml):

  API_KEY_<NAME>=<key>                  one per client; only its SHA-256 is kept, compared in constant time
  API_KEY_<NAME>_SCOPES=predict,metrics what it may do (default: predict)
  RATE_LIMIT_PER_KEY=600/minute         per key; RATE_LIMIT_PER_IP=120/minute per client address; counted
                                        by each replica (as nginx's and Envoy's local limits are): behind
                                        an endpoint balancing N replicas, a client gets up to N times it
  MAX_REQUEST_BYTES=65536               a larger body is refused with 413
  REQUEST_TIMEOUT_SECONDS=5             a slower answer is 504
  TRUSTED_PROXIES=127.0.0.1             whose X-Forwarded-For names the client (recon's endpoint sends it)

GET /health is open (health checks carry no key); every other path needs a key with the path's scope.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPES = {"/predict": "predict", "/metrics": "metrics"}  # the scope each path needs; others need "predict"
KNOWN_SCOPES = {"predict", "metrics"}
OPEN = {"/health"}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)\s*$")
_PER = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SettingError(ValueError):
    """A setting in the environment that cannot be used; the message names it and what it takes."""


@dataclass(frozen=True)
class Key:
    name: str
    digest: bytes = field(repr=False)
    scopes: frozenset[str]


@dataclass(frozen=True)
class Settings:
    keys: tuple[Key, ...]
    per_key: tuple[int, float]  # (requests, seconds)
    per_ip: tuple[int, float]
    max_bytes: int
    timeout: float
    proxies: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        keys = []
        for name, value in sorted(env.items()):
            if not name.startswith("API_KEY_") or name.endswith("_SCOPES"):
                continue
            if len(value) < 16:
                raise SettingError(f"{name}: an API key of fewer than 16 characters is guessable; use a long "
                                   "random one (python -c 'import secrets; print(secrets.token_urlsafe(32))')")
            scopes = frozenset(s.strip() for s in env.get(f"{name}_SCOPES", "predict").split(",") if s.strip())
            if not scopes or scopes - KNOWN_SCOPES:
                raise SettingError(f"{name}_SCOPES: {', '.join(sorted(scopes - KNOWN_SCOPES)) or 'empty'} is not "
                                   f"a scope; use {', '.join(sorted(KNOWN_SCOPES))}")
            keys.append(Key(name[len("API_KEY_"):].lower(), hashlib.sha256(value.encode()).digest(), scopes))
        return cls(tuple(keys), rate(env, "RATE_LIMIT_PER_KEY", "600/minute"),
                   rate(env, "RATE_LIMIT_PER_IP", "120/minute"), number(env, "MAX_REQUEST_BYTES", "65536", int),
                   number(env, "REQUEST_TIMEOUT_SECONDS", "5", float),
                   frozenset(p.strip() for p in env.get("TRUSTED_PROXIES", "").split(",") if p.strip()))


def rate(env: Mapping[str, str], name: str, default: str) -> tuple[int, float]:
    m = _RATE.match(env.get(name, default))
    if not m or int(m.group(1)) < 1:
        raise SettingError(f"{name}: {env.get(name)!r} is not a rate like 600/minute (per second, minute or hour)")
    return int(m.group(1)), _PER[m.group(2)]


def number(env: Mapping[str, str], name: str, default: str, kind: type[int] | type[float]) -> Any:
    try:
        value = kind(env.get(name, default))
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingError(f"{name}: {env.get(name)!r} is not a positive {'whole ' if kind is int else ''}number")
    return value


class Limiter:
    """Token buckets: `n` requests per `per` seconds for each name; says how long until the next one may pass."""

    def __init__(self, n: int, per: float) -> None:
        self.n, self.rate = n, n / per
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, who: str) -> float:
        """0 when the request may pass, else the seconds to wait."""
        now = time.monotonic()
        with self.lock:
            tokens, then = self.buckets.get(who, (float(self.n), now))
            tokens = min(float(self.n), tokens + (now - then) * self.rate)
            if tokens >= 1:
                self.buckets[who] = (tokens - 1, now)
                return 0.0
            self.buckets[who] = (tokens, now)
            return (1 - tokens) / self.rate


class Metrics:
    """Counters and a histogram in Prometheus' text format (no dependency: the format is a few lines)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.limited: dict[str, int] = {}
        self.durations = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        with self.lock:
            key = (method, path if path in SCOPES or path in OPEN else "other", status)
            self.requests[key] = self.requests.get(key, 0) + 1
            i = next((n for n, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))
            self.durations[i] += 1
            self.total += seconds
            self.count += 1

    def text(self) -> str:
        with self.lock:
            out = ["# HELP api_requests_total Requests answered, by method, path and status.",
                   "# TYPE api_requests_total counter"]
            out += [f'api_requests_total{{method="{m}",path="{p}",status="{s}"}} {n}'
                    for (m, p, s), n in sorted(self.requests.items())]
            out += ["# HELP api_rate_limited_total Requests refused with 429, by limit.",
                    "# TYPE api_rate_limited_total counter"]
            out += [f'api_rate_limited_total{{limit="{k}"}} {n}' for k, n in sorted(self.limited.items())]
            out += ["# HELP api_request_duration_seconds Time to answer a request.",
                    "# TYPE api_request_duration_seconds histogram"]
            seen = 0
            for b, n in zip((*BUCKETS, math.inf), self.durations, strict=True):
                seen += n
                out.append(f'api_request_duration_seconds_bucket{{le="{"+Inf" if b == math.inf else b}"}} {seen}')
            out += [f"api_request_duration_seconds_sum {self.total:.6f}",
                    f"api_request_duration_seconds_count {self.count}"]
        return "\n".join(out) + "\n"


class Guard:
    """ASGI middleware: every request is identified, authenticated, limited, timed, logged and counted."""

    def __init__(self, app: ASGIApp, settings: Settings | None = None, log: Callable[[str], None] | None = None):
        self.app = app
        self.settings = settings or Settings.from_env()
        self.per_key = Limiter(*self.settings.per_key)
        self.per_ip = Limiter(*self.settings.per_ip)
        self.metrics = Metrics()
        self.log = log or (lambda line: print(line, file=sys.stdout, flush=True))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        path, method = scope["path"], scope["method"]
        client = (scope.get("client") or ("-", 0))[0]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if client in self.settings.proxies and headers.get("x-forwarded-for"):
            client = headers["x-forwarded-for"].split(",")[-1].strip()  # the address the proxy saw
        request_id = headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        status = [0]

        async def answer(code: int, body: dict[str, Any] | str, extra: dict[str, str] | None = None) -> None:
            text = body if isinstance(body, str) else json.dumps(body)
            kind = "text/plain; version=0.0.4" if isinstance(body, str) else "application/json"
            out = [(b"content-type", kind.encode()), (b"x-request-id", request_id.encode()),
                   *((k.encode(), v.encode()) for k, v in (extra or {}).items())]
            await send({"type": "http.response.start", "status": code, "headers": out})
            await send({"type": "http.response.body", "body": text.encode()})
            status[0] = code

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        key: Key | None = None
        try:
            if path not in OPEN:  # health checks are neither keyed nor limited
                wait = self.per_ip.take(client)
                if wait:
                    self._limited("ip")
                    await answer(429, {"detail": "too many requests from this address"},
                                 {"retry-after": str(math.ceil(wait))})
                    return
                key = self._key(headers)
                if key is None:
                    await answer(401, {"detail": "an API key is needed: send it as X-API-Key or Authorization: "
                                                 "Bearer"}, {"www-authenticate": "Bearer"})
                    return
                needed = SCOPES.get(path, "predict")
                if needed not in key.scopes:
                    await answer(403, {"detail": f"this key may not {needed}"})
                    return
                wait = self.per_key.take(key.name)
                if wait:
                    self._limited("key")
                    await answer(429, {"detail": "too many requests with this key"},
                                 {"retry-after": str(math.ceil(wait))})
                    return
            if path == "/metrics":
                await answer(200, self.metrics.text())
                return
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.settings.max_bytes:
                await answer(413, {"detail": f"the body is larger than {self.settings.max_bytes} bytes"})
                return
            body = await self._body(receive)
            if body is None:
                await answer(413, {"detail": f"the body is larger than {self.settings.max_bytes} bytes"})
                return
            replay = _replay(body)
            try:
                await asyncio.wait_for(self.app(scope, replay, tracked), self.settings.timeout)
            except TimeoutError:
                if not status[0]:
                    await answer(504, {"detail": f"no answer within {self.settings.timeout:g}s"})
        finally:
            seconds = time.monotonic() - started
            self.metrics.observe(method, path, status[0], seconds)
            self.log(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "id": request_id,
                                 "client": client, "key": key.name if key else None, "method": method,
                                 "path": path, "status": status[0], "ms": round(seconds * 1000, 1)}))

    def _key(self, headers: dict[str, str]) -> Key | None:
        """The key the request presents, compared with every known key in constant time (no early exit)."""
        given = headers.get("x-api-key") or ""
        auth = headers.get("authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given:
            return None
        digest = hashlib.sha256(given.encode()).digest()
        found = None
        for key in self.settings.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    def _limited(self, which: str) -> None:
        with self.metrics.lock:
            self.metrics.limited[which] = self.metrics.limited.get(which, 0) + 1

    async def _body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the limit (a body sent in chunks has no Content-Length)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.settings.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = [False]

    async def receive() -> Message:
        if sent[0]:
            await asyncio.sleep(3600)  # the app asks again only to watch for a disconnect
            return {"type": "http.disconnect"}
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def forget_keys() -> None:
    """The keys' plain text out of this process' environment once their digests are kept."""
    for name in [n for n in os.environ if n.startswith("API_KEY_") and not n.endswith("_SCOPES")]:
        del os.environ[name]
