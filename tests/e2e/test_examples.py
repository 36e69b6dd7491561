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
# examples that are not specs: the GitHub workflows, each run job by job through the runner stand-in
NOT_SPECS = {"github": "tests/e2e/test_workflows.py::"
                       "test_plan_on_a_pull_request_then_apply_on_merge_then_the_nightly_drift",
             "kubernetes": "tests/e2e/test_shards.py::"
                           "test_the_kubernetes_drift_cronjob_validates_offline_applies_with_kubectl_and_its_command_"
                           "covers_every_shard"}


def test_remote_examples_are_covered() -> None:
    for name, test in {**REMOTE, **NOT_SPECS}.items():
        path, _, func = test.partition("::")
        assert (ROOT / "examples" / name).is_dir()
        assert f"def {func}(" in (ROOT / path).read_text()


def test_every_example_workflow_is_run_by_the_runner_stand_in() -> None:
    """Issue 22 (10): the GitHub example was skipped here; each of its workflows is now run as GitHub runs it."""
    runs = (ROOT / "tests" / "e2e" / "test_workflows.py").read_text()
    workflows = sorted(p.name for p in (ROOT / "examples" / "github").glob("*.yml"))
    assert workflows and [w for w in workflows if f'EXAMPLES / "{w}"' not in runs] == []


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


def test_no_docker_engine_is_one_message_saying_where_recon_looked_and_what_to_do(tmp_path: Path) -> None:
    """Issue 22 (4): without a Docker engine the plan printed a raw exception tuple, no fix, no DOCKER_HOST."""
    for host, why in (("unix:///nonexistent/docker.sock", "No such file or directory"),
                      (f"tcp://127.0.0.1:{_closed_port()}", "Connection refused")):
        got = recon("plan", str(ROOT / "examples" / "model-docker"), cwd=tmp_path, env={"DOCKER_HOST": host})
        assert got.rc == 1, got.text
        assert f"no Docker engine answers at {host} ({why})" in got.err and "set DOCKER_HOST" in got.err, got.err
        assert "Connection aborted" not in got.err and "Traceback" not in got.text


def test_an_unreachable_winrm_host_says_why(tmp_path: Path) -> None:
    """Issue 22 (8): an unreachable WinRM host said only 'ConnectionError'."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "g.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: win}\nspec:\n  connection: winrm\n"
        "  winrm: {user: Administrator, password: {env: P}, transport: ntlm, scheme: http}\n"
        f"  hosts: [{{name: w1, address: 127.0.0.1, port: {_closed_port()}}}]\n---\n"
        "apiVersion: recon/v1\nkind: HostState\nmetadata: {name: s}\nspec:\n  group: win\n"
        "  resources: [{type: service, name: Spooler, state: running}]\n")
    got = recon("plan", cwd=tmp_path, env={"P": "x"})
    assert got.rc == 1 and "cannot be reached (Connection refused)" in got.err and "WinRM" in got.err, got.err


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the test connects
