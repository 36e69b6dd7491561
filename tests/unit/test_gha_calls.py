"""The Action's GitHub calls: a transient failure is tried again where repeating is safe (reconciler/gha.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reconciler.gha import GitHub, GitHubError
from tests.peers.jsonhttp import send_json


@contextmanager
def _api(handler: type[BaseHTTPRequestHandler], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The API the Action calls (GITHUB_API_URL), served on 127.0.0.1 by `handler` for the block's life."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/models")
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


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
            send_json(self, status, {"ok": status == 200})

        do_GET = do_POST = do_PATCH = _answer

    with _api(Handler, monkeypatch):
        yield seen


def test_a_transient_failure_is_tried_again_but_a_comment_is_never_posted_twice(flaky: list[str]) -> None:
    gh = GitHub("token")
    assert gh.call("GET", "/repos/acme/models/commits/abc/pulls") == {"ok": True}  # 502, then 200
    assert gh.call("PATCH", "/repos/acme/models/issues/comments/1", {"body": "x"}) == {"ok": True}
    with pytest.raises(GitHubError) as failed:  # a POST that reached the server may have made its comment
        gh.call("POST", "/repos/acme/models/issues/5/comments", {"body": "x"})
    assert failed.value.code == 502
    assert flaky == ["GET", "GET", "PATCH", "PATCH", "POST"]


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """An API whose gateway answers 502 to the first POST of each path, after the API has (or, for a comment
    "lost", has not) carried it out: as api.github.com's front now and then does."""
    state: dict[str, Any] = {"comments": [], "statuses": [], "issues": [], "posts": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            kind = "comments" if "/comments" in self.path else "issues"
            send_json(self, 200, state[kind] if "page=1" in self.path else [])

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            path = self.path
            first = path not in state["posts"]
            state["posts"].append(path)
            kind = "statuses" if "/statuses/" in path else "comments" if "/comments" in path else "issues"
            if not (first and body.get("body") == "lost"):
                state[kind].append({"id": len(state[kind]) + 1, "number": 1, **body})
            send_json(self, 502 if first else 201, {"message": "Bad Gateway"} if first else body)

    with _api(Handler, monkeypatch):
        yield state


def test_a_post_answered_502_is_made_exactly_once(gateway: dict[str, Any]) -> None:
    """A commit status is set again (the latest wins); a comment or drift issue is looked for before it is made
    again: made once whether the failed attempt was carried out or lost on the way."""
    gh = GitHub("token")
    assert gh.status("a" * 40, "recon/plan: specs", "success", "1 to change", "https://x") == "success"
    assert [s["state"] for s in gateway["statuses"]] == ["success", "success"]
    assert gh.upsert_comment(5, "<!-- m -->", "<!-- m -->\nplan") == "created"  # carried out, then 502
    assert [c["body"] for c in gateway["comments"]] == ["<!-- m -->\nplan"]
    gh.comment(7, "lost")  # lost behind the 502: made on the second attempt
    assert [c["body"] for c in gateway["comments"]] == ["<!-- m -->\nplan", "lost"]
    assert gh.drift_issue("<!-- drift -->", "<!-- drift -->\n1 drifted", drifted=True) == "opened"
    assert len(gateway["issues"]) == 1
