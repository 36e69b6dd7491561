"""A plan (or a drift report) as GitHub-flavoured Markdown for PR comments and job summaries.

Order: the headline, risk flags, a table of targets by action, then one collapsible section per
change (identical changes across targets once), risky ones first. It always fits the limit it is
given (65,535 characters for a comment, 1 MiB for a step summary): sections are dropped from the
least important up, deletes, denied changes and changes in environments that need confirmation
are kept (as one line each if their details do not fit), and the text says where the full plan is.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from providers.contract import Change
from reconciler.plan import Plan
from reconciler.render.safe import visible
from reconciler.render.text import grouped, shard_line, summary_line
from reconciler.shards import PartState

if TYPE_CHECKING:
    from reconciler.drift import Report as DriftReport

COMMENT_LIMIT = 65_535
SUMMARY_LIMIT = 1 << 20
ACTIONS = ("create", "update", "replace", "delete", "restart", "run")
SYMBOL = {"create": "🟢 +", "update": "🟡 ~", "replace": "🟣 -/+", "delete": "🔴 -", "restart": "🔵 ↻",
          "run": "🔵 !", "noop": "="}
TARGET_ROWS = 30


def _code(text: str) -> str:
    return "<code>" + _html(text) + "</code>"


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else "(none)" if value is None else json.dumps(value)
    return _html(text).replace("|", "&#124;").replace("\n", " ")


def _priority(c: Change) -> int:
    """0: must be kept (deletes, denied, confirmation needed); 1: other risky; 2: the rest."""
    if c.action == "delete" or c.denied or any(r.endswith("needs confirmation") for r in c.risks):
        return 0
    return 1 if c.risks else 2


def _section(c: Change, targets: list[str]) -> tuple[str, str]:
    """(one-line form, full collapsible form) of a change."""
    names = [t for t in targets if t]
    where = f" @ {', '.join(names[:5])}{f' and {len(names) - 5} more' if len(names) > 5 else ''}" if names else ""
    flags = f" ⚠ {_html(', '.join(c.risks))}" if c.risks else ""
    denied = (f" ❌ denied by {_html(c.denied)}" if c.denied else "") + (" ↯ drift" if c.drift else "")
    head = f"{SYMBOL[c.action]} {_code(c.address)}{_html(where)}{flags}{denied}"
    body = [f"<details><summary>{head}</summary>", "", _html(c.reason), ""]
    table = [f for f in c.fields if f.path != "diff"]
    if table:
        body += ["| field | before | after |", "|---|---|---|"]
        body += [f"| {_cell(f.path)} | {_cell(f.before)} | {_cell(f.after)} |" for f in table[:50]]
        if len(table) > 50:
            body.append(f"| … {len(table) - 50} more fields | | |")
        body.append("")
    for f in c.fields:
        if f.path == "diff" and isinstance(f.after, str):  # a fence longer than any run of backticks inside
            text = visible(f.after, lines=True)
            fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
            body += [f"{fence}diff", text, fence, ""]
    body.append("</details>")
    return f"- {head}", "\n".join(body)


def _targets_table(changes: Sequence[Change]) -> list[str]:
    per: dict[str, Counter[str]] = {}
    for c in changes:
        per.setdefault(c.target or "(none)", Counter())[c.action] += 1
    rows = ["| target | " + " | ".join(ACTIONS) + " |", "|---" * (len(ACTIONS) + 1) + "|"]
    for target, counts in sorted(per.items())[:TARGET_ROWS]:
        rows.append(f"| {_cell(target)} | " + " | ".join(str(counts[a] or "") for a in ACTIONS) + " |")
    if len(per) > TARGET_ROWS:
        rows.append(f"| … {len(per) - TARGET_ROWS} more targets | " + " | ".join("" for _ in ACTIONS) + " |")
    return rows


def render(plan: Plan, title: str = "recon plan", limit: int = COMMENT_LIMIT, full_plan_at: str = "",
           sections: Sequence[tuple[str, Sequence[Change]]] = (), marker: str = "",
           size: Callable[[str], int] = len) -> str:
    """The Markdown of a plan; `sections` (title, changes) replaces the single list (drift reports). `limit` is
    in what `size` counts: characters (a comment's limit) or `utf8` bytes (the step summary's)."""
    parts = ([marker] if marker else []) + [f"### {_html(title)} {_code(plan.plan_id)}", "",
                                            f"**{summary_line(plan)}**", ""]
    pending = plan.pending
    if not pending and not sections:
        parts.append("✅ **No changes.** Live state matches the specs.")
        return "\n".join(parts) + "\n"
    if plan.shards:
        parts.append(f"🧩 {_html(shard_line(plan))}")
    risky = Counter(r for c in pending for r in c.risks)
    source = plan.policy.get("source", "")
    if source and source != "work tree":
        proposed = sum(1 for c in pending if c.resource == "policy")
        parts.append(f"🔒 Policy in force: {_html(source)}, checked as {_html(plan.policy.get('subject', '?'))}"
                     + (f"; **{proposed} proposed Policy change(s)**, in force once merged" if proposed else "")
                     + ".")
    if plan.denied:
        parts.append(f"❌ **{len(plan.denied)} change(s) denied by policy**: apply will refuse this plan.")
    drifted = sum(1 for c in pending if c.drift)
    if drifted:
        parts.append(f"↯ **{drifted} change(s) are drift**: they undo what was changed outside recon since it applied "
                     "these specs, not what this change asks.")
    if risky:
        parts.append("⚠ **Risks:** " + ", ".join(f"{n} × {_html(r)}" for r, n in sorted(risky.items())))
    parts += ["", *_targets_table(pending), ""]
    blocks = sections or [("Changes", pending)]
    items: list[tuple[int, int, str, str, str]] = []  # (priority, order, section title, short, full)
    for s_index, (s_title, changes) in enumerate(blocks):
        for order, (c, targets) in enumerate(grouped(changes)):
            short, full = _section(c, targets)
            items.append((_priority(c), s_index * 1_000_000 + order, s_title, short, full))
    return _fit(parts, items, [t for t, _ in blocks], limit, full_plan_at, size)


def render_parts(states: Sequence[PartState]) -> str:
    """The merged result of a merged plan's parts, as a table (after the plan, in a comment or summary)."""
    marks = {"ok": "✅", "failed": "❌", "refused": "⛔", "unfinished": "⏳", "not applied": "·", "no changes": "·"}
    done = sum(s.done for s in states)
    rows = [f"**Applied: {done} of {len(states)} parts**", "", "| part | changes | outcome | |", "|---|---:|---|---|"]
    rows += [f"| {s.part} | {s.changes} | {marks.get(s.outcome, '?')} {_html(s.outcome)} | {_html(s.detail)} |"
             for s in states]
    return "\n".join(rows) + "\n"


