"""Plans: frozen plain data, serialisable to and from JSON, versioned.

A plan holds no clients or closures: what apply needs besides it is re-read from the specs,
whose digests the plan records, and from the live state, whose fingerprints it records.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from providers.contract import ACTIONS, Change, FieldChange
from specs.errors import UsageError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Plan:
    format_version: int
    plan_id: str
    recon_version: str
    created_at: str
    paths: tuple[str, ...]
    specs: dict[str, str]  # spec address -> digest of its document
    order: tuple[tuple[str, ...], ...]  # spec addresses in waves
    changes: tuple[Change, ...]
    selection: dict[str, tuple[str, ...]] = field(default_factory=dict)  # --target / --exclude / --changed-since
    git: dict[str, Any] = field(default_factory=dict)  # commit sha, branch, dirty: where the specs came from
    policy: dict[str, Any] = field(default_factory=dict)  # the governing Policy: source, subject, digest (policy.py)
    shards: dict[str, Any] = field(default_factory=dict)  # a fragment's shard, or a merged plan's parts (shards.py)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.is_change]

    @property
    def denied(self) -> list[Change]:
        return [c for c in self.changes if c.denied]

    def counts(self) -> Counter[str]:
        return Counter(c.action for c in self.changes)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["order"] = [list(w) for w in self.order]
        data["paths"] = list(self.paths)
        data["selection"] = {k: list(v) for k, v in self.selection.items()}
        data["summary"] = {a: self.counts().get(a, 0) for a in ACTIONS}
        for change, raw in zip(self.changes, data["changes"], strict=True):
            raw["id"] = change.id
        return data

    @classmethod
    def from_json(cls, data: Any, source: str = "plan") -> Plan:
        if not isinstance(data, dict) or "format_version" not in data:
            raise UsageError(f"{source} is not a recon plan (no format_version); make one with `recon plan --out`")
        if data["format_version"] != FORMAT_VERSION:
            raise UsageError(
                f"{source} has plan format {data['format_version']}, this recon reads {FORMAT_VERSION}; re-plan"
            )
        try:
            changes = tuple(
                Change(
                    address=c["address"], target=c["target"], spec=c["spec"], resource=c["resource"],
                    action=c["action"], reason=c["reason"],
                    fields=tuple(FieldChange(**f) for f in c["fields"]),
                    fingerprint=c["fingerprint"], desired=c["desired"], environment=c.get("environment", ""),
                    risks=tuple(c.get("risks", ())), denied=c.get("denied", ""), drift=bool(c.get("drift", False)),
                )
                for c in data["changes"]
            )
            return cls(
                format_version=data["format_version"], plan_id=data["plan_id"],
                recon_version=data["recon_version"], created_at=data["created_at"],
                paths=tuple(data["paths"]), specs=dict(data["specs"]),
                order=tuple(tuple(w) for w in data["order"]), changes=changes,
                selection={k: tuple(v) for k, v in data.get("selection", {}).items()},
                git=dict(data.get("git", {})), policy=dict(data.get("policy", {})),
                shards=dict(data.get("shards", {})),
            )
        except (KeyError, TypeError) as exc:
            raise UsageError(f"{source} is not a valid recon plan (bad or missing {exc}); re-plan") from None


def plan_id(recon_version: str, specs: dict[str, str], changes: Iterable[Change], policy: str = "") -> str:
    """Hash of the spec digests, the live fingerprints, the desired states, the governing Policy's digest
    and the recon version."""
    h = hashlib.sha256()
    h.update(f"recon {recon_version} format {FORMAT_VERSION}\n".encode())
    if policy:
        h.update(f"policy {policy}\n".encode())
    for addr in sorted(specs):
        h.update(f"spec {addr} {specs[addr]}\n".encode())
    for c in sorted(changes, key=lambda c: c.id):
        h.update(f"change {c.id} {c.action} {c.fingerprint} {c.desired}\n".encode())
    return h.hexdigest()[:12]
