"""The built-in planner: requests in plain English, read by rules; no network, no model.

    start|stop|restart SERVICE on GROUP          install|update|remove PACKAGE [to VERSION] on GROUP
    update NAME on GROUP from FILE              (a file a HostState of the group already manages)
    deploy FILE to PATH on GROUP                 kill|stop process NAME on GROUP (Windows)
    deploy MODEL [version] TAG [in ENV]          scale MODEL to N [in ENV]
    roll back MODEL [to TAG] [in ENV]            publish BUNDLE as TAG

Verbs may be misspelt a little; groups are found by name, labels or a host's name, models and
bundles by name within the environment named. What is missing or could mean several things becomes
a question: a target is never guessed.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path, PureWindowsPath
from typing import Any

from reconciler.draft.catalog import Catalog, close, words
from reconciler.draft.model import Draft, Edit, Loc, set_at
from specs.hostgroup import HostGroupSpec
from specs.hoststate import HostStateSpec
from specs.project import Spec

VERBS = {"start": "start", "stop": "stop", "restart": "restart", "reload": "restart", "bounce": "restart",
         "install": "install", "add": "install", "update": "update", "upgrade": "update", "remove": "remove",
         "uninstall": "remove", "purge": "remove", "deploy": "deploy", "release": "deploy", "ship": "deploy",
         "copy": "deploy", "put": "deploy", "push": "deploy", "scale": "scale", "rollback": "rollback",
         "revert": "rollback", "publish": "publish", "kill": "kill", "delete": "delete", "destroy": "delete",
         "wipe": "delete", "drop": "delete"}
HELP = ("I understand: start, stop, restart SERVICE on GROUP; install, update, remove PACKAGE on GROUP; deploy FILE "
        "to PATH on GROUP; deploy, scale, roll back MODEL; publish BUNDLE as TAG")
ALIASES = {"apache": ["apache2", "httpd"], "ssh": ["ssh", "sshd"], "mysql": ["mysql", "mariadb"]}
_PATHLIKE = re.compile(r"^(?:[A-Za-z]:[\\/]|/|\.{0,2}/|[\w.-]+[/\\])\S*$|^\S+\.[A-Za-z0-9]{1,5}$")


class RuleDrafter:
    def draft(self, request: str, catalog: Catalog, specs_dir: Path, today: str) -> Draft:
        return _Rules(request, catalog, specs_dir, today).run()


class _Rules:
    def __init__(self, request: str, catalog: Catalog, specs_dir: Path, today: str) -> None:
        self.raw = " ".join(request.split())
        self.catalog, self.specs_dir, self.today = catalog, specs_dir, today.replace("-", "")
        self.out = Draft(request)

    def ask(self, question: str) -> Draft:
        self.out.questions.append(question)
        return self.out

    def run(self) -> Draft:
        text = self.raw
        m = re.match(r"^\s*(roll\s*back|\S+)\s*(.*)$", text, re.I)
        if m is None or not text:
            return self.ask(HELP)
        first = re.sub(r"\s+", "", m.group(1).lower())
        verb = VERBS.get(first) or next((VERBS[v] for v in difflib.get_close_matches(first, VERBS, 1, 0.75)), "")
        rest = m.group(2)
        if not verb:
            return self.ask(f"what should be done: '{m.group(1)}' is no verb I know. {HELP}")
        env, rest = self._environment(rest)
        handler = getattr(self, f"do_{verb}")
        made = handler(rest, env)
        if made.questions and self.stray_env:  # the likelier cause of the question: an environment no Policy has
            names = sorted(self.catalog.environment_names())
            made.questions.insert(0, f"there is no environment '{self.stray_env}': "
                                     + (f"the Policy declares {', '.join(names)}" if names else
                                        "no Policy declares environments in these specs"))
        return made

    # parts of a request

    stray_env = ""  # a trailing "in NAME" that names no environment

    def _example(self, verb: str, tail: str) -> str:
        """A request of this verb with names these specs have (never the words that failed)."""
        models = sorted(s.name for s in self.catalog.specs("Model"))
        envs = sorted(self.catalog.environment_names())
        return f"{verb} {models[0] if models else 'MODEL'} {tail}" + (f" in {envs[0]}" if envs else "")

    def _environment(self, rest: str) -> tuple[str, str]:
        m = re.search(r"\s+(?:in|on|for|to)\s+(?:the\s+)?([A-Za-z][\w-]*)(?:\s+environment)?\s*$", rest, re.I)
        if m:
            names = self.catalog.environment_names()
            hit = next((n for n in sorted(names) if close(n, m.group(1).lower())), "")
            if hit:
                return hit, rest[:m.start()]
            if re.match(r"\s+in\s", rest[m.start():], re.I):
                self.stray_env = m.group(1)
        return "", rest

    @staticmethod
    def _split_target(rest: str) -> tuple[str, str]:
        """(what, where): where follows the last on/at/across/for/from/to that is not part of a path or version."""
        m = re.match(r"^(.*)\s+(?:on|at|across|for|from|to)\s+([^/\\]*?)\s*$", rest, re.I)
        if m and not _PATHLIKE.match(m.group(2).strip()) and not re.fullmatch(r"[\d.]+", m.group(2).strip()):
            return m.group(1).strip(), m.group(2).strip()
        return rest.strip(), ""

    def _group(self, phrase: str) -> Spec | None:
        if not phrase:
            self.ask(f"on which group of hosts? known: {', '.join(s.name for s in self.catalog.specs('HostGroup'))}")
            return None
        found = self.catalog.group(phrase)
        if found.question:
            self.ask(found.question)
        return found.spec

    def _states(self, group: Spec) -> list[Spec]:
        return [s for s in self.catalog.specs("HostState")
                if isinstance(s.body, HostStateSpec) and s.body.group == group.name]

    def _find_resource(self, group: Spec, kind: str, name: str) -> tuple[Spec, int, dict[str, Any]] | None:
        for state in self._states(group):
            for i, res in enumerate(state.doc.data["spec"]["resources"]):
                if res.get("type") != kind:
                    continue
                value = str(res.get("name") or res.get("path") or "")
                stem = PureWindowsPath(value).stem if kind == "file" else value
                if value.lower() == name.lower() or close(stem.lower(), name.lower()) or (
                        kind == "service" and value.lower().startswith(name.lower())):
                    return state, i, res
        return None

    def _windows(self, group: Spec) -> bool:
        return isinstance(group.body, HostGroupSpec) and group.body.windows()

    def _hosts(self, group: Spec) -> str:
        n = len(group.body.hosts) if isinstance(group.body, HostGroupSpec) else 0
        return f"{n} host{'s' if n != 1 else ''} of {group.name}"

    # documents

    def _edit(self, spec: Spec, sets: list[tuple[Loc, Any]]) -> None:
        doc = copy.deepcopy(spec.doc.data)
        for loc, value in sets:
            set_at(doc, loc, value)
        self.out.edits.append(Edit(Path(spec.doc.file), spec.kind, spec.name, doc, new=False, sets=sets))

    def _new_state(self, name: str, group: Spec, resources: list[dict[str, Any]]) -> None:
        name = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:60]
        doc = {"apiVersion": "recon/v1", "kind": "HostState",
               "metadata": {"name": name, "labels": {"drafted-by": "recon"}},
               "spec": {"group": group.name, "resources": resources}}
        self.out.edits.append(Edit(self.specs_dir / f"{name}.yaml", "HostState", name, doc))

    def _upsert(self, group: Spec, kind: str, name: str, fields: dict[str, Any], new_name: str) -> None:
        found = self._find_resource(group, kind, name)
        if found is not None:
            state, i, res = found
            sets: list[tuple[Loc, Any]] = [(("spec", "resources", i, k), v) for k, v in fields.items()
                                           if res.get(k) != v]
            if not sets:
                self.out.notes.append(f"{state.address} already says this ({state.doc.file}); recon plan shows "
                                      "whether the hosts hold it")
            self._edit(state, sets)
        else:
            self._new_state(new_name, group, [{"type": kind, "name": name, **fields}])

    # services

    def _service(self, rest: str) -> tuple[Spec | None, str]:
        obj, phrase = self._split_target(rest)
        name = " ".join(w for w in obj.split() if w.lower() not in ("the", "service"))
        group = self._group(phrase)
        if group is None or not name:
            if not name:
                self.ask("which service?")
            return None, ""
        found = self._find_resource(group, "service", name)
        if found is not None:
            return group, str(found[2]["name"])
        choices = ALIASES.get(name.lower())
        if choices and not self._windows(group):
            self.ask(f"which service is '{name}' on {group.name}: {' or '.join(choices)}? (its name differs between "
                     "Debian and Red Hat; no HostState of the group names it yet)")
            return None, ""
        return group, name

    def do_start(self, rest: str, env: str) -> Draft:
        group, name = self._service(rest)
        if group is not None:
            self._upsert(group, "service", name, {"state": "running"}, f"{name}-{group.name}")
        return self.out

    def do_stop(self, rest: str, env: str) -> Draft:
        if re.match(r"^(?:the\s+)?process\b", rest, re.I):
            return self.do_kill(re.sub(r"^(?:the\s+)?process\s+", "", rest, flags=re.I), env)
        group, name = self._service(rest)
        if group is not None:
            self._upsert(group, "service", name, {"state": "stopped"}, f"{name}-{group.name}")
            self.out.confirm = f"it stops {name} on the {self._hosts(group)}"
        return self.out

    def do_restart(self, rest: str, env: str) -> Draft:
        group, name = self._service(rest)
        if group is None:
            return self.out
        slug = re.sub(r"[^a-z0-9-]+", "-", f"restart-{name}-{group.name}-{self.today}".lower())
        if self._windows(group):
            marker = f"C:\\ProgramData\\recon\\requests\\{slug}"
            run = (f"Restart-Service -Name '{name.replace(chr(39), chr(39) * 2)}' -Force; "
                   f"New-Item -ItemType File -Force -Path '{marker}' | Out-Null")
        else:
            marker = f"/var/lib/recon/requests/{slug}"
            run = f"systemctl restart '{name}' && mkdir -p /var/lib/recon/requests && touch {marker}"
        self._new_state(slug, group, [{"type": "command", "id": "restart", "run": run, "creates": marker}])
        self.out.confirm = f"it restarts {name} on the {self._hosts(group)} (once: the marker {marker} says it ran)"
        return self.out

    def do_kill(self, rest: str, env: str) -> Draft:
        obj, phrase = self._split_target(rest)
        name = " ".join(w for w in obj.split() if w.lower() not in ("the", "process"))
        name = re.sub(r"\.exe$", "", name, flags=re.I)
        group = self._group(phrase)
        if group is None:
            return self.out
        if not self._windows(group):
            return self.ask(f"stopping processes by name is for Windows groups; {group.name} is not one: stop the "
                            "service that runs it (stop SERVICE on GROUP)")
        self._upsert(group, "process", name, {"state": "stopped"}, f"{name}-process-{group.name}")
        self.out.confirm = f"it stops every {name} process on the {self._hosts(group)}"
        return self.out

    # packages, and files a HostState already manages

    def _package(self, rest: str) -> tuple[Spec | None, str, str, str]:
        source = ""
        m = re.search(r"\s+(?:from|with|using)\s+(\S+)\s*$", rest, re.I)
        if m and _PATHLIKE.match(m.group(1)):
            source, rest = m.group(1), rest[:m.start()]
        obj, phrase = self._split_target(rest)
        version = ""
        vm = re.search(r"\s+(?:to|version|=)\s*([\w.+~:-]+)\s*$", obj)
        if vm:
            version, obj = vm.group(1), obj[:vm.start()]
        name = " ".join(w for w in obj.split() if w.lower() not in ("the", "package"))
        if not name:
            self.ask("which package?")
            return None, "", "", ""
        return self._group(phrase), name, version, source

    def do_install(self, rest: str, env: str) -> Draft:
        group, name, version, _ = self._package(rest)
        if group is not None and self._no_packages(group):
            self._upsert(group, "package", name, {"state": "present", **({"version": version} if version else {})},
                         f"{name}-{group.name}")
        return self.out

    def do_update(self, rest: str, env: str) -> Draft:
        group, name, version, source = self._package(rest)
        if group is None:
            return self.out
        managed = self._find_resource(group, "file", name)
        if managed is not None:
            state, i, res = managed
            if not source:
                return self.ask(f"{state.address} manages {res['path']} on {group.name}: which file is the new one? "
                                f"(say: update {name} on {group.name} from PATH)")
            given = Path(source).resolve()  # as the user named it, from here
            if not given.is_file():
                wanted = PureWindowsPath(res["path"]).name
                return self.ask(f"there is no file {source}; give the path of the new {wanted}")
            self._edit(state, [(("spec", "resources", i, "source"), _relative(given, state))])
            return self.out
        if not version:
            return self.ask(f"update {name} to which version? (say: update {name} to 1.2.3 on {group.name}); no "
                            f"HostState of {group.name} manages a file named like {name}")
        if self._no_packages(group):
            self._upsert(group, "package", name, {"state": "present", "version": version}, f"{name}-{group.name}")
        return self.out

    def do_remove(self, rest: str, env: str) -> Draft:
        group, name, _, _ = self._package(rest)
        if group is not None and self._no_packages(group):
            self._upsert(group, "package", name, {"state": "absent"}, f"{name}-{group.name}")
            self.out.confirm = f"it removes the package {name} from the {self._hosts(group)}"
        return self.out

    def _no_packages(self, group: Spec) -> bool:
        if self._windows(group):
            self.ask(f"{group.name} is a group of Windows hosts, where a package is an MSI known by its product "
                     "code: write a package resource with productCode: '{GUID}' and source: the .msi")
            return False
        return True

    # files, models, bundles

    def do_deploy(self, rest: str, env: str) -> Draft:
        tokens = rest.split()
        if tokens and _PATHLIKE.match(tokens[0]) and not self.catalog.one("Model", tokens[0]).spec:
            return self._deploy_file(rest)
        m = re.match(r"^(?:the\s+)?(?:model\s+)?([\w.-]+)(?:\s+(?:model))?(?:\s+(?:version|tag|image|at|to))?"
                     r"(?:\s+([\w.-]+))?\s*$", rest.strip(), re.I)
        if m is None:
            return self.ask(f"what to deploy? {HELP}")
        model = self._model(m.group(1), env)
        if model is None:
            return self.out
        if not m.group(2):
            return self.ask(f"deploy which version of {model.name}? (say: deploy {model.name} version 1.4.0)")
        return self._image(model, m.group(2))

    def _deploy_file(self, rest: str) -> Draft:
        m = re.match(r"^(\S+)\s+(?:to|into|at)\s+(\S+)\s*(?:on|at|across|for)?\s*(.*)$", rest.strip(), re.I)
        if m is None:
            return self.ask("deploy FILE to which path, on which group? (say: deploy files/app.conf to "
                            "/etc/app/app.conf on web)")
        source, dest, phrase = m.groups()
        group = self._group(phrase)
        given = Path(source).resolve()  # as the user named it, from here
        if not given.is_file():
            return self.ask(f"there is no file {source} here to deploy")
        if group is None:
            return self.out
        windows = self._windows(group)
        if dest.endswith(("/", "\\")):
            dest += given.name
        if windows != bool(re.match(r"^[A-Za-z]:[\\/]", dest)):
            return self.ask(f"{dest} is not a path on {'Windows' if windows else 'Linux'} hosts; {group.name} is "
                            f"reached by {'winrm' if windows else 'ssh or locally'}")
        self._upsert_file(group, dest, given, f"{given.stem}-{group.name}")
        return self.out

    def _upsert_file(self, group: Spec, dest: str, source: Path, new_name: str) -> None:
        """The file resource at `dest` of a HostState of the group gets `source`; else a new HostState."""
        for state in self._states(group):
            for i, res in enumerate(state.doc.data["spec"]["resources"]):
                if res.get("type") == "file" and str(res.get("path", "")).lower() == dest.lower():
                    self._edit(state, [(("spec", "resources", i, "source"), _relative(source, state))])
                    return
        rel = Path(os.path.relpath(source, self.specs_dir.resolve())).as_posix()  # the new file's directory
        self._new_state(new_name, group, [{"type": "file", "path": dest, "source": rel}])

    def _model(self, phrase: str, env: str) -> Spec | None:
        found = self.catalog.one("Model", phrase, env)
        if found.question:
            self.ask(found.question)
        return found.spec

    def _image(self, model: Spec, tag: str) -> Draft:
        image = model.doc.data["spec"].get("image")
        if not image:
            return self.ask(f"{model.name} is built from a context (build:); commit the new code and recon plan "
                            "builds it: there is no version to set")
        repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        self._edit(model, [(("spec", "image"), f"{repo}:{tag}")])
        return self.out

    def do_scale(self, rest: str, env: str) -> Draft:
        m = re.match(r"^(?:the\s+)?(?:model\s+)?([\w.-]+)\s+(?:to|=)\s*(\d+)(?:\s+replicas?)?\s*$", rest.strip(), re.I)
        if m is None:
            return self.ask(f"scale which model to how many replicas? (say: {self._example('scale', 'to 3')})")
        model = self._model(m.group(1), env)
        if model is None:
            return self.out
        n = int(m.group(2))
        if (model.doc.data["spec"].get("kubernetes") or {}).get("manageReplicas") is False:
            return self.ask(f"{model.name} leaves its replicas to an autoscaler (manageReplicas: false); scale "
                            "it there, or set manageReplicas: true first")
        self._edit(model, [(("spec", "replicas"), n)])
        if n == 0:
            self.out.confirm = f"it stops every replica of {model.name}"
        return self.out

    def do_rollback(self, rest: str, env: str) -> Draft:
        m = re.match(r"^(?:the\s+)?(?:model\s+)?([\w.-]+)(?:\s+(?:to|version)\s+([\w.-]+))?\s*$", rest.strip(), re.I)
        if m is None:
            return self.ask(f"roll back which model, to which version? (say: {self._example('roll back', 'to 1.3.0')})")
        model = self._model(m.group(1), env)
        if model is None:
            return self.out
        tag = m.group(2) or _previous_tag(model)
        if not tag:
            return self.ask(f"roll {model.name} back to which version? git has no earlier image in "
                            f"{model.doc.file} (say: roll back {model.name} to 1.3.0)")
        if not m.group(2):
            self.out.notes.append(f"the version before the current one, from the git history of {model.doc.file}")
        return self._image(model, tag)

    def do_publish(self, rest: str, env: str) -> Draft:
        m = re.match(r"^(?:the\s+)?(?:bundle\s+)?([\w.-]+)(?:\s+(?:as|tag|tagged|version|at)\s+([\w.-]+))?\s*$",
                     rest.strip(), re.I)
        if m is None:
            return self.ask("publish which bundle, as which tag? (say: publish churn-weights as v3)")
        found = self.catalog.one("Bundle", m.group(1), env)
        if found.question or found.spec is None:
            return self.ask(found.question)
        bundle = found.spec
        if not m.group(2):
            return self.ask(f"publish {bundle.name} as which tag? it is published at {bundle.doc.data['spec']['ref']} "
                            f"(say: publish {bundle.name} as v3)")
        ref = str(bundle.doc.data["spec"]["ref"])
        base = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
        self._edit(bundle, [(("spec", "ref"), f"{base}:{m.group(2)}")])
        return self.out

    def do_delete(self, rest: str, env: str) -> Draft:
        self.out.confirm = "it deletes"
        return self.ask(f"recon drafts no deletions: to remove what '{rest.strip()}' names, delete its spec (or set "
                        "state: absent on the resource), commit, and apply with --prune for Models")


def _relative(path: Path, spec: Spec) -> str:
    """`path` as a spec file names its sources: relative to the spec file's directory."""
    return Path(os.path.relpath(path, Path(spec.doc.file).resolve().parent)).as_posix()


def _previous_tag(model: Spec) -> str:
    """The image tag of the Model in the last commit where it differed from now, from git history."""
    from reconciler.gitinfo import git_text

    path = Path(model.doc.file).resolve()
    current = model.doc.data["spec"].get("image", "")
    log = git_text("log", "--format=%H", "-n", "20", "--", path.name, cwd=path.parent) or ""
    for sha in log.split():
        text = git_text("show", f"{sha}:./{path.name}", cwd=path.parent) or ""
        for m in re.finditer(r"^\s*image:\s*['\"]?([^\s'\"#]+)", text, re.M):
            if m.group(1) != current and m.group(1).rsplit(":", 1)[0] == current.rsplit(":", 1)[0]:
                return m.group(1).rsplit(":", 1)[1]
    return ""


__all__ = ["RuleDrafter", "words"]
