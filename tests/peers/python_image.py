"""A Python base image built from this machine's own interpreter, since no image can be pulled here.

`FROM scratch` with: the interpreter and its standard library at the same absolute paths as here
(so it finds its prefix as it does here), the site-packages the model template needs (from the
test environment), every shared library `ldd` names for them, and busybox as /bin/sh (Dockerfiles'
RUN lines need a shell). infra.md found the idea; this is the tests' own version of it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.peers import docker_engine

# the test environment's site-packages go in whole, but for tools the services never import
DEV_TOOLS = ("mypy", "mypyc", "ruff", "pytest", "_pytest", "pip", "setuptools", "pygments", "paramiko",
             "ruamel", "deepdiff", "docker", "typer", "rich", "recon", "__editable__", "reconciler", "specs",
             "providers")
SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages", "__pycache__", "lib2to3",
        "config-3.11-x86_64-linux-gnu"}


def _libs(paths: list[Path]) -> set[Path]:
    found: set[Path] = set()
    for chunk in range(0, len(paths), 200):
        out = subprocess.run(["ldd", *map(str, paths[chunk:chunk + 200])], capture_output=True, text=True,
                             check=False).stdout
        found.update(Path(m) for m in re.findall(r"(/\S+\.so[.\d]*)", out))
    return found


def build(engine: docker_engine.Engine, where: Path, tag: str = "recon-test/python:3.11") -> str:
    root = where / "rootfs"
    python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["stdlib"])
    site = Path(sysconfig.get_paths()["purelib"])  # the test environment's site-packages

    def put(src: Path) -> None:
        dest = root / src.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=False, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "tests", "test"))
        else:
            shutil.copy2(src, dest)

    put(python.resolve())
    (root / python.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
    if python.resolve() != python:
        shutil.copy2(python.resolve(), root / python.relative_to("/"))
    for entry in stdlib.iterdir():
        if entry.name not in SKIP:
            put(entry)
    target_site = root / stdlib.relative_to("/") / "site-packages"
    target_site.mkdir(parents=True, exist_ok=True)
    for src in site.iterdir():
        if src.name.lower().startswith(DEV_TOOLS) or "__mypyc" in src.name:
            continue
        if src.is_dir():
            shutil.copytree(src, target_site / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.suffix in (".py", ".so", ".pth") or src.name.endswith(".so"):
            shutil.copy2(src, target_site / src.name)
    shared = [python.resolve(), *root.rglob("*.so")]
    for lib in _libs(shared):
        if lib.exists() and not str(lib).startswith(str(root)):
            put(lib)
            if lib.resolve() != lib:
                put(lib.resolve())
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy(docker_engine.BUSYBOX, root / "bin" / "sh")
    for link in ("python", "python3"):
        (root / "usr" / "local" / "bin").mkdir(parents=True, exist_ok=True)
        (root / "usr" / "local" / "bin" / link).symlink_to(python)
    (where / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin:/bin\n")
    return engine.docker("build", "-q", "-t", tag, str(where))
