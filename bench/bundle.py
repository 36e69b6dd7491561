"""Bundles against a real registry (Debian's docker-registry on 127.0.0.1), as issue 4 asks.

Usage: python bench/bundle.py [FILES] [MIB]   (default 1000 files, 1024 MiB in all)

Measured (wall seconds of the real `recon` command; bytes from the registry's request log):
- raw upload: curl PUTs one blob of the whole size to the same registry (POST + monolithic PUT);
- first push: `recon apply` of a Bundle of FILES files (hashing, plan, upload), and its throughput
  as a ratio of curl's;
- re-plan of the unchanged bundle: time, and blob PUTs (must be 0);
- first pull into an empty cache, second pull into another directory: time, blob GETs (must be 0);
- one file changed: recon's plan + push, blob PUTs and bytes;
- oras-py (RECON_BENCH_PEERS venv, `pip install oras`) pushing the directory as ORAS does (one
  tarball layer): time of the first push, and time and bytes after changing one file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import RECON, measure  # noqa: E402

from tests.peers import registry as peers  # noqa: E402

PEERS = Path(os.environ.get("RECON_BENCH_PEERS", HERE / ".venv-peers")) / "bin"


def make_files(root: Path, count: int, total: int) -> None:
    """`count` files of random content, sizes spread from small to large, `total` bytes in all."""
    root.mkdir(parents=True)
    weights = [1 + (i % 10) for i in range(count)]
    unit = total // sum(weights)
    left = total
    for i, w in enumerate(weights):
        size = left if i == count - 1 else w * unit
        left -= size
        sub = root / f"shard-{i // 100:02}"
        sub.mkdir(exist_ok=True)
        with open(sub / f"part-{i:04}.bin", "wb") as out:
            while size > 0:
                n = min(size, 8 << 20)
                out.write(os.urandom(n))
                size -= n


def registry_cpu(reg: peers.Registry) -> float:
    """CPU seconds the registry process has used so far (user + system)."""
    fields = Path(f"/proc/{reg.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def digest_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def recon_client_upload(reg: peers.Registry, path: Path) -> float:
    """recon's OCI client sending the same single blob (to another repository)."""
    from providers.oras.registry import RegistryStore
    from specs.ref import parse

    digest = digest_of(path)
    started = time.perf_counter()
    RegistryStore(parse(f"{reg.host}/raw/recon:v1")).put_blob(digest, path.stat().st_size, path)
    return time.perf_counter() - started


