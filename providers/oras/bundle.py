"""What a bundle is: files of a directory, and the OCI manifest that carries them, one layer per file.

Layout of an artifact (docs/design.md, "Bundles"):
- an OCI 1.1 artifact: artifactType `application/vnd.recon.bundle.v1` unless the spec says otherwise,
  and the empty config (`application/vnd.oci.empty.v1+json`, `{}`), so that a push after one file
  changed uploads exactly that file's blob and nothing else;
- one layer per file, raw (not tarred), its media type one of CNCF ModelPack's by the kind of file
  (weight, weight config, doc, code, dataset), with `org.opencontainers.image.title` (what
  `oras pull` uses) and `org.cncf.model.filepath` holding the relative path, and
  `org.cncf.model.file.metadata+json` the mode and size;
- manifest annotation `dev.recon.bundle.tree`: a digest over every (path, mode, digest), so two
  bundles compare from their manifests alone.
Modes are normalised as git does (0644, or 0755 when any execute bit is set), so the same
checkout gives the same manifest on any machine, whatever its umask.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from specs.errors import ReconError

ARTIFACT_TYPE = "application/vnd.recon.bundle.v1"
CONFIG_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"
FILEPATH = "org.cncf.model.filepath"
METADATA = "org.cncf.model.file.metadata+json"
TREE = "dev.recon.bundle.tree"
UNPACK = "io.deis.oras.content.unpack"  # ORAS: this layer is a directory's tar.gz, to unpack on pull
PACKED_DIR = "application/vnd.oci.image.layer.v1.tar+gzip"  # what oras gives a directory it packed
REVISION = "org.opencontainers.image.revision"  # the git commit a push came from (not part of the comparison)
MARKER = ".recon-bundle.json"  # written by pull beside the files; never part of a bundle

_KINDS = (
    ("weight", (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".pb", ".h5", ".keras",
                ".pkl", ".pickle", ".joblib", ".npz", ".npy", ".tflite", ".mlmodel", ".model", ".params")),
    ("weight.config", (".json", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".txt.config", ".vocab", ".spm",
                       ".tiktoken")),
    ("doc", (".md", ".rst", ".txt", ".pdf", ".html", "license", "notice", "readme")),
    ("code", (".py", ".sh", ".ipynb", ".r", ".jl", ".js", ".ts", ".go", ".rs", ".java", ".proto", ".sql")),
    ("dataset", (".csv", ".tsv", ".parquet", ".arrow", ".jsonl", ".feather", ".avro", ".tfrecord")),
)


class ManifestError(ReconError):
    """A manifest recon cannot use: not JSON, not an image manifest, or a path that would escape."""


@dataclass(frozen=True)
class Entry:
    path: str  # relative, posix
    digest: str
    size: int
    mode: int  # 0o644 or 0o755

    def describe(self) -> str:
        return f"{self.digest[7:19]} {human(self.size)}" + (" 0755" if self.mode == 0o755 else "")


def normal_mode(st_mode: int) -> int:
    return 0o755 if st_mode & 0o111 else 0o644


def media_type(path: str) -> str:
    name = path.lower().rsplit("/", 1)[-1]
    for kind, endings in _KINDS:
        if any(name.endswith(e) or name == e for e in endings):
            return f"application/vnd.cncf.model.{kind}.v1.raw"
    return "application/vnd.cncf.model.weight.v1.raw"  # model directories are mostly weights


def tree_digest(entries: Sequence[Entry]) -> str:
    h = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e.path):
        h.update(f"{e.mode:o} {e.digest} {e.path}\n".encode())
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class Artifact:
    manifest: bytes
    digest: str
    config: bytes
    config_digest: str


def build(entries: Sequence[Entry], annotations: Mapping[str, str], artifact_type: str = ARTIFACT_TYPE) -> Artifact:
    """The manifest and config of a bundle; the same entries always give the same bytes."""
    ordered = sorted(entries, key=lambda e: e.path)
    config, config_digest = EMPTY_CONFIG, "sha256:" + hashlib.sha256(EMPTY_CONFIG).hexdigest()
    layers = [{
        "mediaType": media_type(e.path), "digest": e.digest, "size": e.size,
        "annotations": {TITLE: e.path, FILEPATH: e.path,
                        METADATA: json.dumps({"name": e.path, "mode": e.mode, "size": e.size, "typeflag": 48},
                                             sort_keys=True, separators=(",", ":"))},
    } for e in ordered]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": artifact_type,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
        "layers": layers,
        "annotations": {**dict(sorted(annotations.items())), TREE: tree_digest(ordered)},
    }, sort_keys=True, separators=(",", ":")).encode()
    return Artifact(manifest, "sha256:" + hashlib.sha256(manifest).hexdigest(), config, config_digest)


@dataclass(frozen=True)
class Parsed:
    entries: tuple[Entry, ...]
    annotations: dict[str, str]
    artifact_type: str
    config_digest: str


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def parse(body: bytes, where: str) -> Parsed:
    """The entries of a manifest, every path checked: nothing may escape the directory it lands in."""
    try:
        data = json.loads(body)
    except ValueError:
        raise ManifestError(f"{where}: the manifest is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        kind = data.get("mediaType", "?") if isinstance(data, dict) else type(data).__name__
        raise ManifestError(f"{where}: not an image manifest with layers (mediaType {kind}); is it a bundle?")
    entries = []
    seen: set[str] = set()
    for i, layer in enumerate(data["layers"]):
        notes = layer.get("annotations") or {}
        raw = notes.get(FILEPATH) or notes.get(TITLE)
        if not raw:
            raise ManifestError(f"{where}: layer {i} has no file path annotation ({TITLE}); "
                                "it is not a bundle of files (a tarball pushed by oras push of a directory?)")
        # `oras push DIR`: the directory as one tar.gz, which oras unpacks on pull (the oras CLI marks it with the
        # annotation, oras-py by the media type alone)
        if str(notes.get(UNPACK, "")).lower() == "true" or layer.get("mediaType") == PACKED_DIR:
            raise ManifestError(f"{where}: layer {raw!r} is a directory packed by oras push (a tar.gz to unpack, "
                                f"{UNPACK}); a recon bundle holds one layer per file, titled with its path: push "
                                "the files (`oras push REF $(find DIR -type f)`, or `recon bundle push DIR REF`)")
        path = safe_path(raw, where)
        digest = str(layer.get("digest", ""))
        if not _DIGEST.match(digest):
            raise ManifestError(f"{where}: layer {path} has an unsupported digest {digest!r} (recon reads sha256)")
        if path in seen:
            raise ManifestError(f"{where}: {path} appears twice")
        seen.add(path)
        mode = 0o644
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            mode = normal_mode(int(json.loads(notes.get(METADATA, "{}")).get("mode", 0o644)))
        entries.append(Entry(path, digest, int(layer.get("size", 0)), mode))
    return Parsed(tuple(entries), dict(data.get("annotations") or {}), str(data.get("artifactType", "")),
                  str((data.get("config") or {}).get("digest", "")))


def safe_path(raw: str, where: str) -> str:
    """A relative path inside its directory, or ManifestError: no absolute paths, no '..', no NUL."""
    if not isinstance(raw, str) or "\0" in raw or "\\" in raw:
        raise ManifestError(f"{where}: refused a file path {raw!r}: it contains NUL or a backslash")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise ManifestError(f"{where}: refused the absolute file path {raw!r}: it would be written outside the "
                            "target directory")
    norm = posixpath.normpath(raw)
    if norm in (".", "") or norm == ".." or norm.startswith("../") or ".." in raw.split("/"):
        raise ManifestError(f"{where}: refused the file path {raw!r}: it would escape the target directory")
    if norm == MARKER:
        raise ManifestError(f"{where}: refused the file path {raw!r}: recon keeps its own record there")
    return norm


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def compare(old: Sequence[Entry], new: Sequence[Entry]) -> dict[str, list[tuple[Entry | None, Entry | None]]]:
    """Files added, changed (digest or mode), removed and unchanged from old to new."""
    before = {e.path: e for e in old}
    after = {e.path: e for e in new}
    out: dict[str, list[tuple[Entry | None, Entry | None]]] = {"added": [], "changed": [], "removed": [],
                                                               "unchanged": []}
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        key = ("added" if a is None else "removed" if b is None
               else "unchanged" if (a.digest, a.mode) == (b.digest, b.mode) else "changed")
        out[key].append((a, b))
    return out