def utf8(text: str) -> int:
    """The size GitHub's step summary limit counts: bytes."""
    return len(text.encode())


def _fit(head: list[str], items: list[tuple[int, int, str, str, str]], titles: list[str], limit: int,
         full_plan_at: str, size: Callable[[str], int] = len) -> str:
    """Keep as many sections as fit, by priority; must-keep ones at least as one line each."""
    where = f" The full plan: {full_plan_at}." if full_plan_at else ""
    reserve = 300 + size(where)
    budget = limit - size("\n".join(head)) - reserve
    chosen: dict[int, str] = {}
    for prio, order, _, short, full in sorted(items, key=lambda i: (i[0], i[1])):
        if size(full) + 1 <= budget:
            chosen[order] = full
            budget -= size(full) + 1
        elif prio == 0 and size(short) + 1 <= budget:
            chosen[order] = short
            budget -= size(short) + 1
    body: list[str] = []
    for title in titles:
        mine = [(o, chosen[o]) for (_, o, t, _, _) in items if t == title and o in chosen]
        if len(titles) > 1 or title != "Changes":
            body += [f"#### {_html(title)}", ""]
        body += [text for _, text in sorted(mine)]
        body.append("")
    left = len(items) - len(chosen)
    tail = []
    if left or any(not text.startswith("<details>") for text in chosen.values()):
        tail.append(f"_… {left} more change(s) not shown, and some shown without details, to stay within "
                    f"{limit:,} {'characters' if size is len else 'bytes'}.{where}_")
    text = "\n".join(head + body + tail) + "\n"
    if size(text) <= limit:
        return text
    if size is len:
        return text[: limit - 40] + "\n\n_(cut to fit)_\n"
    return text.encode()[: limit - 40].decode(errors="ignore") + "\n\n_(cut to fit)_\n"


def render_drift(plan: Plan, report: DriftReport, limit: int = COMMENT_LIMIT, full_plan_at: str = "",
                 marker: str = "", size: Callable[[str], int] = len) -> str:
    expired = "".join(f"\n> ⏰ Expired ignore rule, no longer applied: {_html(e)}" for e in report.expired)
    ignored = "".join(f"\n- {_code(c.id)}: {_html(why)}" for c, why in report.ignored)
    sections = [(t, cs) for t, cs in (("Drift: live moved away from what was applied", report.drift),
                                      ("Pending: the specs moved away from live", report.pending)) if cs]
    if report.clean:
        text = ([marker] if marker else []) + [f"### recon drift {_code(plan.plan_id)}", "",
                                               "✅ **No drift and nothing pending.**"]
        return "\n".join(text) + expired + (f"\n\nIgnored drift:{ignored}" if ignored else "") + "\n"
    body = render(plan, "recon drift", limit - size(expired) - size(ignored) - 40, full_plan_at, sections, marker,
                  size)
    return body + expired + (f"\n\nIgnored drift:{ignored}\n" if ignored else "")


def _html(text: str) -> str:
    """HTML-escaped, control characters shown as escapes (a file name cannot forge the comment)."""
    return html.escape(visible(text))
