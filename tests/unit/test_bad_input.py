"""Bad specs: one clear message naming file, line and field, a fix, exit 1, never a traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from specs.kinds import KINDS

GROUP = """\
apiVersion: recon/v1
kind: HostGroup
metadata: {name: local}
spec:
  hosts: [{name: me}]
"""


def state(resources: str, name: str = "app", extra_meta: str = "") -> str:
    return textwrap.dedent("""\
        apiVersion: recon/v1
        kind: HostState
        metadata:
          name: {name}{extra_meta}
        spec:
          group: local
          resources:
        """).format(name=name, extra_meta=extra_meta) + textwrap.indent(textwrap.dedent(resources), "    ")


BUNDLE = """\
apiVersion: recon/v1
kind: Bundle
metadata: {name: model}
spec:
  source: .
  ref: 127.0.0.1:5000/models/churn:v1
"""

POLICY = """\
apiVersion: recon/v1
kind: Policy
metadata: {name: guard}
spec:
  environments: [{name: prod, match: {labels: {env: prod}}}]
  rules:
    - {name: r1, effect: deny, when: {environments: [production]}}
"""

MODEL = """\
apiVersion: recon/v1
kind: Model
metadata: {name: churn}
spec:
  runtime: docker
  image: churn:1
  port: 18080
