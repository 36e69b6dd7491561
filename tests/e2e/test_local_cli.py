"""End to end: the real `recon` CLI in child processes against the real local filesystem.

Every scenario applies, then re-plans and expects an empty plan (exit 0 with --detailed-exitcode).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import textwrap
from pathlib import Path

import pytest

from specs.kinds import KINDS
from tests.conftest import ROOT, Outcome, recon

QUICKSTART = ROOT / "examples" / "quickstart"


def group(*hosts: str) -> str:
    items = "\n".join(f"    - {{name: {h}, root: ../{h}-root}}" for h in hosts)
    return f"apiVersion: recon/v1\nkind: HostGroup\nmetadata: {{name: hosts}}\nspec:\n  hosts:\n{items}\n"


def hoststate(name: str, resources: str, meta: str = "") -> str:
    head = f"apiVersion: recon/v1\nkind: HostState\nmetadata:\n  name: {name}\n{meta}spec:\n  group: hosts\n"
    return head + "  resources:\n" + textwrap.indent(textwrap.dedent(resources), "    ")


def write(specs: Path, files: dict[str, str]) -> None:
    specs.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (specs / name).write_text(text)


def assert_converged(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Outcome:
    got = recon("plan", *args, "--detailed-exitcode", cwd=cwd, env=env)
    assert got.rc == 0, got.text
    assert "No changes." in got.out
    return got


@pytest.fixture
def quickstart(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    shutil.copytree(QUICKSTART, tmp_path / "specs")
    env = {"RECON_QUICKSTART_ROOT": str(tmp_path / "root")}
    return tmp_path, env


def test_quickstart_plan_apply_replan(quickstart: tuple[Path, dict[str, str]]) -> None:
    cwd, env = quickstart
    got = recon("plan", "--detailed-exitcode", cwd=cwd, env=env)
    assert got.rc == 2, got.text
    assert "+ create  HostState/app/file:/srv/app/config.ini @ localhost" in got.out
    assert "Plan: 5 to create, 0 to update, 0 to delete, 0 unchanged, 2 to run." in got.out
    assert not (cwd / "root").exists(), "plan must not change anything"

    got = recon("apply", "--auto-approve", cwd=cwd, env=env)
    assert got.rc == 0, got.text
    assert "Apply complete: 7 succeeded, 0 failed" in got.out
    app = cwd / "root" / "srv" / "app"
    assert (app / "config.ini").read_text() == "[service]\nport = 8080\nworkers = 2\n"
    assert stat.S_IMODE((app / "models").stat().st_mode) == 0o750
    assert stat.S_IMODE((app / "logs").stat().st_mode) == 0o700
    assert (app / "last-reload").exists()
    assert (app / "logs" / "app.log").read_text() == "recon quickstart\n"
    assert (app / "README.txt").read_bytes() == (QUICKSTART / "files" / "README.txt").read_bytes()

    got = recon("plan", "--detailed-exitcode", cwd=cwd, env=env)
    assert got.rc == 0, got.text
    assert "Plan: 0 to create, 0 to update, 0 to delete, 7 unchanged." in got.out


def test_change_outside_recon_shows_in_next_plan(quickstart: tuple[Path, dict[str, str]]) -> None:
    cwd, env = quickstart
    assert recon("apply", "--auto-approve", cwd=cwd, env=env).rc == 0
    config = cwd / "root" / "srv" / "app" / "config.ini"
    config.write_text("[service]\nport = 9999\n")
    (cwd / "root" / "srv" / "app" / "models").chmod(0o777)
    got = recon("plan", "--json", "--detailed-exitcode", cwd=cwd, env=env)
    assert got.rc == 2
    plan = json.loads(got.out)
    pending = {c["id"]: c for c in plan["changes"] if c["action"] != "noop"}
    assert set(pending) == {
        "HostState/app/file:/srv/app/config.ini@localhost",
        "HostState/app/directory:/srv/app/models@localhost",
        "HostState/app/command:reload@localhost",
    }
    fields = pending["HostState/app/file:/srv/app/config.ini@localhost"]["fields"]
    assert [f["path"] for f in fields] == ["content", "diff"]  # the text diff beside the digests
    assert pending["HostState/app/directory:/srv/app/models@localhost"]["fields"] == [
        {"path": "mode", "before": "0777", "after": "0750"}
    ]
    assert pending["HostState/app/command:reload@localhost"]["reason"] == "notified by file:/srv/app/config.ini"
    assert plan["summary"] == {"create": 0, "update": 2, "replace": 0, "delete": 0, "restart": 0, "run": 1, "noop": 4}
    assert recon("apply", "--auto-approve", cwd=cwd, env=env).rc == 0
    assert config.read_text().startswith("[service]\nport = 8080")
    assert_converged(cwd, env=env)


def test_saved_plan_is_applied_exactly_and_stale_plan_refused(quickstart: tuple[Path, dict[str, str]]) -> None:
    cwd, env = quickstart
    got = recon("plan", "--out", "plan.json", cwd=cwd, env=env)
    assert got.rc == 0 and "recon apply plan.json" in got.out
    shown = recon("show", "plan.json", cwd=cwd)
    assert shown.rc == 0 and "Plan: 5 to create" in shown.out
    assert json.loads(recon("show", "plan.json", "--json", cwd=cwd).out) == json.loads((cwd / "plan.json").read_text())
    got = recon("apply", "plan.json", cwd=cwd, env=env)  # a saved plan needs no prompt
    assert got.rc == 0, got.text
    assert_converged(cwd, env=env)

    # the live state moves after the plan: the saved plan is refused, naming the resource
    config = cwd / "root" / "srv" / "app" / "config.ini"
    config.write_text("drift\n")
    assert recon("plan", "--out", "plan.json", cwd=cwd, env=env).rc == 0
    config.write_text("drift again\n")
    got = recon("apply", "plan.json", cwd=cwd, env=env)
    assert got.rc == 1
    assert "the saved plan is stale; nothing was applied" in got.err
    assert "HostState/app/file:/srv/app/config.ini@localhost: live state moved since the plan" in got.err
    assert "recon plan specs --out plan.json" in got.err
    assert config.read_text() == "drift again\n"
    assert (cwd / "root" / "srv" / "app" / "last-reload").read_text() != ""

    # the specs move after the plan: refused too
    assert recon("plan", "--out", "plan.json", cwd=cwd, env=env).rc == 0
    spec = cwd / "specs" / "app.yaml"
    spec.write_text(spec.read_text().replace("workers = 2", "workers = 4"))
    got = recon("apply", "plan.json", cwd=cwd, env=env)
    assert got.rc == 1
    assert "HostState/app: the spec changed" in got.err
    assert config.read_text() == "drift again\n"


def test_apply_without_terminal_needs_auto_approve(quickstart: tuple[Path, dict[str, str]]) -> None:
    cwd, env = quickstart
    got = recon("apply", cwd=cwd, env=env)
    assert got.rc == 3
    assert "--auto-approve" in got.err
    assert not (cwd / "root").exists()


def test_target_and_exclude(tmp_path: Path) -> None:
    write(tmp_path / "specs", {
        "g.yaml": group("a"),
        "base.yaml": hoststate("base", "- type: directory\n  path: /base\n"),
        "web.yaml": hoststate("web", """\
            - type: file
              path: /web/index.html
              content: hi
            - type: file
              path: /web/other.html
              content: there
            """, meta="  dependsOn: [HostState/base]\n"),
    })
    got = recon("plan", "--json", "--target", "HostState/web/file:/web/index.html", cwd=tmp_path)
    ids = {c["id"] for c in json.loads(got.out)["changes"]}
    # the target, plus what its spec depends on
    assert ids == {"HostState/web/file:/web/index.html@a", "HostState/base/directory:/base@a"}
    got = recon("plan", "--json", "--exclude", "HostState/web/file:/web/other*", cwd=tmp_path)
    ids = {c["id"] for c in json.loads(got.out)["changes"]}
    assert "HostState/web/file:/web/other.html@a" not in ids and len(ids) == 2
    got = recon("apply", "--auto-approve", "--target", "HostState/base", cwd=tmp_path)
    assert got.rc == 0 and "1 succeeded" in got.out
    assert (tmp_path / "a-root" / "base").is_dir() and not (tmp_path / "a-root" / "web").exists()
    got = recon("plan", "--out", "p.json", "--target", "HostState/base", cwd=tmp_path)
    assert "Selected with --target HostState/base" in got.out and "No changes." in got.out
    assert recon("apply", "--auto-approve", cwd=tmp_path).rc == 0
    assert_converged(tmp_path)


def test_hosts_in_parallel_failure_isolated_and_dependents_skipped(tmp_path: Path) -> None:
    write(tmp_path / "specs", {
        "g.yaml": group("a", "b", "c"),
        "first.yaml": hoststate("first", """\
            - type: directory
              path: /data
            - type: command
              id: check
              run: 'case "$RECON_ROOT" in */b-root) echo "disk full on b" >&2; exit 7;; esac; touch data/ok'
              creates: /data/ok
            - type: file
              path: /data/after
              content: x
            """),
        "second.yaml": hoststate("second", "- type: file\n  path: /second\n  content: y\n",
                                 meta="  dependsOn: [HostState/first]\n"),
    })
    got = recon("apply", "--auto-approve", cwd=tmp_path)
    assert got.rc == 1
    assert "HostState/first/command:check@b" in got.out and "exit 7: disk full on b" in got.out
    assert "HostState/first/file:/data/after@b\n      skipped: an earlier step on this host failed" in got.out
    assert "skipped: a spec it depends on failed" in got.out
    assert "HostState/first/directory:/data@b\n      rolled back: HostState/first/command:check@b failed" in got.out
    assert "Apply incomplete: 6 succeeded, 6 failed" in got.out
    for host in ("a", "c"):
        assert (tmp_path / f"{host}-root" / "data" / "after").read_text() == "x"
    assert not (tmp_path / "b-root" / "data").exists()  # the host was rolled back
    assert not (tmp_path / "b-root" / "data" / "after").exists()
    journal = next((tmp_path / ".recon" / "journal").glob("*.jsonl")).read_text().splitlines()
    events = [json.loads(line) for line in journal]
    assert events[0]["event"] == "start" and events[-1] == {**events[-1], "event": "end", "ok": False, "succeeded": 6,
                                                                "failed": 6}
    failed = {e["change"] for e in events if e["event"] == "result" and not e["ok"]}
    assert "HostState/first/command:check@b" in failed
    got = recon("plan", "--json", "--detailed-exitcode", cwd=tmp_path)
    pending = {c["id"] for c in json.loads(got.out)["changes"] if c["action"] != "noop"}
    assert got.rc == 2
    assert pending == {"HostState/first/directory:/data@b", "HostState/first/command:check@b",
                       "HostState/first/file:/data/after@b",
                       "HostState/second/file:/second@a", "HostState/second/file:/second@b",
                       "HostState/second/file:/second@c"}


def test_replace_delete_and_awkward_names(tmp_path: Path) -> None:
    odd = "/it's a $HOME \"file\" `x`.txt"
    write(tmp_path / "specs", {
        "g.yaml": group("a"),
        "s.yaml": hoststate("s", f"""\
            - type: file
              path: /was-a-dir
              content: now a file
              mode: "0600"
            - type: directory
              path: /was-a-file
            - type: file
              path: /old
              state: absent
            - type: directory
              path: /old-dir
              state: absent
            - type: file
              path: {json.dumps(odd)}
              content: "$(touch /tmp/recon-never-run) '\\"\\n"
            - type: command
              id: unless-check
              run: touch marker
              unless: test -e marker
            """),
    })
    root = tmp_path / "a-root"
    (root / "was-a-dir" / "sub").mkdir(parents=True)
    root.joinpath("was-a-file").write_text("file")
    root.joinpath("old").write_text("old")
    (root / "old-dir" / "deep").mkdir(parents=True)
    got = recon("plan", cwd=tmp_path)
    assert "-/+ replace HostState/s/file:/was-a-dir @ a" in got.out
    assert "-/+ replace HostState/s/directory:/was-a-file @ a" in got.out
    assert "- delete  HostState/s/file:/old @ a" in got.out
    assert "(removed with all it holds)" in got.out
    got = recon("apply", "--auto-approve", cwd=tmp_path)
    assert got.rc == 0, got.text
    assert root.joinpath("was-a-dir").read_text() == "now a file"
    assert stat.S_IMODE(root.joinpath("was-a-dir").stat().st_mode) == 0o600
    assert root.joinpath("was-a-file").is_dir()
    assert not root.joinpath("old").exists() and not root.joinpath("old-dir").exists()
    assert root.joinpath(odd.lstrip("/")).read_text() == "$(touch /tmp/recon-never-run) '\"\n"
    assert not Path("/tmp/recon-never-run").exists()
    assert root.joinpath("marker").exists()
    assert_converged(tmp_path)


def test_content_never_printed_and_sensitive_masked(tmp_path: Path) -> None:
    secret = "s3cr3t-" + os.urandom(8).hex()
    write(tmp_path / "specs", {
        "g.yaml": group("a"),
        "s.yaml": hoststate("s", f"""\
            - type: file
              path: /etc/token
              content: {secret}
              sensitive: true
              mode: "0600"
            """),
    })
    outputs = [recon("plan", "--out", "plan.json", cwd=tmp_path), recon("plan", "--json", cwd=tmp_path),
               recon("apply", "plan.json", cwd=tmp_path)]
    (tmp_path / "a-root" / "etc" / "token").write_text("changed")
    outputs.append(recon("plan", cwd=tmp_path))
    texts = [o.text.encode() for o in outputs] + [(tmp_path / "plan.json").read_bytes()]
    texts += [p.read_bytes() for p in (tmp_path / ".recon").rglob("*") if p.is_file()]  # journal, audit db
    assert re.search(r"content: \(sensitive\) hmac:[0-9a-f]{12} → \(sensitive\) hmac:[0-9a-f]{12}", outputs[-1].out)
    for text in texts:
        assert secret.encode() not in text
        assert str(len(secret)).encode() + b" bytes" not in text


def test_quickstart_as_in_readme(tmp_path: Path) -> None:
    """The README's quickstart plans the example in place, with the root taken from the environment."""
    got = recon("plan", str(QUICKSTART), cwd=tmp_path, env={"RECON_QUICKSTART_ROOT": str(tmp_path / "demo")})
    assert got.rc == 0, got.text
    assert "Plan: 5 to create" in got.out


