"""Issue 24: recon's bundles are ordinary ORAS artifacts, tested both ways with oras-py (the ORAS project's
Python SDK) against the real registry, and through an OCI image layout directory."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import recon
from tests.peers import registry as peers


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Registry]:
    r = peers.start(tmp_path_factory.mktemp("reg"))
    yield r
    r.stop()


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below root (recon's own record left out)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".recon-bundle.json"}


def _model(tmp: Path) -> Path:
    model = tmp / "model"
    (model / "tokenizer").mkdir(parents=True)
    (model / "weights.bin").write_bytes(os.urandom(200_000))
    (model / "tokenizer" / "vocab.json").write_text('{"a": 1}\n')
    (model / "serve.sh").write_text("#!/bin/sh\nexec python -m serve\n")
    (model / "serve.sh").chmod(0o755)
    return model


def _env(tmp: Path) -> dict[str, str]:
    return {"RECON_CACHE_DIR": str(tmp / "cache")}


def _client(reg: peers.Registry):  # type: ignore[no-untyped-def]
    import oras.client

    return oras.client.OrasClient(hostname=reg.host, insecure=True)


def _push_spec(tmp: Path, ref: str) -> None:
    (tmp / "specs").mkdir(exist_ok=True)
    (tmp / "specs" / "bundle.yaml").write_text("apiVersion: recon/v1\nkind: Bundle\nmetadata: {name: churn}\n"
                                               f"spec:\n  source: ../model\n  ref: {ref}\n")
    got = recon("apply", "--auto-approve", cwd=tmp, env=_env(tmp))
    assert got.rc == 0, got.text


def test_a_bundle_recon_pushed_is_pulled_by_oras_with_the_same_tree_and_digests(tmp_path: Path,
                                                                                 reg: peers.Registry) -> None:
    model = _model(tmp_path)
    ref = f"{reg.host}/interop/recon-pushed:v1"
    _push_spec(tmp_path, ref)
    pulled = _client(reg).pull(target=ref, outdir=str(tmp_path / "by-oras"))
    assert len(pulled) == 3
    assert _tree(tmp_path / "by-oras") == _tree(model)
    manifest = _client(reg).get_manifest(ref)
    assert manifest["artifactType"] == "application/vnd.recon.bundle.v1"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    for layer in manifest["layers"]:
        assert layer["mediaType"].startswith("application/vnd.cncf.model.")  # CNCF ModelPack's file media types
        assert layer["annotations"]["org.opencontainers.image.title"] == layer["annotations"][
            "org.cncf.model.filepath"]
    # the execute bit travels in ModelPack's file metadata; oras-py (as the oras CLI) writes files without it
    modes = {layer["annotations"]["org.cncf.model.filepath"]:
             json.loads(layer["annotations"]["org.cncf.model.file.metadata+json"])["mode"]
             for layer in manifest["layers"]}
    assert modes["serve.sh"] == 0o755 and modes["weights.bin"] == 0o644


def test_files_oras_pushed_are_listed_pulled_and_verified_by_recon(tmp_path: Path, reg: peers.Registry) -> None:
    model = _model(tmp_path)
    ref = f"{reg.host}/interop/oras-files:v1"
    cwd = Path.cwd()
    os.chdir(model)
    try:
        _client(reg).push(files=["weights.bin", "serve.sh"], target=ref)
    finally:
        os.chdir(cwd)
    listed = recon("bundle", "ls", ref, cwd=tmp_path, env=_env(tmp_path))
    assert listed.rc == 0 and "weights.bin" in listed.out and "serve.sh" in listed.out, listed.text
    got = recon("bundle", "pull", ref, "out", cwd=tmp_path, env=_env(tmp_path))
    assert got.rc == 0, got.text
    assert _tree(tmp_path / "out") == {k: v for k, v in _tree(model).items() if k in ("weights.bin", "serve.sh")}
    assert recon("bundle", "verify", "out", cwd=tmp_path, env=_env(tmp_path)).rc == 0


def test_a_directory_oras_pushed_as_a_tarball_is_refused_with_the_layout_recon_expects(
        tmp_path: Path, reg: peers.Registry) -> None:
    model = _model(tmp_path)
    ref = f"{reg.host}/interop/oras-dir:v1"
    cwd = Path.cwd()
    os.chdir(model)
    try:
        _client(reg).push(files=["tokenizer"], target=ref)  # oras packs a directory into one tar.gz layer
    finally:
        os.chdir(cwd)
    for args in (("bundle", "ls", ref), ("bundle", "pull", ref, "out")):
        got = recon(*args, cwd=tmp_path, env=_env(tmp_path))
        assert got.rc == 1, got.text
        assert "is a directory packed by oras push" in got.err and "one layer per file" in got.err, got.err
        assert "Traceback" not in got.text
    assert not (tmp_path / "out" / "tokenizer").exists()


def test_an_oci_layout_directory_works_both_ways_with_oras(tmp_path: Path, reg: peers.Registry) -> None:
    """recon writes a layout that oras-py validates and pushes on to a registry; a layout oras-py made from a
    registry artifact is read by recon."""
    from oras.layout import NewLayout, NewLayoutFromRegistry
    from oras.provider import Registry

    model = _model(tmp_path)
    _push_spec(tmp_path, "oci-layout:../layout:v1")
    provider = Registry(hostname=reg.host, insecure=True)
    ref = f"{reg.host}/interop/from-layout:v1"
    NewLayout(str(tmp_path / "layout")).push_to_registry(provider, ref, tag="v1")
    _client(reg).pull(target=ref, outdir=str(tmp_path / "by-oras"))
    assert _tree(tmp_path / "by-oras") == _tree(model)

    NewLayoutFromRegistry(str(tmp_path / "oras-layout"), provider, ref, tag="v1")
    got = recon("bundle", "pull", "oci-layout:oras-layout:v1", "out", cwd=tmp_path, env=_env(tmp_path))
    assert got.rc == 0, got.text
    assert _tree(tmp_path / "out") == _tree(model)
    assert recon("bundle", "verify", "out", cwd=tmp_path, env=_env(tmp_path)).rc == 0