"""

CASES = {
    "model-image-and-build": (
        {"m.yaml": MODEL + "  build: {context: .}\n"},
        "m.yaml:4:1: spec: a Model needs exactly one of 'image' or 'build'", None,
    ),
    "model-port-env": (
        {"m.yaml": MODEL + "  env: {PORT: '1'}\n"},
        "m.yaml:8:3: spec.env: environment variable name 'PORT' is not allowed (PORT is recon's own)", None,
    ),
    "model-memory": (
        {"m.yaml": MODEL + "  resources: {memory: 2GB}\n"},
        "m.yaml:8:15: spec.resources.memory: memory '2GB' is not like 256m or 1g", None,
    ),
    "model-runtime": (
        {"m.yaml": MODEL.replace("runtime: docker", "runtime: podman")},
        "m.yaml:5:3: spec.runtime: 'podman' is not a choice here", "use one of: 'docker' or 'kubernetes'",
    ),
    "winrm-basic-over-http": (
        {"g.yaml": "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: win}\nspec:\n  connection: winrm\n"
                   "  winrm: {scheme: http, transport: basic}\n  hosts: [{name: w1}]\n"},
        "g.yaml:6:25: spec.winrm.transport: basic authentication over http sends the password and every command "
        "in clear text", "use scheme: https, or transport: ntlm or kerberos",
    ),
    "model-docker-port": (
        {"m.yaml": MODEL.replace("port: 18080", "port: 80")},
        "m.yaml:4:1: spec: port 80: on docker the replicas listen on this machine's ports port+i, which must be "
        "between 1024 and 65000", None,
    ),
    "model-kubernetes-build": (
        {"m.yaml": MODEL.replace("runtime: docker", "runtime: kubernetes").replace("image: churn:1",
                                                                                  "build: {context: .}")},
        "m.yaml:4:1: spec: build: only for runtime: docker; on kubernetes give an 'image' the cluster can pull", None,
    ),
    "model-kubernetes-settings-on-docker": (
        {"m.yaml": MODEL + "  kubernetes: {namespace: ml}\n"},
        "m.yaml:4:1: spec: 'kubernetes' settings need runtime: kubernetes", None,
    ),
    "model-kubernetes-namespace": (
        {"m.yaml": MODEL.replace("runtime: docker", "runtime: kubernetes") + "  kubernetes: {namespace: ML_prod}\n"},
        "m.yaml:8:16: spec.kubernetes.namespace: namespace 'ML_prod' is not a DNS label", None,
    ),
    "model-kubeconfig-missing": (
        {"m.yaml": MODEL.replace("runtime: docker", "runtime: kubernetes") + "  kubernetes: {kubeconfig: kc.yaml}\n"},
        "m.yaml:8:16: spec.kubernetes.kubeconfig: no kubeconfig at specs/kc.yaml", "point it at a kubeconfig file",
    ),
    "policy-unknown-environment": (
        {"p.yaml": POLICY},
        "p.yaml:7:54: spec.rules[0].when.environments[0]: no Policy declares environment 'production'",
        "use one of: prod",
    ),
    "policy-bad-effect": (
        {"p.yaml": POLICY.replace("effect: deny", "effect: block")},
        "p.yaml:7:18: spec.rules[0].effect: 'block' is not a choice here", "use one of: 'allow' or 'deny'",
    ),
    "policy-two-conditions": (
        {"p.yaml": POLICY.replace("environments: [production]", "field: {path: mode, above: 1, below: 2}")},
        "p.yaml:7:39: spec.rules[0].when.field: a field condition needs exactly one of", None,
    ),
    "bundle-ref-without-registry": (
        {"b.yaml": BUNDLE.replace("127.0.0.1:5000/models/churn:v1", "models/churn:v1")},
        "b.yaml:6:3: spec.ref: 'models/churn:v1' names no registry host", "e.g. 127.0.0.1:5000/models/churn:v1",
    ),
    "bundle-ref-bad-tag": (
        {"b.yaml": BUNDLE.replace(":v1", ":v1!")},
        "b.yaml:6:3: spec.ref: '127.0.0.1:5000/models/churn:v1!': tag 'v1!' is not valid", None,
    ),
    "bundle-missing-source": (
        {"b.yaml": BUNDLE.replace("source: .", "source: ../nowhere")},
        "b.yaml:5:3: spec.source: directory", "point 'source' at a directory",
    ),
    "bundle-reserved-annotation": (
        {"b.yaml": BUNDLE + "  annotations: {dev.recon.bundle.tree: x}\n"},
        "b.yaml:7:3: spec.annotations: annotation 'dev.recon.bundle.tree' is recon's own", None,
    ),
    "bundle-password-inline": (
        {"b.yaml": BUNDLE + "  credentials: {username: a, password: hunter2}\n"},
        "b.yaml:7:30: spec.credentials.password: expected a mapping, got str (not shown: it may be the secret itself)",
        "a secret is a reference, never the value: {env: NAME} or {file: path}",
    ),
    "alias-bomb": (
        {"a.yaml": "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{k}: &{k} [{', '.join(['*' + p] * 9)}]\n" for p, k in zip("abcdefgh", "bcdefghi", strict=True))},
        "a.yaml:1:1: the document holds more than 200000 values once its aliases are expanded", None,
    ),
    "deep-nesting": ({"a.yaml": "a: " + "[" * 5000 + "]" * 5000 + "\n"},
                     "a.yaml:1:1: the document is nested deeper than 64 levels", None),
    "long-integer": (
        {"a.yaml": "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: x}\nspec: {concurrency: " + "9" * 6000
                   + "}\n"},
        "a.yaml:1:1: invalid YAML value: Exceeds the limit (4300 digits) for integer string conversion",
        "write the value as a quoted string, or a smaller number",
    ),
    "bad-yaml": (
        {"a.yaml": "apiVersion: recon/v1\nkind: [HostState\nmetadata: {}\n"},
        "a.yaml:3:9: invalid YAML", "fix the YAML syntax",
    ),
    "empty-file": ({"a.yaml": "# nothing here\n"}, "a.yaml:1:1: the file holds no spec", "add a document"),
    "unknown-kind": (
        {"a.yaml": "apiVersion: recon/v1\nkind: Hostgroup\nmetadata: {name: x}\nspec: {}\n"},
        "a.yaml:2:1: kind: unknown kind 'Hostgroup'", "use one of: " + ", ".join(sorted(KINDS)),
    ),
    "bad-api-version": (
        {"g.yaml": GROUP.replace("recon/v1", "recon/v2")},
        "g.yaml:1:1: apiVersion: unknown apiVersion 'recon/v2'", "use 'apiVersion: recon/v1'",
    ),
    "unknown-field": (
        {"g.yaml": GROUP, "s.yaml": state("- type: file\n  path: /x\n  contnet: hi\n")},
        "s.yaml:10:7: spec.resources[0].contnet: unknown field 'contnet'", "did you mean 'content'?",
    ),
    "wrong-type-mode": (
        {"g.yaml": GROUP, "s.yaml": state("- type: file\n  path: /x\n  content: hi\n  mode: 0644\n")},
        "s.yaml:11:7: spec.resources[0].mode: expected a string, got int 644", 'mode: "0644"',
    ),
    "missing-field": (
        {"g.yaml": GROUP, "s.yaml": state("- type: file\n  content: hi\n")},
        "s.yaml:8:7: spec.resources[0].path: required field 'path' is missing", "add 'path:' here",
    ),
    "unknown-resource-type": (
        {"g.yaml": GROUP, "s.yaml": state("- type: fil\n  path: /x\n")},
        "s.yaml:8:7: spec.resources[0]: unknown type 'fil'", "'file', 'directory', 'command'",
    ),
    "relative-path": (
        {"g.yaml": GROUP, "s.yaml": state("- type: directory\n  path: srv/app\n")},
        "s.yaml:9:7: spec.resources[0].path: path 'srv/app' is not absolute", "start it with '/'",
    ),
    "duplicate-name": (
        {"g.yaml": GROUP, "s.yaml": state("- type: directory\n  path: /a\n"),
         "t.yaml": state("- type: directory\n  path: /b\n")},
        "t.yaml:4:3: metadata.name: HostState/app is declared twice (first at ", "its own metadata.name",
    ),
    "duplicate-yaml-key": (
        {"g.yaml": GROUP + "  hosts: []\n"},
        "g.yaml:6:3: invalid YAML: found duplicate key \"hosts\"", "each key may appear once",
    ),
    "missing-group": (
        {"s.yaml": state("- type: directory\n  path: /a\n")},
        "s.yaml:6:3: spec.group: refers to HostGroup/local, which no spec declares", "add a HostGroup spec",
    ),
    "cycle": (
        {"g.yaml": GROUP,
         "a.yaml": state("- type: directory\n  path: /a\n", "a", "\n  dependsOn: [HostState/b]"),
         "b.yaml": state("- type: directory\n  path: /b\n", "b", "\n  dependsOn: [HostState/a]")},
        "a.yaml:5:3: metadata.dependsOn: dependency cycle: HostState/a -> HostState/b -> HostState/a",
        "remove one of these dependsOn",
    ),
    "bad-depends-on": (
        {"g.yaml": GROUP, "a.yaml": state("- type: directory\n  path: /a\n", "a", "\n  dependsOn: [b]")},
        "a.yaml:5:15: metadata.dependsOn[0]: 'b' is not a spec address", "write it as Kind/name",
    ),
    "unguarded-command": (
        {"g.yaml": GROUP, "s.yaml": state("- type: command\n  id: hi\n  run: echo hi\n")},
        "s.yaml:8:7: spec.resources[0]: command 'hi' would run on every apply", "add 'creates: PATH'",
    ),
    "notify-unknown": (
        {"g.yaml": GROUP, "s.yaml": state("- type: file\n  path: /x\n  content: hi\n  notify: [relod]\n")},
        "s.yaml:11:16: spec.resources[0].notify[0]: notifies 'relod', which is no command", "name the id",
    ),
    "not-a-mapping": ({"a.yaml": "- just\n- a list\n"}, "a.yaml:1:1: a spec must be a mapping, got list",
                      "start the document with"),
    "source-missing": (
        {"g.yaml": GROUP, "s.yaml": state("- type: file\n  path: /x\n  source: nope.txt\n")},
        "s.yaml:10:7: spec.resources[0].source: source file 'nope.txt' does not exist", "relative to",
    ),
    "content-and-source": (
        {"g.yaml": GROUP, "s.yaml": state("- type: file\n  path: /x\n")},
        "s.yaml:8:7: spec.resources[0]: a file needs exactly one of 'content', 'source' or 'contentFrom'",
        "give the text",
    ),
    "bad-batch": (
        {"g.yaml": GROUP, "s.yaml": state("- type: directory\n  path: /a\n").replace(
            "  group: local\n", "  group: local\n  strategy: {batch: ten%}\n")},
        "s.yaml:7:14: spec.strategy.batch: batch 'ten%' is neither a number nor a percentage", '"25%"',
    ),
    "bad-package-name": (
        {"g.yaml": GROUP, "s.yaml": state("- type: package\n  name: 'bad name'\n")},
        "s.yaml:9:7: spec.resources[0].name: 'bad name' is not a valid value", "it must match the pattern",
    ),
    "bad-spec-name": (
        {"g.yaml": GROUP.replace("name: local}", "name: Local_Group!}")},
        "g.yaml:3:12: metadata.name: 'Local_Group!' is not a valid name", "use lower-case letters",
    ),
    "wrong-type-labels": (
        {"g.yaml": GROUP.replace("metadata: {name: local}", "metadata: {name: local, labels: [a]}")},
        "g.yaml:3:25: metadata.labels: expected a mapping, got list", None,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    files, message, hint = CASES[name]
    for fname, text in files.items():
        (tmp_path / "specs" / fname).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "specs" / fname).write_text(text)
    for command in (["validate"], ["plan"]):
        got = cli(*command, "specs")
        assert got.rc == 1, got.text
        assert "Traceback" not in got.text
        assert "specs/" + message in got.err, got.err
        if hint:
            assert hint in got.err
        assert "in the specs" in got.err
        assert "hunter2" not in got.text  # a secret written inline is never echoed back


def test_all_problems_reported_together(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "g.yaml").write_text(GROUP)
    (specs / "a.yaml").write_text(state("- type: file\n  path: /x\n  content: hi\n  mode: 644\n"))
    (specs / "b.yaml").write_text("kind: Nope\n")
    got = cli("validate", "specs")
    assert got.rc == 1
    assert "specs/a.yaml:11:7: spec.resources[0].mode" in got.err
    assert "specs/b.yaml:1:1: apiVersion: required field 'apiVersion' is missing" in got.err
    assert "4 problems in the specs" in got.err


def test_no_specs_directory(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    got = cli("plan")
    assert got.rc == 1
    assert "specs: no such file or directory" in got.err
    assert "Traceback" not in got.text


def test_unknown_option_is_exit_1_not_2(cli) -> None:  # type: ignore[no-untyped-def]
    got = cli("plan", "--bogus")
    assert got.rc == 1
    assert "No such option: --bogus" in got.err


def test_environment_is_checked_by_plan_not_validate(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("RECON_TEST_UNSET_ROOT", raising=False)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "g.yaml").write_text(GROUP.replace("[{name: me}]", "[{name: me, root: \"${RECON_TEST_UNSET_ROOT}\"}]"))
    assert cli("validate", "specs").rc == 0
    got = cli("plan", "specs")
    assert got.rc == 1
    assert "specs/g.yaml:5:22: spec.hosts[0].root: environment variable RECON_TEST_UNSET_ROOT is not set" in got.err


def test_a_file_that_does_not_load_hides_no_reference_errors_of_its_own(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "g.yaml").write_text(GROUP + "  bad: [\n")
    (specs / "s.yaml").write_text(state("- type: directory\n  path: /a\n"))
    got = cli("validate", "specs")
    assert got.rc == 1 and "invalid YAML" in got.err
    assert "which no spec declares" not in got.err


def test_an_invalid_spec_is_not_reported_again_by_its_references(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "g.yaml").write_text(GROUP.replace("hosts: [{name: me}]", "hosts: [{name: me}]\n  colour: red"))
    (specs / "s.yaml").write_text(state("- type: directory\n  path: /a\n"))
    got = cli("validate", "specs")
    assert got.rc == 1
    assert "unknown field 'colour'" in got.err
    assert "which no spec declares" not in got.err
    assert "1 problem in the specs" in got.err


@pytest.mark.parametrize(("batch", "targets", "size"), [(2, 5, 2), ("25%", 5, 2), ("100%", 5, 5), ("1%", 5, 1)])
def test_strategy_batch_size(batch: int | str, targets: int, size: int) -> None:
    from specs.base import Strategy

    assert Strategy(batch=batch).size(targets) == size


def test_a_directory_without_specs_points_at_the_directories_that_hold_some(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22 (1): `recon validate` from recon's own repository used its `specs/` package, and the fix it
    suggested was the directory that failed."""
    from specs.loader import find_spec_files

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "code.py").write_text("")
    (tmp_path / "examples" / "quickstart").mkdir(parents=True)
    (tmp_path / "examples" / "quickstart" / "a.yaml").write_text("apiVersion: recon/v1\nkind: HostGroup\n")
    monkeypatch.chdir(tmp_path)
    _, [problem] = find_spec_files(["specs"])
    hint = problem.hint or ""
    assert "recon plan examples/quickstart" in hint and "`recon plan specs/`" not in hint


