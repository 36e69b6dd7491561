"""The typed actions of `recon do`: parameters checked like spec fields, one clear message per bad input."""

from __future__ import annotations

import json

import pytest

from specs.actions import ACTIONS, LogsParams, ScaleParams, action
from specs.errors import UsageError


def test_parameters_are_typed_and_each_bad_one_is_named() -> None:
    scale = ACTIONS["scale"]
    assert scale.parse({"replicas": "3"}) == ScaleParams(replicas=3)
    for given, said in (({"replicas": "three"}, "scale --replicas 'three': input should be a valid integer"),
                        ({"replicas": "101"},
                         "scale --replicas '101': input should be less than or equal to 100. --replicas: how many"),
                        ({}, "scale --replicas is required"),
                        ({"replicas": "2", "tail": "5"}, "scale takes --replicas, not --tail")):
        with pytest.raises(UsageError) as exc:
            scale.parse(given)
        assert said in str(exc.value)
    logs = ACTIONS["logs"].parse({"since": "10m", "tail": "20"})
    assert isinstance(logs, LogsParams) and logs.since_seconds == 600 and logs.tail == 20
    with pytest.raises(UsageError, match="'ten minutes' is not a duration such as 30s"):
        ACTIONS["logs"].parse({"since": "ten minutes"})
    with pytest.raises(UsageError, match="restart takes no parameters, not --replicas"):
        ACTIONS["restart"].parse({"replicas": "2"})


def test_an_unknown_action_is_named_with_the_closest_and_the_list() -> None:
    with pytest.raises(UsageError, match=r"no action 'restrat'; did you mean restart\?"):
        action("restrat")
    with pytest.raises(UsageError, match=r"no action 'reboot'\. The actions are restart, scale, logs, health"):
        action("reboot")


def test_do_list_and_bad_targets(cli) -> None:  # type: ignore[no-untyped-def]
    listed = cli("do", "--list", "--json")
    assert listed.rc == 0 and {a["name"] for a in json.loads(listed.out)} == {"restart", "scale", "logs", "health"}
    assert "scale (Model, risky)" in cli("do", "--list").out
    missing = cli("do", "restart")
    assert missing.rc == 1 and "give an action and a target" in missing.err


def test_a_scale_whose_ports_would_reach_another_model_is_refused_before_anything(tmp_path, cli) -> None:  # type: ignore[no-untyped-def]
    """Each Docker Model takes port .. port + 2 x replicas - 1 (specs/model.py); a scale past that is refused
    naming the other Model, with nothing read or changed (no engine is asked: there is none here)."""
    def model(name: str, port: int) -> str:
        return (f"apiVersion: recon/v1\nkind: Model\nmetadata: {{name: {name}}}\nspec:\n  runtime: docker\n"
                f"  image: img:1\n  replicas: 1\n  port: {port}\n")

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.yaml").write_text(model("a", 20000))
    (tmp_path / "specs" / "b.yaml").write_text(model("b", 20002))
    got = cli("do", "scale", "a", "--replicas", "2", "--yes")
    assert got.rc == 1 and "scale Model/a: Model b takes ports 20002-20003, which overlap Model a's ports 20000-20003" \
        in got.err, got.err
