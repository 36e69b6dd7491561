"""`recon bundle …`: pull, verify, diff and ls of bundles, beside plan/apply (which push).

A REF is `host[:port]/repository:tag` (or `@sha256:…`), or `oci-layout:PATH[:tag]`; a DIR is a
directory. Credentials come from RECON_REGISTRY_USERNAME and RECON_REGISTRY_PASSWORD, or from
--username with the password on stdin (--password-stdin). Exit codes: 0 fine, 1 error, 2 the
files differ (verify found a problem; diff with --exit-code found a difference).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from specs.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from providers.oras.bundle import Entry
    from providers.oras.ops import Store

bundle_app = typer.Typer(help="Pull, verify, diff and list bundles (OCI artifacts of model files).",
                         no_args_is_help=True, rich_markup_mode=None)

JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
User = Annotated[str | None, typer.Option("--username", "-u", help="Registry user (or RECON_REGISTRY_USERNAME).")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the registry password from stdin.")]
PlainHttp = Annotated[bool, typer.Option("--plain-http", help="HTTP instead of HTTPS (loopback is always HTTP).")]


def _store(text: str, username: str | None, password_stdin: bool, plain_http: bool) -> Store:
    from providers.oras import ops
    from providers.oras.registry import Credentials
    from specs.ref import parse

    ref = parse(text)
    if ref.is_layout:
        ref = ref.with_base(Path.cwd())
    user = username or os.environ.get("RECON_REGISTRY_USERNAME")
    creds = None
    if user:
        if password_stdin:
            password, source = sys.stdin.readline().rstrip("\n"), "stdin"
        else:
            password, source = os.environ.get("RECON_REGISTRY_PASSWORD", ""), "env RECON_REGISTRY_PASSWORD"
        creds = Credentials(user, password, source)
    elif password_stdin:
        raise UsageError("--password-stdin needs --username (or RECON_REGISTRY_USERNAME)")
    return ops.store_for(ref, creds, True if plain_http else None)


def _is_dir(text: str) -> bool:
    return not text.startswith("oci-layout:") and os.path.isdir(text)


def _print(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _remote_entries(store: Store) -> tuple[str, tuple[Entry, ...]]:
    from providers.oras import ops
    from providers.oras.cache import BlobCache

    remote = ops.read_existing(store, BlobCache())
    return remote.digest, remote.parsed.entries


def _entry_json(e: Entry) -> dict[str, Any]:
    return {"path": e.path, "digest": e.digest, "size": e.size, "mode": f"{e.mode:04o}"}


@bundle_app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="The bundle to pull.")],
    directory: Annotated[Path, typer.Argument(help="Where its files go (created if missing).")],
    as_json: JsonOut = False, username: User = None, password_stdin: PasswordStdin = False,
    plain_http: PlainHttp = False,
) -> int:
    """Materialize a bundle in DIR through the content-addressed cache (hard links; a second pull downloads
    nothing). Every blob is verified against its digest; paths that would escape DIR are refused."""
    from functools import partial

    from providers.oras import ops
    from providers.oras.bundle import human
    from providers.oras.cache import BlobCache
    from providers.progress import transfer_bar

    store = _store(ref, username, password_stdin, plain_http)
    bars = sys.stderr.isatty() and not as_json
    holder: list[Any] = []

    def progress_for(total: int) -> Any:
        cm = transfer_bar(f"pull {store.ref}", total, bars)
        holder.append(cm)
        return cm.__enter__()

    try:
        stats = ops.pull(store, directory, BlobCache(), partial(progress_for))
    finally:
        for cm in holder:
            cm.__exit__(None, None, None)
        store.close()
    if as_json:
        _print({"ref": str(store.ref), "digest": stats.digest, "directory": str(directory), "files": stats.files,
                "bytes": stats.bytes, "downloaded_blobs": stats.downloaded, "downloaded_bytes": stats.downloaded_bytes,
                "written": stats.written, "already_in_place": stats.in_place})
    else:
        _console().print(
            f"Pulled {store.ref} ({stats.digest[:19]}) into {directory}: {stats.files} files, {human(stats.bytes)}; "
            f"downloaded {human(stats.downloaded_bytes)} in {stats.downloaded} blobs"
            + (f", {cached} from the cache" if (cached := stats.blobs - stats.downloaded) else "")
            + f"; {stats.written} files written, {stats.in_place} already in place.")
    return ExitCode.OK


@bundle_app.command()
def verify(
    what: Annotated[str, typer.Argument(help="A pulled DIR, or a REF whose blobs to download and re-hash.")],
    ref: Annotated[str | None, typer.Option("--ref", help="Verify DIR against this REF instead of the one "
                                            "recorded when it was pulled.")] = None,
    as_json: JsonOut = False, username: User = None, password_stdin: PasswordStdin = False,
    plain_http: PlainHttp = False,
) -> int:
    """Re-hash files against the manifest: report missing, corrupted, mode-changed and extra files."""
    from providers.oras import bundle, ops

    if _is_dir(what):
        root = Path(what)
        if ref is not None:
            store = _store(ref, username, password_stdin, plain_http)
            try:
                digest, entries = _remote_entries(store)
            finally:
                store.close()
            source = str(store.ref)
        else:
            record = _record(root)
            digest, source = record["digest"], record["ref"]
            entries = bundle.parse(json.dumps(record["manifest"]).encode(), str(root / bundle.MARKER)).entries
        problems = ops.verify_dir(root, entries)
    else:
        store = _store(what, username, password_stdin, plain_http)
        try:
            digest, entries = _remote_entries(store)
            problems = ops.verify_store(store, entries)
        finally:
            store.close()
        source = str(store.ref)
    failing = [p for p in problems if p.what != "extra"]
    if as_json:
        _print({"target": what, "ref": source, "digest": digest, "files": len(entries), "ok": not failing,
                "problems": [{"path": p.path, "problem": p.what, "detail": p.detail} for p in problems]})
    else:
        console = _console()
        for p in problems:
            colour = "yellow" if p.what == "extra" else "red"
            console.print(f"[{colour}]{p.what:>9}[/] {p.path}" + (f"  [dim]{p.detail}[/dim]" if p.detail else ""))
        verdict = "[green]OK[/green]" if not failing else f"[red]{len(failing)} problems[/red]"
        console.print(f"{verdict}: {what} against {source} ({digest[:19]}), {len(entries)} files.")
    return ExitCode.CHANGES if failing else ExitCode.OK


def _record(root: Path) -> dict[str, Any]:
    from providers.oras.bundle import MARKER

    try:
        data = json.loads((root / MARKER).read_text())
        return {"ref": str(data["ref"]), "digest": str(data["digest"]), "manifest": data["manifest"]}
    except FileNotFoundError:
        raise UsageError(f"{root} was not pulled by recon (no {MARKER}); say what to verify it against "
                         "with --ref REF") from None
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{root / MARKER} is damaged; verify against the bundle with --ref REF") from None


def _side(text: str, username: str | None, password_stdin: bool, plain_http: bool) -> tuple[str, list[Entry]]:
    if _is_dir(text):
        from providers.oras import scan

        return text, scan.entries(Path(text))
    store = _store(text, username, password_stdin, plain_http)
    try:
        digest, entries = _remote_entries(store)
    finally:
        store.close()
    return f"{store.ref} ({digest[:19]})", list(entries)


@bundle_app.command()
def diff(
    a: Annotated[str, typer.Argument(help="A REF or a DIR.")],
    b: Annotated[str, typer.Argument(help="A REF or a DIR.")],
    as_json: JsonOut = False,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 2 when they differ.")] = False,
    username: User = None, password_stdin: PasswordStdin = False, plain_http: PlainHttp = False,
) -> int:
    """Files added, changed and removed from A to B, from manifests alone (no blob is downloaded)."""
    from providers.oras.bundle import compare, human

    name_a, old = _side(a, username, password_stdin, plain_http)
    name_b, new = _side(b, username, password_stdin, plain_http)
    cmp = compare(old, new)
    differ = any(cmp[k] for k in ("added", "changed", "removed"))
    if as_json:
        _print({"a": name_a, "b": name_b, "differ": differ, **{
            k: [{"path": (x or y).path, "before": _entry_json(x) if x else None,  # type: ignore[union-attr]
                 "after": _entry_json(y) if y else None} for x, y in v]
            for k, v in cmp.items() if k != "unchanged"}, "unchanged": len(cmp["unchanged"])})
    else:
        console = _console()
        console.print(f"[bold]{name_a}[/bold] → [bold]{name_b}[/bold]")
        marks = {"added": ("+", "green"), "changed": ("~", "yellow"), "removed": ("-", "red")}
        for key, (sym, colour) in marks.items():
            for x, y in cmp[key]:
                entry = y or x
                assert entry is not None
                detail = (f"{x.describe()} → {y.describe()}" if x and y else entry.describe())
                console.print(f"[{colour}]{sym}[/] {entry.path}  [dim]{detail}[/dim]")
        added = sum(y.size for _, y in cmp["added"] if y) + sum(y.size for _, y in cmp["changed"] if y)
        console.print(", ".join(f"{len(cmp[k])} {k}" for k in ("added", "changed", "removed", "unchanged"))
                      + f"; {human(added)} of new content.")
    return ExitCode.CHANGES if exit_code and differ else ExitCode.OK


@bundle_app.command("ls")
def ls(
    ref: Annotated[str, typer.Argument(help="The bundle to list.")],
    as_json: JsonOut = False, username: User = None, password_stdin: PasswordStdin = False,
    plain_http: PlainHttp = False,
) -> int:
    """List the files of a bundle from its manifest: mode, size, digest, path."""
    from providers.oras.bundle import human

    store = _store(ref, username, password_stdin, plain_http)
    try:
        digest, entries = _remote_entries(store)
    finally:
        store.close()
    if as_json:
        _print({"ref": str(store.ref), "digest": digest, "files": [_entry_json(e) for e in entries]})
        return ExitCode.OK
    console = _console()
    for e in entries:
        console.print(f"{e.mode:04o} {human(e.size):>10}  {e.digest[7:19]}  {e.path}")
    console.print(f"{len(entries)} files, {human(sum(e.size for e in entries))}; {store.ref} is {digest}")
    return ExitCode.OK
