"""recon's git work by the git command (what it does) against GitPython (issue 24), on a real repository
(this one by default): the merge base and the paths changed since it, with renames; and the Policy documents of
the tree at a ref. Each in a new process, as a plan pays it, median of RUNS.

Usage: python bench/git_paths.py [REPO] [RUNS]   (default: this repository, 9)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "changed paths since a ref (merge base, renames)": {
        "git command": """
import subprocess
def git(*a): return subprocess.run(["git", *a], cwd=R, capture_output=True, text=True, check=True).stdout
base = git("merge-base", REF, "HEAD").strip()
names = [n for n in git("diff", "--name-only", "-z", "-M", base).split("\\0") if n]
""",
        "GitPython": """
import git
repo = git.Repo(R)
base = repo.merge_base(REF, "HEAD")[0]
names = [d.b_path or d.a_path for d in base.diff(None, R=False)]
""",
    },
    "Policy documents at a ref": {
        "git command": """
import subprocess
def git(*a): return subprocess.run(["git", *a], cwd=R, capture_output=True, text=True, check=False).stdout
found = git("grep", "-l", "-I", "-E", "^kind:[[:space:]]*Policy", REF, "--", "*.yaml", "*.yml").splitlines()
texts = [git("show", n) for n in found]
""",
        "GitPython": """
import git
repo = git.Repo(R)
tree = repo.commit(REF).tree
texts = [b.data_stream.read() for b in tree.traverse()
         if b.type == "blob" and b.path.endswith((".yaml", ".yml"))]
texts = [t for t in texts if b"kind: Policy" in t]
""",
    },
}


def main() -> None:
    repo = (Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent).resolve()
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    ref = subprocess.run(["git", "rev-list", "--max-count=1", "--skip=20", "HEAD"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout.strip()
    files = len(subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout.splitlines())
    print(f"| {repo.name}: {files} files, ref HEAD~20, median of {runs} | git command | GitPython |")
    print("|---|---|---|")
    for what, ways in COMMANDS.items():
        times = {}
        for name, code in ways.items():
            prog = f"R = {str(repo)!r}\nREF = {ref!r}\n{code}"
            samples = []
            for _ in range(runs):
                t = time.perf_counter()
                subprocess.run([sys.executable, "-c", prog], check=True)
                samples.append(time.perf_counter() - t)
            times[name] = statistics.median(samples)
        print(f"| {what} (a new process) | {1000 * times['git command']:.0f} ms | {1000 * times['GitPython']:.0f} ms |")
    empty = statistics.median(_t([sys.executable, "-c", "pass"]) for _ in range(runs))
    print(f"| (Python's start-up alone) | {1000 * empty:.0f} ms | |")


def _t(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
