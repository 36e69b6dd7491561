"""The bundle provider: a Bundle spec is one resource, its target the OCI reference it is published at.

- read: per bundle one HEAD of the tag, and a GET of the manifest only when this machine has not
  seen that manifest before (manifests are cached by digest); never a blob.
- diff: local files (sha256 through the digest index) against the manifest's layers, file by file.
- apply: upload the blobs the store lacks, the manifest by digest, then move the tag.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

from providers.context import Context, Reading, StepDone
from providers.contract import Change, FieldChange, Instance, Provider, Result, fingerprint
from providers.oras import bundle, ops, scan
from providers.oras.bundle import Artifact, Entry
from providers.oras.cache import BlobCache
from providers.oras.registry import Credentials
from providers.textdiff import DIFF_MAX, is_text, unified
from specs.bundle import BundleSpec
from specs.hostgroup import expand_vars
from specs.project import Project, Spec
from specs.ref import Reference, parse


@dataclass(frozen=True)
class OciBundle:
    ref: Reference
    source: Path
    entries: tuple[Entry, ...]
    artifact: Artifact
    spec: BundleSpec
    base: Path  # the spec file's directory, for secret references
    annotations: dict[str, str]
    reviewed: bool = True  # False: the change under review writes its spec: no old text is fetched for a diff

    def credentials(self) -> Credentials | None:
        creds = self.spec.credentials
        if creds is None:
            return None
        return Credentials(creds.username, creds.password.resolve(self.base).get_secret_value().strip(),
                           creds.password.describe())


TagState = dict[str, Any] | None  # what a tag points to (manifest digest, files, annotations); None: no such tag


class _Stores:
    """The bundle provider's session: one store (registry client or layout) per reference for the run."""

    def __init__(self) -> None:
        self.open: dict[str, ops.Store] = {}

    def close(self) -> None:
        for store in self.open.values():
            store.close()
        self.open.clear()


class BundleProvider:
    kinds: ClassVar[tuple[str, ...]] = ("Bundle",)

    def expand(self, spec: Spec, project: Project) -> list[Instance[OciBundle]]:
        body = spec.body
        assert isinstance(body, BundleSpec)
        base = Path(spec.doc.file).parent
        ref = parse(expand_vars(body.ref)).with_base(base)
        source = body.source_dir(spec.doc)
        entries = tuple(scan.entries(source, body.include, body.exclude))
        annotations = {"org.opencontainers.image.title": spec.name, **body.annotations}
        artifact = bundle.build(entries, annotations, body.artifactType or bundle.ARTIFACT_TYPE)
        desired = OciBundle(ref, source, entries, artifact, body, base, annotations,
                            reviewed=spec.doc.file not in project.unreviewed)
        return [Instance(spec.address, str(ref), spec.address, "bundle", desired, artifact.digest)]

    def lock_key(self, inst: Instance[OciBundle]) -> str:
        """Pushes to one repository take turns."""
        ref: Reference = inst.desired.ref
        if ref.registry:
            return f"oci/{ref.registry}/{ref.repository}"
        return f"oci-layout/{socket.gethostname()}{Path(ref.repository).resolve()}"

    def _store(self, desired: OciBundle, ctx: Context) -> ops.Store:
        stores = ctx.session("bundles", _Stores).open
        key = str(desired.ref)
        store = stores.get(key)
        if store is None:
            store = stores[key] = ops.store_for(desired.ref, desired.credentials(), desired.spec.plainHttp)
        return store

    def read(self, instances: Sequence[Instance[OciBundle]], ctx: Context) -> dict[str, TagState]:
        cache = BlobCache()
        stores = [self._store(inst.desired, ctx) for inst in instances]  # made here: ctx is not thread-safe

        def one(item: tuple[Instance[OciBundle], ops.Store]) -> TagState:
            inst, store = item
            ctx.reporter.report(Reading(inst.target, "manifest"))
            remote = ops.read(store, cache)
            if remote is None:
                return None
            state: dict[str, Any] = {
                "digest": remote.digest,
                "files": {e.path: [e.digest, e.size, e.mode] for e in remote.parsed.entries},
                "annotations": remote.parsed.annotations,
                "artifactType": remote.parsed.artifact_type,
            }
            if not (ctx.fingerprint_only or ctx.verifying) and inst.desired.reviewed:  # (a change could name any
                # repository its runner can read, to have its files printed in its own plan)
                state["texts"] = _texts(inst.desired, store, state["files"])
            return state

        with ThreadPoolExecutor(max_workers=max(1, min(ctx.concurrency, len(instances), 16))) as pool:
            states = list(pool.map(one, zip(instances, stores, strict=True)))
        return {inst.id: state for inst, state in zip(instances, states, strict=True)}

    def diff(self, instances: Sequence[Instance[OciBundle]], live: Mapping[str, TagState]) -> list[Change]:
        return [_diff(inst, live.get(inst.id)) for inst in instances]

    def apply(self, target: str, steps: Sequence[tuple[Instance[OciBundle], Change]], ctx: Context) -> Iterator[Result]:
        for inst, change in steps:
            started = time.monotonic()
            d = inst.desired
            store = self._store(d, ctx)
            known = set() if change.action == "create" else _live_digests(store)
            total = _upload_bytes(d.entries, known)
            artifact = _with_revision(d, ctx.commit)
            with ctx.reporter.transfer(f"push {d.ref}", total) as tick:
                stats = ops.push(store, d.source, d.entries, artifact, known, tick)
            message = (f"pushed {artifact.digest[:19]}: uploaded {len(stats.uploaded)} blobs "
                       f"({bundle.human(stats.bytes)}), {stats.present} already there")
            ctx.reporter.report(StepDone(target, change.id, True))
            yield Result(change.id, True, seconds=time.monotonic() - started, note=message)