def test_schema_lists_every_kind(tmp_path: Path) -> None:
    got = recon("schema", cwd=tmp_path)
    assert got.rc == 0
    schema = json.loads(got.out)
    assert sorted(schema["properties"]["kind"]["enum"]) == sorted(KINDS)
    assert "HostStateSpec" in schema["$defs"] and "FileResource" in schema["$defs"]
    assert schema["$defs"]["FileResource"]["properties"]["content"]["description"]


def test_control_characters_from_specs_are_shown_escaped_in_every_text_output(tmp_path: Path) -> None:
    """A name with an ANSI escape or a bidirectional override cannot move the cursor, hide text or reorder
    what a reviewer reads in a plan, an apply's progress or a PR comment (issue 18, case 10)."""
    write(tmp_path / "specs", {"g.yaml": group("a"), "s.yaml": hoststate(
        "app", '- {type: file, path: "/a\\e[2J\\u202eb", content: x}\n')})
    (tmp_path / "a-root").mkdir()
    for args in (("plan",), ("plan", "--markdown"), ("apply", "--auto-approve"), ("audit",)):
        got = recon(*args, cwd=tmp_path)
        assert got.rc == 0, got.text
        assert "\x1b" not in got.text and "\u202e" not in got.text, (args, got.text)
        if args[0] != "audit":
            assert "/a\\x1b[2J\\u202eb" in got.text, (args, got.text)


