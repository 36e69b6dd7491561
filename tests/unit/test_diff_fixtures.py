"""The pure diff of every host resource type, from data fixtures: resource, live state, expected change.

Each file in tests/fixtures/diff/<type>/ holds `resource` (as in a HostState), `live` (as the
fact script reports it, or null), optional `notified_by`/`changed` for commands, and `expect`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from ruamel.yaml import YAML

from providers.hosts.model import HostInfo, HostResource, Payload
from providers.hosts.posix.resources import MODULES, command, service
from specs.hoststate import CommandResource, FileResource, Resource, ServiceResource

FIXTURES = Path(__file__).parent.parent / "fixtures" / "diff"
CASES = sorted(FIXTURES.glob("*/*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    return YAML(typ="safe").load(path.read_text())


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_diff_fixture(path: Path) -> None:
    case = _load(path)
    res = TypeAdapter(Resource).validate_python(case["resource"])
    content = Payload.of_bytes(res.content.encode()) if isinstance(res, FileResource) and res.content is not None \
        else None
    desired = HostResource(res, HostInfo("h", "local", None), f"{res.type}:{res.key()}", content,
                      tuple(case.get("notified_by", ())))
    if isinstance(res, CommandResource):
        action, reason, fields = command.diff(desired, case["live"], case.get("changed", {}))
    elif isinstance(res, ServiceResource):
        action, reason, fields = service.diff(desired, case["live"], case.get("changed", {}))
    else:
        action, reason, fields = MODULES[res.type].diff(desired, case["live"])  # type: ignore[attr-defined]
    expect = case["expect"]
    assert action == expect["action"]
    assert reason == expect["reason"]
    assert [[f.path, f.before, f.after] for f in fields] == expect["fields"]


def test_every_resource_type_has_fixtures() -> None:
    assert {p.parent.name for p in CASES} == set(MODULES)