_: type[Provider[OciBundle, TagState]] = BundleProvider  # the contract, typed (mypy checks it)


def _with_revision(d: OciBundle, sha: str) -> Artifact:
    """The artifact as pushed: with the git commit it came from, unless the spec names a revision itself."""
    if not sha or bundle.REVISION in d.annotations:
        return d.artifact
    return bundle.build(d.entries, {**d.annotations, bundle.REVISION: sha}, d.spec.artifactType or bundle.ARTIFACT_TYPE)


def _live_digests(store: ops.Store) -> set[str]:
    """Blob digests of the manifest the tag points to now (they are in the store; no HEAD needed)."""
    remote = ops.read(store, BlobCache())
    return {e.digest for e in remote.parsed.entries} if remote else set()


def _upload_bytes(entries: Sequence[Entry], known: set[str]) -> int:
    unique = {e.digest: e.size for e in entries if e.digest not in known}
    return sum(unique.values())


DIFF_FILES = 20  # small text files of a bundle whose changed lines a plan shows; the others by digest and size


def _texts(d: OciBundle, store: ops.Store, live: dict[str, list[Any]]) -> dict[str, list[str]]:
    """Path -> [old text, new text] of the bundle's small text files that changed (up to DIFF_FILES), the old
    one fetched from the registry and checked against its digest: what the plan shows as a diff."""
    out: dict[str, list[str]] = {}
    for e in d.entries:
        have = live.get(e.path)
        if len(out) >= DIFF_FILES or have is None or have[0] == e.digest or max(have[1], e.size) > DIFF_MAX:
            continue
        new = (d.source / e.path).read_bytes()
        old = b"".join(cast(Iterable[bytes], store.get_blob(have[0])))
        if "sha256:" + hashlib.sha256(old).hexdigest() == have[0] and is_text(old) and is_text(new):
            out[e.path] = [old.decode("utf-8"), new.decode("utf-8")]
    return out


def _diff(inst: Instance[OciBundle], state: TagState) -> Change:
    d = inst.desired
    texts = (state or {}).get("texts") or {}
    fp = fingerprint({k: v for k, v in state.items() if k != "texts"} if state else state)  # texts: shown only

    def change(action: str, reason: str, fields: list[FieldChange]) -> Change:
        risks = ("tag move",) if action == "update" else ()  # whoever pulls the tag gets other files
        return Change(inst.address, inst.target, inst.spec, inst.resource, action, reason,  # type: ignore[arg-type]
                      tuple(fields), fp, inst.desired_digest, risks=risks)

    if state is None:
        total = _upload_bytes(d.entries, set())
        fields = [FieldChange(f"file {e.path}", None, e.describe()) for e in d.entries]
        return change("create", f"no tag {d.ref.tag} yet: {len(d.entries)} files, {bundle.human(total)} to upload",
                      fields)
    if state["digest"] == d.artifact.digest:
        return change("noop", f"the tag points to this bundle ({len(d.entries)} files, {state['digest'][:19]})", [])
    live_entries = [Entry(p, v[0], v[1], v[2]) for p, v in state["files"].items()]
    cmp = bundle.compare(live_entries, d.entries)
    fields = []
    for key in ("changed", "added", "removed"):
        for a, b in cmp[key]:
            path = (a or b).path  # type: ignore[union-attr]
            fields.append(FieldChange(f"file {path}", a.describe() if a else None, b.describe() if b else None))
            if path in texts and a and b:
                fields.append(FieldChange("diff", None, unified(texts[path][0], texts[path][1], path)))
    wanted = dict(d.spec.annotations)
    ours = ("org.opencontainers.image.title", *(() if bundle.REVISION in wanted else (bundle.REVISION,)))
    have = {k: v for k, v in state["annotations"].items() if not k.startswith("dev.recon.") and k not in ours}
    for key in sorted(wanted.keys() | have.keys()):
        if wanted.get(key) != have.get(key):
            fields.append(FieldChange(f"annotation {key}", have.get(key), wanted.get(key)))
    want_type = d.spec.artifactType or bundle.ARTIFACT_TYPE
    if state["artifactType"] != want_type:
        fields.append(FieldChange("artifactType", state["artifactType"] or None, want_type))
    known = {v[0] for v in state["files"].values()}
    total = _upload_bytes(d.entries, known)
    counts = ", ".join(f"{len(cmp[k])} {k}" for k in ("changed", "added", "removed", "unchanged") if cmp[k])
    reason = f"{counts}; {bundle.human(total)} to upload"
    if not fields and state["annotations"].get(bundle.TREE) == bundle.tree_digest(d.entries):
        revision = state["annotations"].get(bundle.REVISION, "")
        return change("noop", f"the tag points to these files ({len(d.entries)} files"
                      + (f", pushed from commit {revision[:10]})" if revision else ")"), [])
    if not fields:
        reason = "the manifest differs in form only (written by another tool?); re-pushed as recon writes it"
    return change("update", reason, fields)
