"""A plan and an apply report as readable text, with rich markup (colour only on a terminal)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from rich.markup import escape

from reconciler.executor import ApplyReport
from reconciler.plan import Change, Plan

SYMBOL = {"create": ("+", "green"), "update": ("~", "yellow"), "replace": ("-/+", "magenta"),
          "delete": ("-", "red"), "restart": ("↻", "cyan"), "run": ("!", "cyan"), "noop": ("=", "dim")}


def summary_line(plan: Plan) -> str:
    c = plan.counts()
    text = (f"{c['create']} to create, {c['update']} to update, {c['delete']} to delete, "
            f"{c['noop']} unchanged")
    extra = [f"{c[a]} to {a}" for a in ("replace", "restart", "run") if c[a]]
    return text + "".join(f", {e}" for e in extra) + "."


def plan_lines(plan: Plan, verbose: bool = False) -> Iterator[str]:
    targets = {c.target for c in plan.changes if c.target}
    yield (f"[bold]Plan {plan.plan_id}[/bold] · {len(plan.specs)} specs · {len(plan.changes)} resources"
           f" on {len(targets)} target{'s' if len(targets) != 1 else ''}")
    selection = [f"--{k} {' '.join(v)}" for k, v in plan.selection.items() if v]
    if selection:
        yield f"[yellow]Selected with {escape(' '.join(selection))}: other resources are not in this plan.[/]"
    yield ""
    shown = plan.changes if verbose else tuple(plan.pending)
    for change, hosts in grouped(shown):
        yield from change_lines(change, hosts)
    if not plan.pending:
        yield "[green]No changes.[/green] Live state matches the specs."
    else:
        yield ""
    yield f"[bold]Plan:[/bold] {summary_line(plan)}"


def grouped(changes: Iterable[Change]) -> list[tuple[Change, list[str]]]:
    """Identical changes on several targets, once each with the list of targets, in first-seen order."""
    groups: dict[tuple[str, ...], tuple[Change, list[str]]] = {}
    for c in changes:
        fields = json.dumps([[f.path, f.before, f.after] for f in c.fields], sort_keys=True, default=str)
        key = (c.address, c.action, c.reason, fields)  # field values may be lists: compare them as JSON
        if key in groups:
            groups[key][1].append(c.target)
        else:
            groups[key] = (c, [c.target])
    return list(groups.values())


def _targets(targets: list[str], limit: int = 6) -> str:
    names = [t for t in targets if t]
    if not names:
        return ""
    shown = ", ".join(names[:limit]) + (f", … +{len(names) - limit} more" if len(names) > limit else "")
    count = f" ({len(names)} targets)" if len(names) > 1 else ""
    return f" [dim]@ {escape(shown)}{count}[/dim]"


def change_lines(change: Change, targets: list[str] | None = None) -> Iterator[str]:
    sym, colour = SYMBOL[change.action]
    target = _targets(targets if targets is not None else [change.target])
    yield f"[{colour}]{escape(sym):>3} {change.action:<7}[/{colour}] [bold]{escape(change.address)}[/bold]{target}"
    yield f"              [dim]{escape(change.reason)}[/dim]"
    for f in change.fields:
        before, after = _value(f.before), _value(f.after)
        if f.path == "run":
            yield f"              {escape(f.path)}: {escape(after)}"
        else:
            yield f"              {escape(f.path)}: {escape(before)} [dim]→[/dim] {escape(after)}"


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value if value and value == value.strip() and "\n" not in value else json.dumps(value)
    return json.dumps(value)


def target_summary(report: ApplyReport) -> list[str]:
    """One line per target that had a failure: what succeeded, failed, was rolled back or skipped."""
    per: dict[str, dict[str, int]] = {}
    for r in report.results:
        target = r.change_id.rsplit("@", 1)[1] if "@" in r.change_id else ""
        kind = ("ok" if r.ok else "rolled back" if r.message.startswith("rolled back")
                else "skipped" if r.message.startswith(("skipped", "not run")) else "failed")
        counts = per.setdefault(target, {})
        counts[kind] = counts.get(kind, 0) + 1
    if len(per) < 2:
        return []
    clean = sorted(t for t, c in per.items() if set(c) == {"ok"})
    lines = [f"  {escape(t)}: " + ", ".join(f"{n} {k}" for k, n in sorted(c.items()))
             for t, c in sorted(per.items()) if set(c) != {"ok"}]
    if clean:
        shown = ", ".join(clean[:8]) + (f", … +{len(clean) - 8} more" if len(clean) > 8 else "")
        lines.insert(0, f"  [green]{len(clean)} targets fully applied[/green]: {escape(shown)}")
    return lines


def report_lines(report: ApplyReport) -> Iterator[str]:
    for r in report.succeeded:
        if r.message:
            yield f"[yellow]  ! {escape(r.change_id)}[/yellow]\n      {escape(r.message)}"
    for r in report.failed:
        yield f"[red]  ✗ {escape(r.change_id)}[/red]\n      {escape(r.message)}"
    if report.failed:
        yield from target_summary(report)
    ok, bad = len(report.succeeded), len(report.failed)
    colour = "green" if not bad else "red"
    word = "complete" if not bad else "incomplete"
    yield (f"[bold {colour}]Apply {word}:[/] {ok} succeeded, {bad} failed "
           f"in {report.seconds:.2f}s.")
