"""Transports run one shell script on a host and give back its output.

Scripts travel on standard input to `sh -s`, so their size is not bound by the argument
limit, and the same scripts serve the local machine now and SSH hosts later.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from specs.errors import TransportError

if TYPE_CHECKING:
    from providers.hosts.model import Payload


@dataclass(frozen=True)
class RunResult:
    rc: int
    stdout: bytes
    stderr: bytes


Script = str | Iterable[str]  # a script, or its pieces made as they are sent (a large file's chunks)


def whole(script: Script) -> str:
    return script if isinstance(script, str) else "".join(script)


class Transport(Protocol):
    def run(self, script: Script, on_line: Callable[[bytes], None] | None = None) -> RunResult: ...

    def put(self, payload: Payload, remote: str) -> None:
        """Stream `payload` into the new file `remote` (its directory made), owner-only from the first byte,
        never written through a link or a file already there; memory bounded by a chunk."""
        ...

    def close(self) -> None: ...


class LocalTransport:
    """Runs scripts on the machine recon runs on, with a clean, predictable environment."""

    def __init__(self, timeout: float = 3600.0) -> None:
        self.timeout = timeout
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "LC_ALL": "C",
        }

    def run(self, script: Script, on_line: Callable[[bytes], None] | None = None) -> RunResult:
        data = whole(script).encode()
        try:
            if on_line is None:
                done = subprocess.run(
                    ["/bin/sh", "-s"], input=data, capture_output=True, env=self.env, timeout=self.timeout,
                    check=False,
                )
                return RunResult(done.returncode, done.stdout, done.stderr)
            return self._stream(data, on_line)
        except OSError as exc:
            raise TransportError(f"cannot run /bin/sh on this machine: {exc.strerror}") from None
        except subprocess.TimeoutExpired:
            raise TransportError(f"a script on this machine ran past {self.timeout:.0f}s") from None

    def _stream(self, data: bytes, on_line: Callable[[bytes], None]) -> RunResult:
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                ["/bin/sh", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=self.env
            )
            assert proc.stdin is not None and proc.stdout is not None

            def feed() -> None:
                assert proc.stdin is not None
                try:
                    proc.stdin.write(data)
                    proc.stdin.close()
                except BrokenPipeError:
                    pass

            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
            out = bytearray()
            for line in proc.stdout:
                out += line
                on_line(line)
            rc = proc.wait()
            writer.join()
            err.seek(0)
            return RunResult(rc, bytes(out), err.read())

    def put(self, payload: Payload, remote: str) -> None:
        try:
            os.makedirs(os.path.dirname(remote) or "/", exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(remote)
            fd = os.open(remote, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise TransportError(f"cannot write {remote}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as out:
            for chunk in payload.chunks():
                out.write(chunk)

    def close(self) -> None:
        return None


PUT_SCRIPT = "mkdir -p -- {parent} && rm -f -- {tmp} && umask 077 && set -C && cat > {tmp}"
