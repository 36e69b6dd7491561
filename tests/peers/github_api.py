"""A local stand-in for the GitHub REST API, answering as api.github.com does for the calls the action
makes (issue comments and issues), keeping state in memory and recording every request."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.peers.jsonhttp import Server, send_json


@dataclass
class FakeGitHub:
    server: Server
    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # (method, path, body)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> comment (with issue number)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sha -> statuses, oldest first
    pulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # commit sha -> pull requests with it
    prs: dict[int, dict[str, Any]] = field(default_factory=dict)  # number -> pull request (head, base, mergeable)
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # number -> reviews, oldest first
    token: str = "ghs_test_token"
    read_only: str = "ghs_fork_token"  # a fork's pull request token: reads, and 403 on every write

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(repo: str = "acme/models") -> FakeGitHub:
    state: FakeGitHub

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            return None

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n)) if n else None

        def _send(self, status: int, data: Any) -> None:
            send_json(self, status, data, "application/json; charset=utf-8")

        def _handle(self, method: str) -> None:
            body = self._body()
            url = urlparse(self.path)
            state.requests.append((method, url.path, body))
            if self.headers.get("Authorization") == f"Bearer {state.read_only}" and method != "GET":
                self._send(403, {"message": "Resource not accessible by integration"})
                return
            if self.headers.get("Authorization") not in (f"Bearer {state.token}", f"Bearer {state.read_only}"):
                self._send(401, {"message": "Bad credentials"})
                return
            base = f"/repos/{repo}"
            query = parse_qs(url.query)
            page = int(query.get("page", ["1"])[0])
            per = int(query.get("per_page", ["30"])[0])
            if m := re.fullmatch(base + r"/issues/(\d+)/comments", url.path):
                number = int(m[1])
                if method == "GET":
                    mine = sorted((c for c in state.comments.values() if c["issue"] == number), key=lambda c: c["id"])
                    self._send(200, mine[(page - 1) * per: page * per])
                    return
                cid = 1000 + len(state.comments) + 1
                state.comments[cid] = {"id": cid, "issue": number, "body": body["body"],
                                       "user": {"login": "github-actions[bot]", "type": "Bot"}}  # the token's
                self._send(201, state.comments[cid])
                return
            if (m := re.fullmatch(base + r"/issues/comments/(\d+)", url.path)) and method == "PATCH":
                comment = state.comments.get(int(m[1]))
                if comment is None:
                    self._send(404, {"message": "Not Found"})
                    return
                comment["body"] = body["body"]
                self._send(200, comment)
                return
            if (m := re.fullmatch(base + r"/pulls/(\d+)", url.path)) and method == "GET":
                found = state.prs.get(int(m[1]))
                self._send(200 if found else 404, found or {"message": "Not Found"})
                return
            if (m := re.fullmatch(base + r"/pulls/(\d+)/reviews", url.path)) and method == "GET":
                self._send(200, state.reviews.get(int(m[1]), [])[(page - 1) * per: page * per])
                return
            if (m := re.fullmatch(base + r"/commits/([0-9a-f]{40})/pulls", url.path)) and method == "GET":
                self._send(200, state.pulls.get(m[1], []))
                return
            if (m := re.fullmatch(base + r"/statuses/([0-9a-f]{40})", url.path)) and method == "POST":
                if body.get("state") not in ("error", "failure", "pending", "success") or not body.get("context"):
                    self._send(422, {"message": "Validation Failed"})
                    return
                state.statuses.setdefault(m[1], []).append(body)
                self._send(201, body)
                return
            if url.path == base + "/issues":
                if method == "GET":
                    found = [i for i in state.issues.values() if i["state"] == query.get("state", ["open"])[0]
                             and all(lbl in i["labels"] for lbl in query.get("labels", [""])[0].split(",") if lbl)]
                    self._send(200, found[(page - 1) * per: page * per])
                    return
                number = len(state.issues) + 1
                state.issues[number] = {"number": number, "state": "open", "title": body["title"],
                                        "body": body["body"], "labels": body.get("labels", [])}
                self._send(201, state.issues[number])
                return
            if (m := re.fullmatch(base + r"/issues/(\d+)", url.path)) and method == "PATCH":
                issue = state.issues[int(m[1])]
                issue.update(body)
                self._send(200, issue)
                return
            self._send(404, {"message": "Not Found"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

    server = Server(("127.0.0.1", 0), Handler)
    state = FakeGitHub(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state