def test_a_target_that_matches_nothing_is_an_error_with_the_closest_addresses(tmp_path: Path) -> None:
    write(tmp_path / "specs", {"g.yaml": group("a"), "s.yaml": hoststate("app", "- {type: file, path: /etc/app.conf, "
                                                                            "content: x}\n")})
    (tmp_path / "a-root").mkdir()
    typo = recon("plan", "--target", "HostState/app/file:/etc/app.cnf", cwd=tmp_path)
    assert typo.rc == 1 and "--target HostState/app/file:/etc/app.cnf matches no resource" in typo.err, typo.text
    assert "did you mean HostState/app/file:/etc/app.conf or" in typo.err
    unknown = recon("apply", "--auto-approve", "--target", "nothing", cwd=tmp_path)
    assert unknown.rc == 1 and "addresses look like" in unknown.err and not (tmp_path / "a-root" / "etc").exists()
    plan = recon("plan", cwd=tmp_path)
    assert " · 2 specs · 1 resource on 1 target" in plan.out.splitlines()[0], plan.out  # counted in words
    helped = recon("plan", "--help", cwd=tmp_path)
    assert "--target ADDR" in helped.out and "--target <list[str]>" not in helped.out


def test_a_large_source_is_copied_in_chunks_and_re_plans_empty(tmp_path: Path) -> None:
    """Issue 18 case 12 on a local root: a source larger than the inline limit is streamed (never held whole),
    owner-only until it is renamed into place with its mode."""
    import hashlib
    import os

    from providers.hosts.model import INLINE_MAX

    big = os.urandom(INLINE_MAX * 2 + 7)
    write(tmp_path / "specs", {"g.yaml": group("a"), "s.yaml": hoststate(
        "big", "- type: file\n  path: /srv/model.bin\n  source: model.bin\n  mode: '0644'\n")})
    (tmp_path / "specs" / "model.bin").write_bytes(big)
    (tmp_path / "a-root").mkdir()
    got = recon("apply", "--auto-approve", cwd=tmp_path)
    assert got.rc == 0, got.text
    target = tmp_path / "a-root" / "srv" / "model.bin"
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(big).digest()
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.bin"]
    assert_converged(tmp_path)
    (tmp_path / "specs" / "model.bin").write_bytes(big[::-1])
    assert recon("apply", "--auto-approve", cwd=tmp_path).rc == 0
    assert target.read_bytes() == big[::-1]
    assert_converged(tmp_path)


