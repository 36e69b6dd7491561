"""What the HTTP test peers (GitHub API, Kubernetes API, registry token server, WinRM hosts) share: their server,
and the JSON reply they send."""

from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Server(ThreadingHTTPServer):
    """A thread per connection, and an accept queue as long as the kernel allows, as the servers the peers stand
    for keep (Go's net/http listens with net.core.somaxconn, HTTP.sys with a large queue). socketserver's
    default of 5 overflowed when a client opened 16 connections at once, and a connection it then answered
    with a reset failed a `recon plan` that a real server would have served (tests/e2e/test_peer_servers.py)."""

    request_queue_size = socket.SOMAXCONN
    daemon_threads = True


def send_json(handler: BaseHTTPRequestHandler, status: int, data: Any,
              content_type: str = "application/json", headers: list[tuple[str, str]] | None = None) -> None:
    raw = json.dumps(data).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    for name, value in headers or []:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(raw)))
    handler.end_headers()
    handler.wfile.write(raw)
