"""Every example under examples/ is validated and planned by the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, recon

EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_and_plans(example: Path, tmp_path: Path) -> None:
    env = {"RECON_QUICKSTART_ROOT": str(tmp_path / "root")}
    got = recon("validate", str(example), cwd=tmp_path, env=env)
    assert got.rc == 0, got.text
    got = recon("plan", str(example), "--detailed-exitcode", cwd=tmp_path, env=env)
    assert got.rc in (0, 2), got.text
    assert "Plan:" in got.out
