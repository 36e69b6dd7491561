"""Bundles end to end against real registries (Debian's docker-registry on 127.0.0.1), with the real CLI.

Requests are counted in the registry's own log: blob PUTs for uploads, blob GETs for downloads.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.oras import bundle, ops, scan
from providers.oras.registry import Credentials, RegistryStore
from specs.ref import parse
from tests.conftest import recon
from tests.peers import registry as peers


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Registry]:
    r = peers.start(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


def _project(tmp: Path, ref: str, extra: str = "") -> Path:
    model = tmp / "model"
    (model / "tokenizer").mkdir(parents=True)
    (model / "weights.bin").write_bytes(os.urandom(300_000))
    (model / "tokenizer" / "vocab.json").write_text('{"a": 1}\n')
    (model / "README.md").write_text("# churn model\n")
    (model / "serve.sh").write_text("#!/bin/sh\nexec python -m serve\n")
    (model / "serve.sh").chmod(0o755)
    (model / "scratch.tmp").write_text("not published\n")
    (tmp / "specs").mkdir()
    (tmp / "specs" / "bundle.yaml").write_text(
        "apiVersion: recon/v1\nkind: Bundle\nmetadata: {name: churn}\nspec:\n"
        f"  source: ../model\n  ref: {ref}\n  exclude: ['*.tmp']\n"
        "  annotations: {org.opencontainers.image.version: '1.0'}\n" + extra
    )
    return model


def _env(tmp: Path, **more: str) -> dict[str, str]:
    return {"RECON_CACHE_DIR": str(tmp / "cache"), **more}


def _blob_puts(reg: peers.Registry, mark: int) -> list[str]:
    return reg.since(mark, "PUT", r"/blobs/uploads/")


def test_push_replan_change_one_file_pull_verify_diff(tmp_path: Path, reg: peers.Registry) -> None:
    ref = f"{reg.host}/models/churn:v1"
    model = _project(tmp_path, ref)
    env = _env(tmp_path)

    planned = recon("plan", cwd=tmp_path, env=env)
    assert planned.rc == 0, planned.text
    assert "+ create  Bundle/churn" in planned.out and "4 files" in planned.out
    assert "scratch.tmp" not in planned.out

    mark = reg.mark()
    applied = recon("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert applied.rc == 0, applied.text
    assert len(_blob_puts(reg, mark)) == 5  # four files and the empty config
    tag_puts = reg.since(mark, "PUT", r"/manifests/")
    assert tag_puts[-1].endswith("/manifests/v1"), tag_puts  # the tag moves last, after the manifest by digest
    assert "/manifests/sha256:" in tag_puts[0]

    mark = reg.mark()
    again = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert again.rc == 0 and "No changes" in again.out, again.text
    assert reg.since(mark, "GET", r"/blobs/") == [] and reg.since(mark, "GET", r"/manifests/") == []  # HEAD only

    # one file changes: the plan names exactly it, the push uploads exactly its blob
    (model / "tokenizer" / "vocab.json").write_text('{"a": 2}\n')
    changed = recon("plan", "--json", cwd=tmp_path, env=env)
    data = json.loads(changed.out)
    [change] = [c for c in data["changes"] if c["action"] != "noop"]
    assert [f["path"] for f in change["fields"]] == ["file tokenizer/vocab.json", "diff"]
    mark = reg.mark()
    text = recon("plan", cwd=tmp_path, env=env).out
    assert "tokenizer/vocab.json" in text and "weights.bin" not in text and "1 changed" in text
    # issue 22: a small text file's lines, its old text fetched once from the registry (checked by its digest)
    assert '-{"a": 1}' in text and '+{"a": 2}' in text, text
    assert len(reg.since(mark, "GET", r"/blobs/")) == 1
    mark = reg.mark()
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    assert len(_blob_puts(reg, mark)) == 1
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0

    # pull twice: the second comes from the cache, no blob is downloaded
    mark = reg.mark()
    first = recon("bundle", "pull", ref, "out1", "--json", cwd=tmp_path, env=env)
    assert first.rc == 0, first.text
    assert json.loads(first.out)["downloaded_blobs"] == 4
    assert len(reg.since(mark, "GET", r"/blobs/")) == 4
    mark = reg.mark()
    second = recon("bundle", "pull", ref, "out2", "--json", cwd=tmp_path, env=env)
    assert json.loads(second.out)["downloaded_blobs"] == 0
    assert reg.since(mark, "GET", r"/blobs/") == []
    for rel in ("weights.bin", "tokenizer/vocab.json", "README.md", "serve.sh"):
        assert (tmp_path / "out2" / rel).read_bytes() == (model / rel).read_bytes()
    assert os.access(tmp_path / "out2" / "serve.sh", os.X_OK)
    assert not (tmp_path / "out2" / "scratch.tmp").exists()
    assert os.path.samefile(tmp_path / "out1" / "weights.bin", tmp_path / "out2" / "weights.bin")  # hard links

    assert recon("bundle", "verify", "out2", cwd=tmp_path, env=env).rc == 0
    assert recon("bundle", "verify", ref, cwd=tmp_path, env=env).rc == 0

    # corrupt a file in place (same size) and delete another: verify names both, exit 2
    victim = tmp_path / "out2" / "weights.bin"
    victim.chmod(0o644)
    raw = bytearray(victim.read_bytes())
    raw[1000] ^= 0xFF
    victim.write_bytes(bytes(raw))
    (tmp_path / "out2" / "README.md").unlink()
    bad = recon("bundle", "verify", "out2", "--json", cwd=tmp_path, env=env)
    assert bad.rc == 2, bad.text
    problems = {p["path"]: p["problem"] for p in json.loads(bad.out)["problems"]}
    assert problems == {"weights.bin": "corrupted", "README.md": "missing"}
    # the corruption went through the hard link into the cache: the next pull notices and repairs it
    mark = reg.mark()
    repaired = recon("bundle", "pull", ref, "out3", "--json", cwd=tmp_path, env=env)
    assert json.loads(repaired.out)["downloaded_blobs"] == 1
    assert len(reg.since(mark, "GET", r"/blobs/")) == 1
    assert recon("bundle", "verify", "out3", cwd=tmp_path, env=env).rc == 0

    # a second tag, and the diff between the two from manifests alone
    (model / "weights.bin").write_bytes(os.urandom(1000))
    (model / "NOTES.md").write_text("v2\n")
    spec = tmp_path / "specs" / "bundle.yaml"
    spec.write_text(spec.read_text().replace(":v1", ":v2"))
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    mark = reg.mark()
    diff = recon("bundle", "diff", ref, ref.replace(":v1", ":v2"), "--json", cwd=tmp_path, env=env)
    assert diff.rc == 0, diff.text
    got = json.loads(diff.out)
    assert [c["path"] for c in got["changed"]] == ["weights.bin"]
    assert [c["path"] for c in got["added"]] == ["NOTES.md"] and got["removed"] == [] and got["unchanged"] == 3
    assert reg.since(mark, "GET", r"/blobs/") == []
    assert recon("bundle", "diff", ref, ref, "--exit-code", cwd=tmp_path, env=env).rc == 0
    assert recon("bundle", "diff", ref, "model", "--exit-code", cwd=tmp_path, env=env).rc == 2
    listed = json.loads(recon("bundle", "ls", ref.replace(":v1", ":v2"), "--json", cwd=tmp_path, env=env).out)
    assert {f["path"]: f["mode"] for f in listed["files"]}["serve.sh"] == "0755"


def test_drift_on_the_registry_shows_in_the_plan(tmp_path: Path, reg: peers.Registry) -> None:
    """Someone pushes another manifest to the tag: the plan shows the files that differ."""
    ref = f"{reg.host}/models/drift:v1"
    model = _project(tmp_path, ref)
    env = _env(tmp_path)
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    store = RegistryStore(parse(ref))
    entries = scan.entries(model, exclude=["*.tmp"])
    other = [e for e in entries if e.path != "README.md"]
    art = bundle.build(other, {})
    ops.push(store, model, other, art, {e.digest for e in other})
    plan = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert plan.rc == 2, plan.text
    assert "file README.md: (none) →" in plan.out and "annotation org.opencontainers.image.version" in plan.out
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0


def test_a_failed_push_leaves_the_tag_alone_and_a_rerun_resumes(tmp_path: Path, reg: peers.Registry) -> None:
    ref = parse(f"{reg.host}/models/resume:v1")
    model = _project(tmp_path, str(ref))
    store = RegistryStore(ref)
    entries = scan.entries(model, exclude=["*.tmp"])
    first = bundle.build(entries, {})
    ops.push(store, model, entries, first, set())
    # a file changes after it was hashed: the registry refuses its blob, the tag stays where it was
    (model / "tokenizer" / "vocab.json").write_text('{"changed": "meanwhile"}\n')
    (model / "weights.bin").write_bytes(os.urandom(2000))
    stale = [e if e.path != "tokenizer/vocab.json" else bundle.Entry(e.path, "sha256:" + "0" * 64, e.size, e.mode)
             for e in scan.entries(model, exclude=["*.tmp"])]
    with pytest.raises(Exception, match="answered 400"):
        ops.push(store, model, stale, bundle.build(stale, {}), set())
    assert store.resolve() == first.digest
    # the new weights blob went up before the failure; the re-run skips it (HEAD) and uploads only the rest
    mark = reg.mark()
    fresh = scan.entries(model, exclude=["*.tmp"])
    stats = ops.push(store, model, fresh, bundle.build(fresh, {}), set())
    assert len(stats.uploaded) == 1 and len(_blob_puts(reg, mark)) == 1
    assert store.resolve() == bundle.build(fresh, {}).digest


def _raw_push(store: RegistryStore, files: dict[str, bytes]) -> None:
    """A manifest made by hand, with whatever paths the test wants in it."""
    layers = []
    for path, data in files.items():
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        store.put_blob(digest, len(data), data)
        layers.append({"mediaType": "application/octet-stream", "digest": digest, "size": len(data),
                       "annotations": {bundle.TITLE: path}})
    store.put_blob(bundle.build([], {}).config_digest, 2, b"{}")
    body = json.dumps({"schemaVersion": 2, "mediaType": bundle.MANIFEST_TYPE,
                       "config": {"mediaType": bundle.CONFIG_TYPE, "digest": bundle.build([], {}).config_digest,
                                  "size": 2}, "layers": layers}).encode()
    store.put_manifest(store.ref.tag, body, bundle.MANIFEST_TYPE)


@pytest.mark.parametrize("path", ["../evil.txt", "/tmp/recon-evil.txt", "a/../../evil.txt"])
def test_paths_that_escape_are_refused(tmp_path: Path, reg: peers.Registry, path: str) -> None:
    ref = f"{reg.host}/attack/escape:{abs(hash(path)) % 10_000}"
    _raw_push(RegistryStore(parse(ref)), {"ok.txt": b"fine\n", path: b"pwned\n"})
    got = recon("bundle", "pull", ref, "dest", cwd=tmp_path, env=_env(tmp_path))
    assert got.rc == 1, got.text
    assert "refused" in got.err and "Traceback" not in got.err
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/recon-evil.txt").exists()
    assert not (tmp_path / "dest" / "ok.txt").exists()  # checked before anything is written


def _pull_through_a_symlink(tmp_path: Path, reg: peers.Registry, ref: str, files: dict[str, bytes]) -> Path:
    """Push `files`, then pull them into dest/ whose sub/ is a link to a directory outside: refused. The outside."""
    _raw_push(RegistryStore(parse(ref)), files)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "sub").symlink_to(outside)
    got = recon("bundle", "pull", ref, "dest", cwd=tmp_path, env=_env(tmp_path))
    assert got.rc == 1 and "is a symlink" in got.err, got.text
    assert list(outside.iterdir()) == []
    return outside


def test_a_symlink_in_the_target_directory_is_not_followed_out(tmp_path: Path, reg: peers.Registry) -> None:
    _pull_through_a_symlink(tmp_path, reg, f"{reg.host}/attack/symlink:v1", {"sub/file.txt": b"data\n"})


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_auth_good_password_and_wrong_password(tmp_path: Path, auth: str) -> None:
    reg = peers.start(tmp_path / "reg", auth, {"alice": "s3cret-Pa55"})
    try:
        ref = f"{reg.host}/team/model:v1"
        _project(tmp_path, ref, "  credentials: {username: alice, password: {env: REG_PASSWORD}}\n")
        good = _env(tmp_path, REG_PASSWORD="s3cret-Pa55")
        applied = recon("apply", "--auto-approve", cwd=tmp_path, env=good)
        assert applied.rc == 0, applied.text
        assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=good).rc == 0
        plan_json = recon("plan", "--json", cwd=tmp_path, env=good).out
        journal = "".join(p.read_text() for p in (tmp_path / ".recon").rglob("*.jsonl"))
        for text in (applied.text, plan_json, journal):
            assert "s3cret-Pa55" not in text

        started = time.monotonic()
        wrong = recon("plan", cwd=tmp_path, env=_env(tmp_path, REG_PASSWORD="nope"))
        took = time.monotonic() - started
        assert wrong.rc == 1 and "Traceback" not in wrong.err
        assert "refused the credentials of user 'alice' (password from env REG_PASSWORD)" in wrong.err, wrong.err
        assert "nope" not in wrong.text
        assert took < 5, f"a wrong password took {took:.1f}s: it must fail at once, not after retries"

        # the bundle commands take credentials from the environment or stdin
        pulled = recon("bundle", "pull", ref, "out", cwd=tmp_path,
                       env=_env(tmp_path, RECON_REGISTRY_USERNAME="alice", RECON_REGISTRY_PASSWORD="s3cret-Pa55"))
        assert pulled.rc == 0, pulled.text
        anonymous = recon("bundle", "ls", ref, cwd=tmp_path, env=_env(tmp_path))
        assert anonymous.rc == 1 and "needs credentials" in anonymous.err, anonymous.text
    finally:
        reg.stop()


def test_oci_layout_needs_no_registry(tmp_path: Path) -> None:
    _project(tmp_path, "oci-layout:../layout:v1")
    env = _env(tmp_path)
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    assert json.loads((tmp_path / "layout" / "index.json").read_text())["manifests"][0]["annotations"] == {
        "org.opencontainers.image.ref.name": "v1"}
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0
    pulled = recon("bundle", "pull", "oci-layout:layout:v1", "out", cwd=tmp_path, env=env)
    assert pulled.rc == 0, pulled.text
    assert recon("bundle", "verify", "out", cwd=tmp_path, env=env).rc == 0


def test_a_bad_reference_names_file_line_and_field(tmp_path: Path) -> None:
    _project(tmp_path, "models/churn:v1")
    got = recon("validate", cwd=tmp_path, env=_env(tmp_path))
    assert got.rc == 1 and "Traceback" not in got.err
    assert "bundle.yaml:6" in got.err and "spec.ref" in got.err and "names no registry host" in got.err, got.err


def test_credentials_reach_only_their_registry(tmp_path: Path, reg: peers.Registry) -> None:
    """An open registry never receives the Authorization header (nothing asked for it)."""
    store = RegistryStore(parse(f"{reg.host}/models/plain:v1"), Credentials("bob", "pw", "test"))
    assert store.resolve() is None
    assert store._authorization == ""


def test_the_example_against_the_registry(tmp_path: Path, reg: peers.Registry) -> None:
    import shutil

    from tests.conftest import ROOT

    shutil.copytree(ROOT / "examples" / "bundle", tmp_path / "bundle")
    env = _env(tmp_path, RECON_BUNDLE_REF=f"{reg.host}/examples/churn:v1")
    applied = recon("apply", "bundle", "--auto-approve", cwd=tmp_path, env=env)
    assert applied.rc == 0, applied.text
    assert recon("plan", "bundle", "--detailed-exitcode", cwd=tmp_path, env=env).rc == 0
    listed = json.loads(recon("bundle", "ls", f"{reg.host}/examples/churn:v1", "--json", cwd=tmp_path, env=env).out)
    assert sorted(f["path"] for f in listed["files"]) == ["README.md", "params.json", "tokenizer/vocab.txt",
                                                          "weights.bin"]


def test_a_bundle_of_many_files_plans_briefly(tmp_path: Path) -> None:
    model = _project(tmp_path, "oci-layout:../layout:v1")
    for i in range(60):
        (model / f"shard-{i:03}.bin").write_bytes(b"%d" % i)
    got = recon("plan", cwd=tmp_path, env=_env(tmp_path))
    assert got.rc == 0 and "64 files" in got.out
    assert "… and 44 more (recon plan --verbose, or --json, lists every one)" in got.out
    assert got.out.count("file shard-") == 18  # README.md and serve.sh sort first
    assert recon("plan", "--verbose", cwd=tmp_path, env=_env(tmp_path)).out.count("file shard-") == 60


def test_progress_bars_on_a_terminal(tmp_path: Path) -> None:
    """Transfers over the threshold draw a progress bar on a terminal (and none when piped)."""
    from tests.terminal import on_terminal

    model = _project(tmp_path, "oci-layout:../layout:v1")
    (model / "big.bin").write_bytes(os.urandom(40 << 20))
    rc, text = on_terminal(["apply", "--auto-approve"], tmp_path, env={**_env(tmp_path), "TERM": "xterm"})
    assert rc == 0, text
    assert "push oci-layout:" in text and "MB" in text, text[-2000:]
    piped = recon("bundle", "pull", "oci-layout:layout:v1", "out", cwd=tmp_path, env=_env(tmp_path))
    assert piped.rc == 0 and "━" not in piped.text


def test_two_pulls_at_once_download_each_blob_once(tmp_path: Path, reg: peers.Registry) -> None:
    import subprocess

    from tests.conftest import RECON

    ref = f"{reg.host}/models/together:v1"
    model = _project(tmp_path, ref)
    for i in range(20):
        (model / f"part-{i}.bin").write_bytes(os.urandom(200_000))
    env = {**os.environ, **_env(tmp_path)}
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=_env(tmp_path)).rc == 0
    mark = reg.mark()
    procs = [subprocess.Popen([*RECON, "bundle", "pull", ref, f"out{i}", "--json"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    downloaded = [json.loads(out)["downloaded_blobs"] for out, _ in results]
    assert sum(downloaded) == 24, downloaded  # each of the 24 blobs once, by whichever process got it first
    assert len(reg.since(mark, "GET", r"/blobs/")) == 24
    for i in range(2):
        assert recon("bundle", "verify", f"out{i}", cwd=tmp_path, env=_env(tmp_path)).rc == 0
    assert not list((tmp_path / "cache" / "blobs" / "sha256").glob(".part-*"))  # nothing half-written left


def test_a_corrupted_blob_in_the_registry_is_refused_on_pull(tmp_path: Path, reg: peers.Registry) -> None:
    ref = f"{reg.host}/models/rotten:v1"
    model = _project(tmp_path, ref)
    (model / "weights.bin").write_bytes(b"unique weights for this test " + os.urandom(5000))
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=_env(tmp_path)).rc == 0
    digest = scan.sha256_file(model / "weights.bin").partition(":")[2]
    [stored] = list((reg.root / "data").rglob(f"blobs/sha256/{digest[:2]}/{digest}/data"))
    stored.write_bytes(b"X" + stored.read_bytes()[1:])  # same size, other content: the registry does not notice
    pulled = recon("bundle", "pull", ref, "out", cwd=tmp_path, env=_env(tmp_path))
    assert pulled.rc == 1 and f"blob sha256:{digest} arrived corrupted" in pulled.err, pulled.text
    assert not (tmp_path / "cache" / "blobs" / "sha256" / digest).exists()
    checked = recon("bundle", "verify", ref, "--json", cwd=tmp_path, env=_env(tmp_path))
    assert checked.rc == 2
    assert json.loads(checked.out)["problems"] == [
        {"path": "weights.bin", "problem": "corrupted", "detail": f"blob sha256:{digest[:12]} has other content "
                                                                 f"({(model / 'weights.bin').stat().st_size} bytes)"}]


def test_the_commit_is_recorded_in_the_manifest_and_a_new_commit_alone_pushes_nothing(
        tmp_path: Path, reg: peers.Registry) -> None:
    import subprocess

    ref = f"{reg.host}/models/revision:v1"
    _project(tmp_path, ref)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                              cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / ".gitignore").write_text("cache/\n.recon/\n")
    git("add", ".")
    git("commit", "-qm", "model v1")
    sha = git("rev-parse", "HEAD")
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=_env(tmp_path)).rc == 0
    store = RegistryStore(parse(ref))
    notes = json.loads(store.manifest(ref.rsplit(":", 1)[1]))["annotations"]
    assert notes[bundle.REVISION] == sha
    (tmp_path / "NOTES.txt").write_text("a commit that does not touch the model\n")
    git("add", ".")
    git("commit", "-qm", "docs")
    again = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=_env(tmp_path))
    assert again.rc == 0 and "No changes" in again.out, again.text
    assert recon("plan", "--verbose", cwd=tmp_path, env=_env(tmp_path)).out.count(f"pushed from commit {sha[:10]}") == 1


def test_registries_behind_a_proxy_are_reached_through_it_as_the_oras_cli_reaches_them(tmp_path: Path) -> None:
    """recon's registry client connected directly whatever HTTP(S)_PROXY said, where the oras CLI goes through
    the proxy: on a runner that reaches registries only through one, every push failed. In a network namespace
    of this test: a plain-HTTP registry on 10.233.0.2, an HTTPS one on 10.233.0.3 (its certificate trusted by
    SSL_CERT_FILE) and Debian's tinyproxy on 127.0.0.1; recon runs there too. Pushes and pulls go through the
    proxy (absolute-form requests, a CONNECT tunnel), NO_PROXY sends them direct, a dead proxy is named."""
    import subprocess
    import uuid

    from tests.peers import http_proxy

    netns = f"recon-px-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    inside = ["ip", "netns", "exec", netns]
    started: list[peers.Registry | http_proxy.Proxy] = []
    try:
        for cmd in (["link", "set", "lo", "up"], ["addr", "add", "10.233.0.2/32", "dev", "lo"],
                    ["addr", "add", "10.233.0.3/32", "dev", "lo"]):
            subprocess.run(["ip", "-n", netns, *cmd], check=True)
        plain = peers.start(tmp_path / "plain", address="10.233.0.2", netns=netns)
        secure = peers.start(tmp_path / "secure", address="10.233.0.3", netns=netns, tls=True)
        proxy = http_proxy.start(tmp_path / "proxy", netns=netns, connect_ports=(5000,))
        started += [plain, secure, proxy]
        assert secure.cert is not None
        env = _env(tmp_path, HTTP_PROXY=proxy.url, HTTPS_PROXY=proxy.url, SSL_CERT_FILE=str(secure.cert))
        for reg, extra in ((plain, "  plainHttp: true\n"), (secure, "")):
            work = tmp_path / reg.address
            work.mkdir()
            _project(work, f"{reg.host}/models/churn:1", extra)
            pushed = recon("apply", "--auto-approve", cwd=work, env=env, prefix=inside)
            assert pushed.rc == 0, pushed.text
            assert recon("plan", "--detailed-exitcode", cwd=work, env=env, prefix=inside).rc == 0
            pulled = recon("bundle", "pull", f"{reg.host}/models/churn:1", str(work / "out"),
                           *(["--plain-http"] if extra else []), cwd=work, env=env, prefix=inside)
            assert pulled.rc == 0 and (work / "out" / "weights.bin").read_bytes() == \
                (work / "model" / "weights.bin").read_bytes(), pulled.text
        took = proxy.requests()
        assert any(r.startswith("PUT http://10.233.0.2:5000/v2/models/churn/blobs/uploads/") for r in took), took
        assert any(r.startswith("GET http://10.233.0.2:5000/v2/models/churn/blobs/sha256:") for r in took), took
        assert "CONNECT 10.233.0.3:5000" in took, took
        assert all("10.233.0.2" in r or r == "CONNECT 10.233.0.3:5000" for r in took), took

        direct = {**env, "NO_PROXY": "10.233.0.0/24"}
        for reg in (plain, secure):
            assert recon("plan", "--detailed-exitcode", cwd=tmp_path / reg.address, env=direct, prefix=inside).rc == 0
        assert proxy.requests() == took  # not one more request through the proxy

        dead = {**env, "HTTP_PROXY": "http://127.0.0.1:9"}
        refused = recon("plan", cwd=tmp_path / plain.address, env=dead, prefix=inside)
        assert refused.rc == 1 and "registry 10.233.0.2:5000 cannot be reached through the proxy http://127.0.0.1:9: " \
            "connection refused" in refused.err and "Traceback" not in refused.err, refused.text
    finally:
        for thing in started:
            thing.stop()
        subprocess.run(["ip", "netns", "del", netns], check=False)


def test_a_registry_on_an_ipv6_address(tmp_path: Path) -> None:
    """A reference to `[::1]:PORT/…` was accepted by validation, then every plan stopped with an internal error
    (the client split the address at its first colon)."""
    v6 = peers.start(tmp_path / "v6", address="::1")
    try:
        ref = f"{v6.host}/models/churn:1"
        _project(tmp_path, f'"{ref}"')  # (quoted: a YAML value starting with [ is a list)
        pushed = recon("apply", "--auto-approve", cwd=tmp_path, env=_env(tmp_path))
        assert pushed.rc == 0 and "bug in recon" not in pushed.text, pushed.text
        assert recon("plan", "--detailed-exitcode", cwd=tmp_path, env=_env(tmp_path)).rc == 0
        pulled = recon("bundle", "pull", ref, str(tmp_path / "out"), cwd=tmp_path, env=_env(tmp_path))
        assert pulled.rc == 0 and (tmp_path / "out" / "README.md").read_text() == "# churn model\n", pulled.text
        assert v6.requests("PUT", r"/blobs/uploads/")
    finally:
        v6.stop()


def test_an_unreachable_registry_is_one_clear_error(tmp_path: Path) -> None:
    port = peers.free_port()  # nothing listens there
    _project(tmp_path, f"127.0.0.1:{port}/models/churn:v1")
    got = recon("plan", cwd=tmp_path, env=_env(tmp_path))
    assert got.rc == 1 and "Traceback" not in got.err
    assert f"registry 127.0.0.1:{port} cannot be reached: connection refused" in got.err, got.err


def test_a_refused_path_leaves_the_target_directory_as_it_was(tmp_path: Path, reg: peers.Registry) -> None:
    """Issue 18 case 14: a pull refused for one unsafe path had already written the files before it."""
    _pull_through_a_symlink(tmp_path, reg, f"{reg.host}/attack/partial:v1",
                            {"a.txt": b"first\n", "sub/file.txt": b"data\n"})
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["sub"]  # a.txt was not written either


def test_a_blob_written_through_a_pulled_file_is_not_handed_out_again(tmp_path: Path) -> None:
    """Issue 18 case 15: root writes into read-only files; the write went through the hard link into the cache,
    and later pulls handed the corrupted file out, exit 0. Here the mode is even put back to read-only."""
    model = _project(tmp_path, "oci-layout:../layout:v1")
    env = _env(tmp_path)
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    assert recon("bundle", "pull", "oci-layout:layout:v1", "out1", cwd=tmp_path, env=env).rc == 0
    victim = tmp_path / "out1" / "weights.bin"
    mode = victim.stat().st_mode & 0o777
    victim.chmod(0o644)
    raw = bytearray(victim.read_bytes())
    raw[10] ^= 0xFF
    with open(victim, "r+b") as fh:  # in place, same size, as root would without a chmod
        fh.write(bytes(raw))
    victim.chmod(mode)
    again = recon("bundle", "pull", "oci-layout:layout:v1", "out2", cwd=tmp_path, env=env)
    assert again.rc == 0, again.text
    assert (tmp_path / "out2" / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()
    assert recon("bundle", "verify", "out2", cwd=tmp_path, env=env).rc == 0


def test_temporaries_of_killed_pushes_and_pulls_are_removed_by_the_next_one(tmp_path: Path) -> None:
    """Issue 18 case 14: killed pushes to an oci-layout left .tmp-* blobs that no later run removed. A writer
    holds its temporary locked; what no one holds is a leftover."""
    from providers.oras.scan import temporary

    _project(tmp_path, "oci-layout:../layout:v1")
    env = _env(tmp_path)
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    cache = tmp_path / "cache" / "blobs" / "sha256"
    assert recon("bundle", "pull", "oci-layout:layout:v1", "out", cwd=tmp_path, env=env).rc == 0
    left = [blobs / ".tmp-killed", tmp_path / "layout" / ".tmp-index", cache / ".part-killed"]
    for path in left:
        path.write_bytes(b"half a blob")
        os.utime(path, (time.time() - 3600, time.time() - 3600))  # left an hour ago
    fd, busy = temporary(blobs, ".tmp-")  # a push in progress in another process
    try:
        (tmp_path / "model" / "README.md").write_text("# churn model, v2\n")
        assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
        (tmp_path / "out").rename(tmp_path / "old")
        for f in cache.iterdir():
            if not f.name.startswith("."):
                f.chmod(0o644)
                f.unlink()  # so the pull fetches (and sweeps)
        assert recon("bundle", "pull", "oci-layout:layout:v1", "out", cwd=tmp_path, env=env).rc == 0
        assert [p for p in left if p.exists()] == []
        assert Path(busy).exists()
    finally:
        os.close(fd)