def curl_upload(reg: peers.Registry, path: Path) -> float:
    digest = digest_of(path)
    started = time.perf_counter()
    out = subprocess.run(["curl", "-s", "-i", "-X", "POST", f"http://{reg.host}/v2/raw/curl/blobs/uploads/"],
                         capture_output=True, text=True, check=True).stdout
    location = re.search(r"(?im)^location: (\S+)", out).group(1)  # type: ignore[union-attr]
    sep = "&" if "?" in location else "?"
    subprocess.run(["curl", "-s", "-f", "-H", "Content-Type: application/octet-stream",
                    "-T", str(path), f"{location}{sep}digest={digest}"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


CURL_ONE = r"""
f="$1"; d="sha256:$(sha256sum "$f" | cut -d' ' -f1)"
loc=$(curl -s -i -X POST "$REG/v2/raw/files/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case "$loc" in *\?*) sep='&';; *) sep='?';; esac
curl -s -f -H 'Content-Type: application/octet-stream' -T "$f" "$loc${sep}digest=$d" >/dev/null
"""


def curl_files(reg: peers.Registry, root: Path, parallel: int = 8) -> float:
    """The same files uploaded by curl, one POST + PUT each, `parallel` at a time (sha256sum included,
    as recon hashes too)."""
    script = root / "curl_one.sh"
    script.write_text(CURL_ONE)
    files = "\0".join(str(p) for p in sorted((root / "model").rglob("*.bin"))).encode()
    started = time.perf_counter()
    subprocess.run(["xargs", "-0", "-P", str(parallel), "-n", "1", "sh", str(script)], input=files, check=True,
                   env={**os.environ, "REG": f"http://{reg.host}"})
    return time.perf_counter() - started


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    mib = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    total = mib << 20
    with tempfile.TemporaryDirectory(prefix="recon-bench-bundle-") as tmp:
        root = Path(tmp)
        reg = peers.start(root / "registry")
        try:
            run(root, reg, count, total)
        finally:
            reg.stop()


def run(root: Path, reg: peers.Registry, count: int, total: int) -> None:
    make_files(root / "model", count, total)
    env = {"RECON_CACHE_DIR": str(root / "cache")}
    spec = root / "specs" / "bundle.yaml"
    spec.parent.mkdir()
    ref = f"{reg.host}/bench/model:v1"
    spec.write_text(f"apiVersion: recon/v1\nkind: Bundle\nmetadata: {{name: model}}\n"
                    f"spec:\n  source: ../model\n  ref: {ref}\n")
    print(f"# {count} files, {total / 2**20:.0f} MiB")

    big = root / "one-blob"
    with open(big, "wb") as out:
        for p in sorted((root / "model").rglob("*.bin")):
            out.write(p.read_bytes())
    before = registry_cpu(reg)
    one_s = min(curl_upload(reg, big) for _ in range(2))
    one_cpu = (registry_cpu(reg) - before) / 2
    client_s = recon_client_upload(reg, big)
    big.unlink()
    print(f"raw upload (curl, one blob of it all): {one_s:.2f} s, {total / 2**20 / one_s:.0f} MiB/s; "
          f"the registry spent {one_cpu:.1f} CPU s on it")
    print(f"recon's client, the same one blob: {client_s:.2f} s")
    curl_s = curl_files(reg, root)
    print(f"raw upload (curl, each file: POST + PUT, 8 at a time): {curl_s:.2f} s, "
          f"{total / 2**20 / curl_s:.0f} MiB/s")

    drop_index(env)
    mark = reg.mark()
    before = registry_cpu(reg)
    first = measure([RECON, "apply", "--auto-approve"], cwd=root, env=env)
    push_cpu = registry_cpu(reg) - before
    puts = len(reg.since(mark, "PUT", r"/blobs/uploads/"))
    print(f"recon first push (hash + plan + upload): {first.seconds:.2f} s, {total / 2**20 / first.seconds:.0f} MiB/s, "
          f"{curl_s / first.seconds:.0%} of curl per file, {one_s / first.seconds:.0%} of curl's one blob; "
          f"{puts} blob PUTs; peak RSS {first.peak_mb:.0f} MB; the registry spent {push_cpu:.1f} CPU s on it")

    replans = []
    mark = reg.mark()
    for _ in range(3):
        replans.append(measure([RECON, "plan", "--detailed-exitcode"], cwd=root, env=env))
    puts = len(reg.since(mark, "PUT", r"/blobs/"))
    gets = len(reg.since(mark, "GET", r"/blobs/"))
    print(f"re-plan unchanged: median {sorted(s.seconds for s in replans)[1]:.2f} s (rc {replans[-1].rc}); "
          f"{puts} blob PUTs, {gets} blob GETs; peak RSS {max(s.peak_mb for s in replans):.0f} MB")

    mark = reg.mark()
    pull1 = measure([RECON, "bundle", "pull", ref, str(root / "pull1")], cwd=root, env=env)
    gets1 = len(reg.since(mark, "GET", r"/blobs/"))
    mark = reg.mark()
    pull2 = measure([RECON, "bundle", "pull", ref, str(root / "pull2")], cwd=root, env=env)
    gets2 = len(reg.since(mark, "GET", r"/blobs/"))
    print(f"first pull (empty cache): {pull1.seconds:.2f} s, {gets1} blob GETs, "
          f"{total / 2**20 / pull1.seconds:.0f} MiB/s")
    print(f"second pull (from cache): {pull2.seconds:.2f} s, {gets2} blob GETs")

    victim = sorted((root / "model").rglob("*.bin"))[7]
    with open(victim, "r+b") as fh:
        fh.write(os.urandom(64))
    mark = reg.mark()
    change = measure([RECON, "apply", "--auto-approve"], cwd=root, env=env)
    puts = len(reg.since(mark, "PUT", r"/blobs/uploads/"))
    print(f"one file changed ({victim.stat().st_size / 2**20:.1f} MiB): recon plan + push {change.seconds:.2f} s, "
          f"{puts} blob PUT, {victim.stat().st_size / 2**20:.1f} MiB uploaded")

    oras_compare(root, reg)


def drop_index(env: dict[str, str]) -> None:
    shutil.rmtree(Path(env["RECON_CACHE_DIR"]) / "index", ignore_errors=True)


ORAS_PUSH = """
import sys, oras.client
client = oras.client.OrasClient(hostname=sys.argv[1], insecure=True)
client.push(target=sys.argv[2], files=[sys.argv[3]], disable_path_validation=True)
"""


def oras_compare(root: Path, reg: peers.Registry) -> None:
    python = PEERS / "python"
    if not python.exists():
        print(f"oras-py: not measured ({python} missing; see this file's docstring)")
        return
    script = root / "oras_push.py"
    script.write_text(ORAS_PUSH)
    target = f"{reg.host}/bench/oras:v1"
    cmd = [str(python), str(script), reg.host, target, "model"]
    mark = reg.mark()
    first = measure(cmd, cwd=root)
    print(f"oras-py first push (one tarball layer): {first.seconds:.2f} s, "
          f"{len(reg.since(mark, 'PUT', r'/blobs/uploads/'))} blob PUTs")
    victim = sorted((root / "model").rglob("*.bin"))[11]
    with open(victim, "r+b") as fh:
        fh.write(os.urandom(64))
    mark = reg.mark()
    again = measure(cmd, cwd=root)
    layer = max((p.stat().st_size for p in (root / "registry" / "data").rglob("data")), default=0)
    print(f"oras-py after one file changed: {again.seconds:.2f} s, "
          f"{len(reg.since(mark, 'PUT', r'/blobs/uploads/'))} blob PUTs, the whole tarball again "
          f"({layer / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
