"""recon draft through the real CLI: print, write, then the ordinary plan; edits in place; git history;
confirmations; questions; a pluggable planner whose output is validated like any spec."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from tests.conftest import ROOT, recon
from tests.terminal import on_terminal

GROUP = """\
    apiVersion: recon/v1
    kind: HostGroup
    metadata: {name: workstation, labels: {role: web}}
    spec:
      connection: local
      hosts: [{name: localhost, root: ../root}]
    ---
    apiVersion: recon/v1
    kind: HostState
    metadata: {name: web-base}
    spec:
      group: workstation
      resources:
        - {type: directory, path: /srv}
    """
MODELS = """\
    # churn models: stage first
    apiVersion: recon/v1
    kind: Model
    metadata: {name: churn-model, labels: {env: stage}}
    spec:
      runtime: docker
      image: registry.local/churn:{version}   # the released image
      replicas: 2
      port: 18080
    ---
    apiVersion: recon/v1
    kind: Policy
    metadata: {name: envs}
    spec:
      environments:
        - {name: stage, match: {labels: {env: stage}}}
    """


def _project(tmp: Path) -> None:
    (tmp / "specs").mkdir()
    (tmp / "root").mkdir()
    (tmp / "specs" / "hosts.yaml").write_text(textwrap.dedent(GROUP))
    (tmp / "app.conf").write_text("port = 80\n")


def test_draft_write_then_plan_and_apply(tmp_path: Path) -> None:
    _project(tmp_path)
    shown = recon("draft", "deploy app.conf to /etc/app/app.conf on the workstation", cwd=tmp_path)
    assert shown.rc == 0, shown.text
    assert "# new file specs/app-workstation.yaml" in shown.out and "path: /etc/app/app.conf" in shown.out
    assert not (tmp_path / "specs" / "app-workstation.yaml").exists()
    written = recon("draft", "deploy app.conf to /etc/app/app.conf on the workstation", "--write", cwd=tmp_path)
    assert written.rc == 0, written.text
    assert "+ create  HostState/app-workstation/file:/etc/app/app.conf" in written.out  # the ordinary plan
    assert recon("apply", "--auto-approve", cwd=tmp_path).rc == 0
    assert (tmp_path / "root" / "etc" / "app" / "app.conf").read_text() == "port = 80\n"
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path).rc == 0


def test_edits_keep_the_file_and_roll_back_reads_git(tmp_path: Path) -> None:
    _project(tmp_path)
    models = tmp_path / "specs" / "models.yaml"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    for version in ("1.1.0", "1.2.0"):
        models.write_text(textwrap.dedent(MODELS).replace("{version}", version))
        subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
        subprocess.run([*git, "commit", "-qm", version], cwd=tmp_path, check=True)
    back = recon("draft", "roll back churn-model in stage", cwd=tmp_path)
    assert back.rc == 0, back.text
    assert "-  image: registry.local/churn:1.2.0   # the released image" in back.out
    assert "+  image: registry.local/churn:1.1.0   # the released image" in back.out
    assert "from the git history" in back.out
    scaled = recon("draft", "scale churn-model to 5 in stage", "--write", "--no-plan", cwd=tmp_path)
    assert scaled.rc == 0, scaled.text
    text = models.read_text()
    assert text.startswith("# churn models: stage first\n") and "  replicas: 5\n" in text
    assert "# the released image" in text and "kind: Policy" in text


def test_a_destructive_draft_needs_a_confirmation(tmp_path: Path) -> None:
    _project(tmp_path)
    refused = recon("draft", "stop nginx on workstation", "--write", cwd=tmp_path)
    assert refused.rc == 1 and "Needs confirmation: it stops nginx on the 1 host of workstation" in refused.out
    assert "Not written: add --yes" in refused.out and not (tmp_path / "specs" / "nginx-workstation.yaml").exists()
    rc, shown = on_terminal(["draft", "stop nginx on workstation", "--write", "--no-plan"], tmp_path,
                            prompt=b"Type yes to write it", answer="yes")
    assert rc == 0 and "Written: specs/nginx-workstation.yaml" in shown, shown
    text = (tmp_path / "specs" / "nginx-workstation.yaml").read_text()
    assert text.startswith("# Drafted by recon draft from: 'stop nginx on workstation'\n# Needs confirmation:")


def test_questions_are_listed_or_asked(tmp_path: Path) -> None:
    _project(tmp_path)
    listed = recon("draft", "restart nginx on the mail servers", cwd=tmp_path)
    assert listed.rc == 1 and "no group matches 'the mail servers'; known groups: workstation" in listed.out
    rc, shown = on_terminal(["draft", "restart nginx on the mail servers"], tmp_path,
                            prompt=b"Say it again", answer="\x15restart nginx on workstation")
    assert rc == 0 and "restart-nginx-workstation-" in shown, shown


def test_a_pluggable_planner_is_validated_like_any_spec(tmp_path: Path) -> None:
    _project(tmp_path)
    env = {"RECON_DRAFT_PLANNER": "tests.e2e.draft_planner:Planner", "PYTHONPATH": str(ROOT)}
    good = recon("draft", "serve the llm with 2 replicas", cwd=tmp_path, env=env)
    assert good.rc == 0 and "# new file specs/llm-model.yaml" in good.out, good.text
    bad = recon("draft", "serve the llm with many replicas", cwd=tmp_path, env=env)
    assert bad.rc == 1 and "specs/llm-model.yaml:" in bad.err and "spec.replicas" in bad.err, bad.text
    assert "Traceback" not in bad.text
    missing = recon("draft", "x", cwd=tmp_path, env={"RECON_DRAFT_PLANNER": "nowhere:Nothing"})
    assert missing.rc == 1 and "RECON_DRAFT_PLANNER=nowhere:Nothing: cannot load it" in missing.err


def test_the_readme_s_draft_says_why_and_keeps_the_specs_given(tmp_path: Path) -> None:
    """Issue 22 (3): `recon draft "scale churn-model to 3 in stage" --specs examples/model-docker` asked "scale which
    model to how many replicas?", suggesting the very words typed, and never said that there is no environment
    `stage`; its "Write it with" hint dropped the --specs given."""
    specs = str(ROOT / "examples" / "model-docker")
    asked = recon("draft", "scale churn-model to 3 in stage", "--specs", specs, cwd=tmp_path)
    assert asked.rc == 1
    assert "there is no environment 'stage'" in asked.out, asked.out
    assert "(say: scale churn-model to 3 in stage)" not in asked.out and "(say: scale churn-model to 3)" in asked.out
    drafted = recon("draft", "scale churn-model to 3", "--specs", specs, cwd=tmp_path)
    assert drafted.rc == 0, drafted.text
    assert f"Write it with: recon draft 'scale churn-model to 3' --specs {specs} --write" in drafted.out
