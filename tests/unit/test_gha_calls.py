"""The Action's GitHub calls: a transient failure is tried again where repeating is safe (reconciler/gha.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.gha import GitHub, GitHubError


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """An API on 127.0.0.1 that answers 502 to the first request of each method, then 200."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(self.command)
            status = 502 if seen.count(self.command) == 1 else 200
            data = json.dumps({"ok": status == 200}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/models")
    yield seen
    server.shutdown()
    server.server_close()


def test_a_transient_failure_is_tried_again_but_a_comment_is_never_posted_twice(flaky: list[str]) -> None:
    gh = GitHub("token")
    assert gh.call("GET", "/repos/acme/models/commits/abc/pulls") == {"ok": True}  # 502, then 200
    assert gh.call("PATCH", "/repos/acme/models/issues/comments/1", {"body": "x"}) == {"ok": True}
    with pytest.raises(GitHubError) as failed:  # a POST that reached the server may have made its comment
        gh.call("POST", "/repos/acme/models/issues/5/comments", {"body": "x"})
    assert failed.value.code == 502
    assert flaky == ["GET", "GET", "PATCH", "PATCH", "POST"]
