"""An HAProxy image built from Debian's haproxy package, since no image can be pulled here.

`FROM scratch` with /usr/sbin/haproxy and every shared library `ldd` names for it, on PATH as in the
official image, so a Model's `endpoint.image` can name it as it would name `haproxy:2.6`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.peers import docker_engine

HAPROXY = "/usr/sbin/haproxy"
TAG = "recon-test/haproxy:2.6"


def build(engine: docker_engine.Engine, where: Path, tag: str = TAG) -> str:
    if not Path(HAPROXY).exists():
        raise RuntimeError(f"{HAPROXY} is missing: install Debian's haproxy (scripts/setup)")
    root = where / "rootfs"
    out = subprocess.run(["ldd", HAPROXY], capture_output=True, text=True, check=True).stdout
    for src in [Path(HAPROXY), *(Path(m) for m in re.findall(r"(/\S+\.so[.\d]*)", out))]:
        dest = root / src.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src.resolve(), dest)
    (where / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/sbin:/usr/sbin\n")
    return engine.docker("build", "-q", "-t", tag, str(where))
