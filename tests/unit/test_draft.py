"""recon draft: a table of requests, each with the spec it must become or the question it must raise."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler.draft.catalog import Catalog
from reconciler.draft.model import Draft
from reconciler.draft.rules import RuleDrafter
from specs.project import load_project

SPECS = {
    "groups.yaml": """\
        apiVersion: recon/v1
        kind: HostGroup
        metadata: {name: web, labels: {role: web}}
        spec:
          connection: ssh
          hosts: [{name: web-01}, {name: web-02}, {name: web-03}]
        ---
        apiVersion: recon/v1
        kind: HostGroup
        metadata: {name: cis-servers, labels: {site: cis}}
        spec:
          connection: winrm
          winrm: {password: {env: CIS_PASSWORD}}
          hosts: [{name: cis-01}, {name: cis-02}]
        ---
        apiVersion: recon/v1
        kind: HostGroup
        metadata: {name: db, labels: {role: database}}
        spec:
          connection: ssh
          hosts: [{name: db-01}]
        ---
        apiVersion: recon/v1
        kind: HostGroup
        metadata: {name: app-eu, labels: {role: app}}
        spec:
          connection: ssh
          hosts: [{name: app-eu-01}]
        ---
        apiVersion: recon/v1
        kind: HostGroup
        metadata: {name: app-us, labels: {role: app}}
        spec:
          connection: ssh
          hosts: [{name: app-us-01}]
        ---
        # Windows hosts by their own connection, in a group whose default is ssh
        apiVersion: recon/v1
        kind: HostGroup
        metadata: {name: tills}
        spec:
          connection: ssh
          winrm: {password: {env: TILL_PASSWORD}}
          hosts: [{name: till-01, connection: winrm}, {name: till-02, connection: winrm}]
        """,
    "web.yaml": """\
        # the web servers' base: nginx installed and running
        apiVersion: recon/v1
        kind: HostState
        metadata: {name: web-base}
        spec:
          group: web
          resources:
            - {type: package, name: nginx}
            - {type: service, name: nginx, state: running}
        """,
    "stationcontroller.yaml": """\
        apiVersion: recon/v1
        kind: HostState
        metadata: {name: stationcontroller}
        spec:
          group: cis-servers
          resources:
            - type: file
              path: 'C:\\Program Files\\Station\\stationcontroller.exe'
              source: files/stationcontroller.exe
              whileStopped: [StationController]
            - {type: service, name: StationController, state: running}
        """,
    "policy.yaml": """\
        apiVersion: recon/v1
        kind: Policy
        metadata: {name: environments}
        spec:
          environments:
            - {name: stage, match: {labels: {env: stage}}}
            - {name: prod, match: {labels: {env: prod}}, confirm: true}
        """,
    "models.yaml": """\
        apiVersion: recon/v1
        kind: Model
        metadata: {name: churn-model, labels: {env: stage}}
        spec: {runtime: docker, image: 'registry.local/churn:1.2.0', replicas: 2, port: 18080}
        ---
        apiVersion: recon/v1
        kind: Model
        metadata: {name: churn-model-prod, labels: {env: prod}}
        spec: {runtime: docker, image: 'registry.local/churn:1.1.0', replicas: 4, port: 18180}
        ---
        apiVersion: recon/v1
        kind: Model
        metadata: {name: fraud-model, labels: {env: stage}}
        spec: {runtime: docker, build: {context: fraud}, port: 18280}
        ---
        apiVersion: recon/v1
        kind: Bundle
        metadata: {name: churn-weights}
        spec: {source: ../weights, ref: '127.0.0.1:5000/models/churn-weights:v1'}
        """,
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    specs = tmp_path / "specs"
    (specs / "files").mkdir(parents=True)
    for name, text in SPECS.items():
        (specs / name).write_text(textwrap.dedent(text))
    (specs / "files" / "stationcontroller.exe").write_bytes(b"2.4.0")
    (specs / "fraud").mkdir()
    (specs / "fraud" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "weights").mkdir()
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "stationcontroller.exe").write_bytes(b"2.4.1")
    (tmp_path / "app.conf").write_text("port = 80\n")
    monkeypatch.chdir(tmp_path)
    return specs


def drafted(specs: Path, request: str) -> Draft:
    return RuleDrafter().draft(request, Catalog.of(load_project([str(specs)], preflight=False)), specs, "2026-11-23")


# request -> what the draft must be: {address: {place: value}} for edits and new specs, "?text" for a question;
# "!" in front: it needs a confirmation.
TABLE: list[tuple[str, Any]] = [
    # services
    ("start nginx on web", {"HostState/web-base": {  # already says so: an edit with nothing to change
        ("spec", "resources", 1, "state"): "running", ("spec", "resources", 0, "name"): "nginx"}}),
    ("stop nginx on all web servers", {"!HostState/web-base": {("spec", "resources", 1, "state"): "stopped"}}),
    ("stp nginx on the web servers", {"!HostState/web-base": {("spec", "resources", 1, "state"): "stopped"}}),
    ("restart nginx on all web servers", {"!HostState/restart-nginx-web-20261123": {
        ("spec", "resources", 0, "creates"): "/var/lib/recon/requests/restart-nginx-web-20261123"}}),
    ("retsart nginx on web", {"!HostState/restart-nginx-web-20261123": {
        ("spec", "resources", 0, "creates"): "/var/lib/recon/requests/restart-nginx-web-20261123"}}),
    ("restart apache on web", "?which service is 'apache' on web: apache2 or httpd?"),
    ("restart StationController on CIS servers", {"!HostState/restart-stationcontroller-cis-servers-20261123": {
        ("spec", "resources", 0, "creates"):
            "C:\\ProgramData\\recon\\requests\\restart-stationcontroller-cis-servers-20261123"}}),
    ("start redis on db servers", {"HostState/redis-db": {("spec", "resources", 0, "state"): "running"}}),
    ("start redis on databse servers", {"HostState/redis-db": {  # a label, misspelt
        ("spec", "group"): "db", ("spec", "resources", 0, "state"): "running"}}),
    ("start redis", "?on which group of hosts? known: app-eu, app-us, cis-servers, db, tills, web"),
    ("restart nginx on app servers", "?'app servers' matches several groups: app-eu, app-us; say which"),
    ("restart nginx on mail servers", "?no group matches 'mail servers'; known groups:"),
    ("restart nginx on web-02", "?web-02 is a host of the group web"),
    ("stop the service on web", "?which service?"),
    # packages
    ("install htop on web", {"HostState/htop-web": {("spec", "resources", 0, "type"): "package"}}),
    ("instal htop on db", {"HostState/htop-db": {("spec", "resources", 0, "name"): "htop",
                                                  ("spec", "resources", 0, "state"): "present"}}),
    ("install nginx on web", {"HostState/web-base": {("spec", "resources", 0, "state"): "present"}}),
    ("update nginx to 1.24.0 on web", {"HostState/web-base": {("spec", "resources", 0, "version"): "1.24.0"}}),
    ("upgrade nginx on web", "?update nginx to which version?"),
    ("remove telnet from db servers", {"!HostState/telnet-db": {("spec", "resources", 0, "state"): "absent"}}),
    ("uninstall nginx from web", {"!HostState/web-base": {("spec", "resources", 0, "state"): "absent"}}),
    ("install notepad++ on CIS servers", "?cis-servers is a group of Windows hosts, where a package is an MSI"),
    # the stationcontroller update: a file a HostState already manages
    ("update stationcontroller on CIS servers", "?HostState/stationcontroller manages C:\\Program Files\\Station"),
    ("update stationcontroller on CIS servers from build/stationcontroller.exe",
     {"HostState/stationcontroller": {("spec", "resources", 0, "source"): "../build/stationcontroller.exe"}}),
    ("update stationcontroller on cis servrs from build/stationcontroller.exe", {"HostState/stationcontroller": {
        ("spec", "resources", 0, "source"): "../build/stationcontroller.exe"}}),
    ("update stationcontroller on CIS servers from build/missing.exe", "?there is no file build/missing.exe"),
    # files
    ("deploy app.conf to /etc/app/app.conf on web", {"HostState/app-web": {
        ("spec", "resources", 0, "path"): "/etc/app/app.conf", ("spec", "resources", 0, "source"): "../app.conf"}}),
    ("copy app.conf to /etc/app/ on db", {"HostState/app-db": {("spec", "resources", 0, "path"): "/etc/app/app.conf"}}),
    ("deploy app.conf to /etc/app/app.conf on CIS servers", "?/etc/app/app.conf is not a path on Windows hosts"),
    ("deploy nothere.conf to /etc/x.conf on web", "?there is no file nothere.conf here to deploy"),
    # processes (Windows)
    ("kill notepad on CIS servers", {"!HostState/notepad-process-cis-servers": {
        ("spec", "resources", 0, "type"): "process"}}),
    ("stop process stationcontroller.exe on cis servers", {"!HostState/stationcontroller-process-cis-servers": {
        ("spec", "resources", 0, "name"): "stationcontroller", ("spec", "resources", 0, "state"): "stopped"}}),
    ("kill nginx on web", "?stopping processes by name is for Windows groups"),
    ("kill notepad on tills", {"!HostState/notepad-process-tills": {("spec", "resources", 0, "type"): "process"}}),
    # models
    ("scale churn-model to 3 in stage", {"Model/churn-model": {("spec", "replicas"): 3}}),
    ("scale churn-model to 6 in prod", {"Model/churn-model-prod": {("spec", "replicas"): 6}}),
    ("scael churn-model to 3 in stage", {"Model/churn-model": {("spec", "replicas"): 3}}),
    ("scale churn to 3", "?'churn' matches several Models: churn-model (stage), churn-model-prod (prod)"),
    ("scale churn-model to 0 in stage", {"!Model/churn-model": {("spec", "replicas"): 0}}),
    ("scale recommender to 2", "?no Model named 'recommender'"),
    ("scale churn-model in stage", "?scale which model to how many replicas?"),
    ("deploy churn-model version 1.3.0 in stage", {"Model/churn-model": {("spec", "image"):
                                                                          "registry.local/churn:1.3.0"}}),
    ("deploy churn-model 1.3.0 to prod", {"Model/churn-model-prod": {("spec", "image"): "registry.local/churn:1.3.0"}}),
    ("deploy churn-model in stage", "?deploy which version of churn-model?"),
    ("deploy fraud-model version 2", "?fraud-model is built from a context"),
    ("roll back churn-model to 1.1.0 in stage", {"Model/churn-model": {("spec", "image"):
                                                                         "registry.local/churn:1.1.0"}}),
    ("roll back churn-model in stage", "?roll churn-model back to which version? git has no earlier image"),
    # bundles
    ("publish churn-weights as v2", {"Bundle/churn-weights": {
        ("spec", "ref"): "127.0.0.1:5000/models/churn-weights:v2"}}),
    ("publsh churn-weights tag v3", {"Bundle/churn-weights": {
        ("spec", "ref"): "127.0.0.1:5000/models/churn-weights:v3"}}),
    ("publish churn-weights", "?publish churn-weights as which tag?"),
    # what it will not do
    ("delete churn-model in prod", "?recon drafts no deletions"),
    ("wipe the database servers", "?recon drafts no deletions"),
    ("make it faster", "?'make' is no verb I know"),
    ("", "?I understand"),
]


@pytest.mark.parametrize(("request_", "expected"), TABLE, ids=[t[0] or "(empty)" for t in TABLE])
def test_draft_table(project: Path, request_: str, expected: Any) -> None:
    got = drafted(project, request_)
    if isinstance(expected, str):
        assert got.questions and expected[1:] in " | ".join(got.questions), (got.questions, got.edits)
        assert not got.ok
        return
    assert not got.questions, got.questions
    ((address, places),) = expected.items()
    assert places, "say what the draft must write, not only which spec it edits"
    assert bool(got.confirm) == address.startswith("!"), got.confirm
    (edit,) = got.edits
    assert edit.address == address.lstrip("!")
    for loc, value in places.items():
        node: Any = edit.document
        for key in loc:
            node = node[key]
        assert node == value, (loc, node)


def test_the_table_is_long_enough() -> None:
    assert len(TABLE) >= 40
    assert sum(isinstance(e, str) for _, e in TABLE) >= 15  # questions: missing, unknown, ambiguous
