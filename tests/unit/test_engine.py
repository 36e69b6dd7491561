"""The engine's promises, against a fake provider (tests/fake_provider.py), in milliseconds: plans re-plan
empty after apply, waves follow dependsOn, a stale plan changes nothing, a failure skips what depends on it,
a change that does not converge fails, rollouts stop after maxFailures, locks come from the provider,
policy decides first-match, unreachable targets are one error. The end-to-end tests stay beside these."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import providers
from providers.context import Context
from reconciler import executor, planner, policy
from reconciler.journal import Journal
from reconciler.plan import Plan
from specs.errors import StalePlanError, TransportError
from specs.project import Project, load_project
from tests import fake_provider
from tests.fake_provider import World

GROUP = """\
apiVersion: recon/v1
kind: HostGroup
metadata: {name: web}
spec:
  hosts: [{name: a1}, {name: a2}, {name: b1}]
"""

PROD = '{name: prod, match: {specs: ["HostState/app"]}, confirm: true}'


def state(name: str, files: dict[str, str], depends: str = "", strategy: str = "") -> str:
    resources = "".join(f"    - {{type: file, path: {p}, content: {c!r}}}\n" for p, c in files.items())
    meta = f"\n  dependsOn: [{depends}]" if depends else ""
    return (f"apiVersion: recon/v1\nkind: HostState\nmetadata:\n  name: {name}{meta}\nspec:\n  group: web\n"
            f"{textwrap.indent(strategy, '  ')}  resources:\n{resources}")


def policy_doc(environments: str = "", rules: str = "") -> str:
    """A Policy spec with these YAML list items (one per line) under environments and rules."""
    def block(name: str, items: str) -> str:
        return f"  {name}:\n" + "".join(f"    - {line}\n" for line in items.strip().splitlines()) if items else ""
    return "apiVersion: recon/v1\nkind: Policy\nmetadata: {name: rules}\nspec:\n" + block(
        "environments", environments) + block("rules", rules)


@pytest.fixture(autouse=True)
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setitem(providers.PROVIDERS, "HostState",
                        providers.Registration("tests.fake_provider:FakeProvider", frozenset({"locking"})))
    monkeypatch.setattr(providers, "_loaded", {})
    fresh = World()
    monkeypatch.setattr(fake_provider, "WORLD", fresh)
    yield fresh


def project(tmp_path: Path, *docs: str) -> Project:
    for i, doc in enumerate((GROUP, *docs)):
        (tmp_path / f"{i}.yaml").write_text(doc)
    return load_project([str(tmp_path)], preflight=False)


def plan(p: Project, tmp_path: Path) -> Plan:
    return planner.make_plan(p, Context(), [str(tmp_path)])


def apply(p: Project, the_plan: Plan, tmp_path: Path) -> executor.ApplyReport:
    journal = Journal(tmp_path / ".recon", the_plan.plan_id)
    try:
        return executor.apply(the_plan, p, Context(), journal)
    finally:
        journal.close()


def test_apply_then_replan_is_empty(tmp_path: Path, fake: World) -> None:
    p = project(tmp_path, state("app", {"/etc/a": "one", "/etc/b": "two"}))
    first = plan(p, tmp_path)
    assert sorted(first.counts().items()) == [("create", 6)]
    report = apply(p, first, tmp_path)
    assert not report.failed and len(report.succeeded) == 6
    assert fake.files["a2"] == {"/etc/a": "one", "/etc/b": "two"}
    assert plan(p, tmp_path).pending == []


def test_each_target_gets_its_changes_in_one_call_and_waves_follow_depends_on(tmp_path: Path, fake: World) -> None:
    p = project(tmp_path, state("late", {"/b": "2"}, depends="HostState/early"), state("early", {"/a": "1"}))
    apply(p, plan(p, tmp_path), tmp_path)
    applies = [(target, ids) for verb, target, ids in fake.calls if verb == "apply"]
    assert len(applies) == 6  # one per spec and target
    specs = [ids[0].split("/file:")[0] for _, ids in applies]
    assert specs == ["HostState/early"] * 3 + ["HostState/late"] * 3


def test_a_stale_plan_is_refused_whole_and_nothing_changes(tmp_path: Path, fake: World) -> None:
    p = project(tmp_path, state("app", {"/etc/a": "one"}))
    the_plan = plan(p, tmp_path)
    fake.files["a2"] = {"/etc/a": "someone else's"}
    with pytest.raises(StalePlanError) as err:
        apply(p, the_plan, tmp_path)
    assert err.value.problems == ["HostState/app/file:/etc/a@a2: live state moved since the plan (now: update, "
                                  "/etc/a differs)"]
    assert [c for c in fake.calls if c[0] == "apply"] == []


def test_a_changed_spec_makes_a_saved_plan_stale(tmp_path: Path) -> None:
    p = project(tmp_path, state("app", {"/etc/a": "one"}))
    the_plan = plan(p, tmp_path)
    p2 = project(tmp_path, state("app", {"/etc/a": "two"}))
    with pytest.raises(StalePlanError) as err:
        apply(p2, the_plan, tmp_path)
    assert any("HostState/app: the spec changed" in x for x in err.value.problems)


def test_a_failure_skips_every_spec_that_depends_on_it_and_the_other_targets_go_on(tmp_path: Path,
                                                                                   fake: World) -> None:
    p = project(tmp_path, state("base", {"/a": "1"}), state("app", {"/b": "2"}, depends="HostState/base"))
    fake.fail.add("HostState/base/file:/a@a2")
    results = {r.change_id: r for r in apply(p, plan(p, tmp_path), tmp_path).results}
    assert not results["HostState/base/file:/a@a2"].ok
    assert results["HostState/base/file:/a@a1"].ok and results["HostState/base/file:/a@b1"].ok
    for host in ("a1", "a2", "b1"):
        assert results[f"HostState/app/file:/b@{host}"].message == "skipped: a spec it depends on failed"
    assert "/b" not in fake.files.get("a1", {})


def test_a_change_that_reports_success_but_does_not_converge_fails(tmp_path: Path, fake: World) -> None:
    p = project(tmp_path, state("app", {"/a": "1"}))
    fake.lie.add("HostState/app/file:/a@b1")
    results = {r.change_id: r for r in apply(p, plan(p, tmp_path), tmp_path).results}
    lied = results["HostState/app/file:/a@b1"]
    assert not lied.ok and lied.message == "applied, but a re-read still differs: /a differs"
    assert results["HostState/app/file:/a@a1"].ok


def test_a_rollout_stops_after_max_failures(tmp_path: Path, fake: World) -> None:
    p = project(tmp_path, state("app", {"/a": "1"}, strategy="strategy: {batch: 1, maxFailures: 0}\n"))
    fake.fail.add("HostState/app/file:/a@a1")
    results = {r.change_id: r for r in apply(p, plan(p, tmp_path), tmp_path).results}
    assert not results["HostState/app/file:/a@a1"].ok
    for host in ("a2", "b1"):
        assert results[f"HostState/app/file:/a@{host}"].message == (
            "skipped: the rollout of HostState/app stopped after 1 failed targets (maxFailures 0)")
    assert [t for verb, t, _ in fake.calls if verb == "apply"] == ["a1"]


def test_locks_are_named_by_the_provider_or_else_by_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = project(tmp_path, state("app", {"/a": "1"}))
    items = planner.expand(p)
    assert executor.lock_keys([(prov, inst, None) for prov, inst in items]) == ["fakegroup/a", "fakegroup/b"]

    class Plain(fake_provider.FakeProvider):
        lock_key = None  # type: ignore[assignment]  # no locking ability

    plain = Plain()
    assert executor.lock_keys([(plain, inst, None) for _, inst in items]) == ["HostState/app"]


def test_policy_is_first_match_and_an_allow_before_a_deny_carves_an_exception(tmp_path: Path) -> None:
    pol = policy_doc(PROD, """
{name: a1-ok, effect: allow, when: {targets: ["a1"]}}
{name: no-prod, effect: deny, when: {environments: [prod]}, message: frozen}""")
    p = project(tmp_path, state("app", {"/a": "1"}), pol)
    changes = {c.id: c for c in plan(p, tmp_path).changes}
    assert changes["HostState/app/file:/a@a1"].denied == ""
    assert changes["HostState/app/file:/a@a2"].denied == "Policy/rules rule no-prod: frozen"
    assert "prod needs confirmation" in changes["HostState/app/file:/a@a1"].risks
    assert policy.confirmations(list(changes.values()), p) == ["prod"]


def test_an_unreachable_target_fails_the_plan_with_its_name(tmp_path: Path, fake: World) -> None:
    p = project(tmp_path, state("app", {"/a": "1"}))
    fake.lost.add("b1")
    with pytest.raises(TransportError, match="b1: cannot be reached"):
        plan(p, tmp_path)


def test_a_provider_without_the_orphans_ability_is_never_asked_for_orphans(tmp_path: Path) -> None:
    p = project(tmp_path, state("app", {"/a": "1"}))
    assert planner.orphans(p, Context(), prune=True) == []


def test_the_gate_decides_without_a_terminal_and_asks_only_on_one(tmp_path: Path) -> None:
    from reconciler.gate import decide

    pol = policy_doc(PROD)
    p = project(tmp_path, state("app", {"/a": "1"}), state("other", {"/b": "2"}), pol)
    the_plan = plan(p, tmp_path)
    envs = policy.confirmations(the_plan.pending, p)
    pid = the_plan.plan_id
    assert decide(the_plan, envs, saved=False, auto_approve=True, confirm=None, terminal=False).reason == (
        f"plan {pid} changes prod, which needs a confirmation: re-run with --confirm {pid} (--auto-approve is not "
        "enough)")
    assert decide(the_plan, envs, saved=False, auto_approve=False, confirm=pid, terminal=False).verdict == "go"
    other = decide(the_plan, envs, saved=True, auto_approve=True, confirm="0123abcd", terminal=True)
    assert other.verdict == "refuse" and "confirms another plan" in other.reason
    ask = decide(the_plan, envs, saved=False, auto_approve=False, confirm=None, terminal=True)
    assert (ask.verdict, ask.answer, ask.cancelled) == ("ask-environments", "prod",
                                                        "apply cancelled: the answer was not 'prod'")
    assert decide(the_plan, [], saved=False, auto_approve=False, confirm=None, terminal=True).verdict == "ask-yes"
    assert decide(the_plan, [], saved=True, auto_approve=False, confirm=None, terminal=False).verdict == "go"
    assert "no terminal to ask on" in decide(the_plan, [], saved=False, auto_approve=False, confirm=None,
                                             terminal=False).reason


def test_the_gate_refuses_a_denied_plan_and_records_it(tmp_path: Path) -> None:
    from reconciler import gate
    from reconciler.audit import open_audit
    from specs.errors import RefusedError

    pol = policy_doc(rules='{name: frozen, effect: deny, when: {targets: ["b1"]}}')
    p = project(tmp_path, state("app", {"/a": "1"}), pol)
    the_plan = plan(p, tmp_path)
    asked: list[object] = []
    with pytest.raises(RefusedError, match=r"1 change\(s\) denied by policy \(Policy/rules rule frozen\)"):
        gate.apply(the_plan, p, Context(), tmp_path / ".recon", saved=False, auto_approve=True, confirm=None,
                   request_id=None, terminal=True, ask=lambda d: asked.append(d) or True)
    assert asked == []
    audit = open_audit(tmp_path / ".recon")
    try:
        (run,) = audit.runs()
    finally:
        audit.close()
    assert (run["command"], run["outcome"]) == ("apply", "refused")