def test_show_diff_compares_two_saved_plans(tmp_path: Path) -> None:
    """Issue 24: deepdiff where a generic structural diff is the right tool: what a newer plan adds, drops and
    changes against an older one (e.g. the reviewed plan against the one at merge)."""
    import json

    write(tmp_path / "specs", {"g.yaml": group("a"), "s.yaml": hoststate(
        "app", "- type: file\n  path: /a\n  content: one\n- type: file\n  path: /b\n  content: two\n")})
    (tmp_path / "a-root").mkdir()
    assert recon("plan", "--out", "old.json", cwd=tmp_path).rc == 0
    (tmp_path / "specs" / "s.yaml").write_text(hoststate(
        "app", "- type: file\n  path: /a\n  content: uno\n- type: file\n  path: /c\n  content: tres\n"))
    assert recon("plan", "--out", "new.json", cwd=tmp_path).rc == 0
    same = recon("show", "old.json", "--diff", "old.json", cwd=tmp_path)
    assert same.rc == 0 and "make the same changes" in same.out
    got = recon("show", "old.json", "--diff", "new.json", "--json", cwd=tmp_path)
    assert got.rc == 2, got.text
    d = json.loads(got.out)
    assert d["added"] == ["HostState/app/file:/c@a"] and d["removed"] == ["HostState/app/file:/b@a"]
    [a] = [v for k, v in d["changed"].items() if k == "HostState/app/file:/a@a"]
    assert {i["path"] for i in a} >= {"fields.content.after", "desired"}
    assert d["specs"] and d["specs"][0]["path"] == "HostState/app"
    text = recon("show", "old.json", "--diff", "new.json", cwd=tmp_path)
    assert "1 added, 1 dropped, 1 changed" in text.out and "fields.content.after" in text.out, text.out


