"""Every example under examples/ is validated and planned by the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, recon

EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())


def test_there_are_examples() -> None:
    assert EXAMPLES


# examples whose hosts are remote are planned and applied against the test fleet instead
REMOTE = {"fleet": "tests/e2e/test_ssh_fleet.py::test_fleet_example_on_the_test_fleet",
          "model-docker": "tests/e2e/test_models_docker.py::test_the_example_on_the_test_engine",
          "model-kubernetes": "tests/e2e/test_models_kubernetes.py::test_the_example_on_the_test_cluster",
          "stationcontroller": "tests/e2e/test_windows_winrm.py::test_the_stationcontroller_update_on_three_hosts",
          "model-template": "tests/e2e/test_model_template.py::test_the_template_example_is_what_init_makes_now"}
# examples that are not specs: GitHub workflows, checked against action.yml
NOT_SPECS = {"github": "tests/e2e/test_gitops.py::test_action_yml_is_a_valid_composite_action"}


def test_remote_examples_are_covered() -> None:
    for name, test in {**REMOTE, **NOT_SPECS}.items():
        path, _, func = test.partition("::")
        assert (ROOT / "examples" / name).is_dir()
        assert f"def {func}(" in (ROOT / path).read_text()


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_and_plans(example: Path, tmp_path: Path) -> None:
    if example.name in NOT_SPECS:
        return
    env = {"RECON_QUICKSTART_ROOT": str(tmp_path / "root")}
    got = recon("validate", str(example), cwd=tmp_path, env=env)
    assert got.rc == 0, got.text
    if example.name in REMOTE:
        return
    got = recon("plan", str(example), "--detailed-exitcode", cwd=tmp_path, env=env)
    assert got.rc in (0, 2), got.text
    assert "Plan:" in got.out
