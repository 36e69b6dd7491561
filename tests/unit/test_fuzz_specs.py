"""1,000 malformed spec files, generated from valid ones by a seeded mutator (bytes deleted, inserted,
swapped, lines duplicated or cut, YAML's own syntax thrown in), each loaded as `recon validate` loads it:
no traceback, no internal error, every problem names its file, in bounded time (issue 18)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from specs.errors import SpecError
from specs.project import load_project

SEEDS = [
    """apiVersion: recon/v1
kind: HostGroup
metadata: {name: web, labels: {role: web}}
spec:
  connection: ssh
  ssh: {user: deploy, port: 22, identity: {file: ~/.ssh/id}, knownHosts: known_hosts}
  hosts: [{name: web-01, address: 10.0.0.5}, {name: web-02}]
""",
    """apiVersion: recon/v1
kind: HostState
metadata: {name: site, dependsOn: [HostGroup/web]}
spec:
  group: web
  strategy: {batch: "25%", maxFailures: 1}
  resources:
    - {type: file, path: /etc/app.conf, content: "workers = 4\\n", mode: "0644", notify: [reload]}
    - {type: directory, path: /srv/www}
    - {type: service, name: nginx, state: running, enabled: true}
    - {type: command, id: reload, run: systemctl reload nginx, onlyWhenNotified: true}
    - {type: package, name: htop, version: "3.2"}
""",
    """apiVersion: recon/v1
kind: Model
metadata: {name: churn, labels: {env: prod}}
spec:
  runtime: docker
  image: registry.local/churn:1.2.0
  replicas: 2
  port: 18080
  env: {LOG_LEVEL: info}
  health: {path: /health, timeoutSeconds: 5}
""",
    """apiVersion: recon/v1
kind: Policy
metadata: {name: guard}
spec:
  environments:
    - {name: prod, match: {labels: {env: prod}}, confirm: true}
  rules:
    - {name: no-deletes, effect: deny, when: {environments: [prod], actions: [delete]}}
""",
    """apiVersion: recon/v1
kind: Bundle
metadata: {name: weights}
spec: {source: ., ref: '127.0.0.1:5000/models/churn:v1', include: ["*.bin"]}
""",
]
SYNTAX = ["&a ", "*a", "!!python/object:os.system ", "- ", ": ", "{", "}", "[", "]", "\t", "\x00", "%YAML 9.9\n",
          "---\n", "...\n", "<<: *a\n", "'", '"', "\\", "#", "? ", "|\n", ">-\n", "\ufeff", "\u202e", "\x1b[2J",
          "9" * 5000, "@", "`", "~", "null", "0x1F", "1e999", "-.inf", ".nan", "2001-12-14t21:59:43.10-05:00"]


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 6)):
        pos = rng.randrange(len(text) + 1)
        op = rng.randrange(6)
        if op == 0:
            text = text[:pos] + text[pos + rng.randint(1, 12):]
        elif op == 1:
            text = text[:pos] + rng.choice(SYNTAX) + text[pos:]
        elif op == 2:
            text = text[:pos] + chr(rng.randrange(0x20, 0x7f)) + text[pos:]
        elif op == 3:
            lines = text.splitlines(keepends=True)
            if lines:
                i = rng.randrange(len(lines))
                text = "".join(lines[:i] + [lines[i]] * rng.randint(2, 50) + lines[i:])
        elif op == 4:
            lines = text.splitlines(keepends=True)
            rng.shuffle(lines)
            text = "".join(lines)
        else:
            text = text[:pos] + " " * rng.randint(1, 8) + text[pos:]
    return text


@pytest.mark.parametrize("batch", range(10))
def test_a_thousand_malformed_specs_give_clear_errors(tmp_path: Path, batch: int) -> None:
    rng = random.Random(1000 + batch)
    started = time.monotonic()
    for i in range(100):
        spec = tmp_path / f"case{i}" / "spec.yaml"
        spec.parent.mkdir()
        spec.write_text(mutate(rng.choice(SEEDS), rng), encoding="utf-8", errors="surrogatepass")
        try:
            load_project([str(spec.parent)], preflight=False)
        except SpecError as exc:
            assert exc.diagnostics, spec.read_text()
            for d in exc.diagnostics:
                assert d.file is not None and Path(d.file).name == "spec.yaml", (d, spec.read_text())
                assert d.summary and "Traceback" not in d.summary
        # (loading without an error is fine: some mutations leave a valid spec)
    assert time.monotonic() - started < 60, "100 malformed specs took more than a minute to reject"