def test_a_text_file_s_change_is_shown_as_a_diff_never_a_secret_s(tmp_path: Path) -> None:
    """Issue 22: changing two lines of a config file showed two hashes; a reviewer reads the lines. Not for a
    sensitive file, nor a binary one (those keep size and digest)."""
    import json

    conf = "".join(f"setting_{i} = {i}\n" for i in range(30))
    write(tmp_path / "specs", {"g.yaml": group("a"), "s.yaml": hoststate("app", (
        "- type: file\n  path: /etc/app.conf\n  source: app.conf\n"
        "- type: file\n  path: /etc/token\n  content: new-secret-value\n  sensitive: true\n"
        "- type: file\n  path: /srv/blob.bin\n  source: blob.bin\n"))})
    (tmp_path / "specs" / "app.conf").write_text(conf)
    (tmp_path / "specs" / "blob.bin").write_bytes(b"\0\1\2" * 100)
    (tmp_path / "a-root").mkdir()
    assert recon("apply", "--auto-approve", cwd=tmp_path).rc == 0
    (tmp_path / "specs" / "app.conf").write_text(conf.replace("setting_3 = 3", "setting_3 = 33")
                                                 .replace("setting_20 = 20\n", "setting_20 = 20\nextra = yes\n"))
    (tmp_path / "a-root" / "etc" / "token").write_text("old-secret-value\n")
    (tmp_path / "specs" / "blob.bin").write_bytes(b"\3\4\5" * 100)
    text = recon("plan", cwd=tmp_path)
    assert text.rc == 0, text.text
    assert "-setting_3 = 3" in text.out and "+setting_3 = 33" in text.out and "+extra = yes" in text.out, text.out
    assert "secret-value" not in text.out
    changes = {c["id"]: c for c in json.loads(recon("plan", "--json", cwd=tmp_path).out)["changes"]}
    fields = {c: {f["path"]: f for f in changes[c]["fields"]} for c in changes}
    diff = fields["HostState/app/file:/etc/app.conf@a"]["diff"]["after"]
    assert diff.startswith("--- /etc/app.conf (live)\n+++ /etc/app.conf (specs)\n@@") and "setting_10" not in diff
    assert "diff" not in fields["HostState/app/file:/etc/token@a"]
    assert "diff" not in fields["HostState/app/file:/srv/blob.bin@a"]
    markdown = recon("plan", "--markdown", cwd=tmp_path).out
    assert "```diff\n--- /etc/app.conf (live)" in markdown and "+setting_3 = 33" in markdown
    assert "secret-value" not in markdown
    assert recon("apply", "--auto-approve", cwd=tmp_path).rc == 0
    assert_converged(tmp_path)