def test_a_document_s_own_problems_and_its_missing_reference_are_reported_at_once(tmp_path: Path) -> None:
    """Issue 22 (2): a HostState naming a missing HostGroup was reported only after its other problems were
    fixed."""
    from specs.errors import SpecError
    from specs.project import load_project

    (tmp_path / "s.yaml").write_text("apiVersion: recon/v1\nkind: HostState\nmetadata: {name: s}\nspec:\n"
                                     "  group: missing\n  resources: [{type: file, path: /x, content: y, colour: 1}]\n")
    with pytest.raises(SpecError) as got:
        load_project([str(tmp_path / "s.yaml")], preflight=False)
    text = "\n".join(f"{d.summary} {d.field}" for d in got.value.diagnostics)
    assert "colour" in text and "refers to HostGroup/missing, which no spec declares" in text, text


def test_docker_models_whose_ports_overlap_are_refused_naming_both(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A successor that could not bind its port (another Model's replica held it) answered that Model's health
    check, so the healthy old replica was removed: each Docker Model takes [port, port + 2 x replicas)."""
    def model(name: str, port: int, replicas: int) -> str:
        return (f"apiVersion: recon/v1\nkind: Model\nmetadata: {{name: {name}}}\nspec:\n  runtime: docker\n"
                f"  image: img:1\n  replicas: {replicas}\n  port: {port}\n")

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.yaml").write_text(model("a", 20000, 2))
    (tmp_path / "specs" / "b.yaml").write_text(model("b", 20004, 1))  # 20000-20003, then 20004-20005: fine
    assert cli("validate").rc == 0
    (tmp_path / "specs" / "c.yaml").write_text(model("c", 20003, 1))
    got = cli("validate")
    assert got.rc == 1 and "c.yaml:8:3: spec.port: Model c takes ports 20003-20004, which overlap Model a's " \
        "ports 20000-20003" in got.err and "give it a port of 20004 or above" in got.err, got.err
    # a stable endpoint takes its port too: inside a Model's range, or on another's endpoint, is refused
    (tmp_path / "specs" / "c.yaml").write_text(model("c", 20006, 1) + "  endpoint: {port: 20001}\n")
    got = cli("validate")
    assert got.rc == 1 and "c.yaml:9:14: spec.endpoint.port: Model c's endpoint takes port 20001, which overlaps " \
        "Model a's ports 20000-20003" in got.err, got.err
    (tmp_path / "specs" / "c.yaml").write_text(model("c", 20006, 1) + "  endpoint: {port: 20010}\n")
    assert cli("validate").rc == 0


def test_an_endpoint_is_for_docker_models_and_an_address_is_an_ipv4_one(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.yaml").write_text(
        "apiVersion: recon/v1\nkind: Model\nmetadata: {name: a}\nspec:\n  runtime: kubernetes\n  image: img:1\n"
        "  port: 80\n  endpoint: {port: 20100}\n")
    got = cli("validate")
    assert got.rc == 1 and "a.yaml:4:1: spec: endpoint: only for runtime: docker; on kubernetes the Model's " \
        "Service is its stable address" in got.err and "Traceback" not in got.err, got.err
    (tmp_path / "specs" / "a.yaml").write_text(
        "apiVersion: recon/v1\nkind: Model\nmetadata: {name: a}\nspec:\n  runtime: docker\n  image: img:1\n"
        "  port: 20000\n  endpoint: {port: 20100, address: localhost}\n")
    got = cli("validate")
    assert got.rc == 1 and "a.yaml:8:27: spec.endpoint.address: address 'localhost' is not an IPv4 address" \
        in got.err, got.err


@pytest.mark.parametrize(("text", "said"), [
    ("apiVersion: v1\nclusters: [{name: c, cluster: {server: x]\n", "not valid YAML"),
    ("- a\n- b\n", "cannot be used"),
    ("apiVersion: v1\nclusters: 5\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
     "cannot be used"),
])
def test_a_kubeconfig_that_is_not_one_is_one_clear_error(text: str, said: str, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A kubeconfig the client cannot read (not YAML, not a mapping, a list that is a number) was an internal
    error with the YAML parser's traceback; it is one message naming the file, and exit 1."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "kc.yaml").write_text(text)
    (tmp_path / "specs" / "m.yaml").write_text(MODEL.replace("runtime: docker", "runtime: kubernetes")
                                               + "  kubernetes: {kubeconfig: ../kc.yaml}\n")
    got = cli("plan", "specs")
    assert got.rc == 1 and "Traceback" not in got.text and "internal error" not in got.text, got.text
    assert f"the kubeconfig {tmp_path / 'kc.yaml'} cannot be used" in got.err and said in got.err, got.err
