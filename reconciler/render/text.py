"""A plan and an apply report as readable text, with rich markup (colour only on a terminal)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from providers.contract import Change
from reconciler.executor import ApplyReport
from reconciler.plan import Plan
from reconciler.render.safe import esc as escape

if TYPE_CHECKING:
    from reconciler.drift import Report as DriftReport
    from reconciler.plandiff import PlanDiff
    from reconciler.shards import PartState

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
    yield (f"[bold]Plan {plan.plan_id}[/bold] · {_count(len(plan.specs), 'spec')} · "
           f"{_count(len(plan.changes), 'resource')} on {_count(len(targets), 'target')}")
    selection = [f"--{k} {' '.join(v)}" for k, v in plan.selection.items() if v]
    if selection:
        yield f"[yellow]Selected with {escape(' '.join(selection))}: other resources are not in this plan.[/]"
    if plan.shards:
        yield escape(shard_line(plan))
    yield ""
    # what no spec declares is always shown, kept or not
    shown = plan.changes if verbose else tuple(c for c in plan.changes if c.is_change or c.resource == "orphan")
    for change, hosts in grouped(shown):
        yield from change_lines(change, hosts, verbose)
    if not plan.pending:
        yield "[green]No changes.[/green] Live state matches the specs."
    else:
        yield ""
    yield f"[bold]Plan:[/bold] {summary_line(plan)}"
    drifted = sum(1 for c in plan.pending if c.drift)
    if drifted:
        yield (f"[bold magenta]Drift:[/] {_count(drifted, 'change')} undo what was changed outside recon since it "
               "applied these specs (marked ↯); the others are what the specs ask.")
    yield from policy_lines(plan)


def shard_line(plan: Plan) -> str:
    """What part of a split a plan is: a fragment, a merged plan, or one runner's part of it."""
    s = plan.shards
    by = f" by {s['by']}" if s.get("by") else ""
    mine = len(s["parts"].get(str(s.get("index", "")), ()))
    if s.get("applying"):
        return f"Part {s['index']}/{s['count']}{by} of merged plan {plan.plan_id}: {_count(mine, 'target')}."
    if "index" in s:
        return (f"Shard {s['index']}/{s['count']}{by}: {_count(mine, 'target')} of "
                f"{sum(len(t) for t in s['parts'].values())}; merge every shard's fragment with `recon plan merge`.")
    sizes = ", ".join(str(len(s["parts"][str(k)])) for k in range(1, int(s["count"]) + 1))
    return (f"Merged from {s['count']} shards{by} (targets per shard: {sizes}); each runner applies its part with "
            f"`recon apply PLAN --shard K/{s['count']}`.")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def policy_lines(plan: Plan) -> Iterator[str]:
    """What policy says of the plan: which Policy decided it and for whom, denied changes (apply will refuse)
    and the confirmations it needs."""
    source = plan.policy.get("source", "")
    if source and source != "work tree":
        proposed = sum(1 for c in plan.pending if c.resource == "policy")
        yield (f"[bold]Policy in force:[/] {escape(source)}, checked as {escape(plan.policy.get('subject', '?'))}"
               + (f"; this change proposes {_count(proposed, 'Policy change')} (in force once merged)"
                  if proposed else "") + ".")
    if plan.denied:
        yield (f"[bold red]Denied by policy:[/] {len(plan.denied)} change{'s' if len(plan.denied) != 1 else ''}; "
               "apply will refuse this plan (exit 3) until the specs or the policy change.")
    envs = sorted({r.removesuffix(" needs confirmation") for c in plan.pending for r in c.risks
                   if r.endswith(" needs confirmation")})
    if envs and not plan.denied:
        yield (f"[bold yellow]Needs confirmation:[/] {', '.join(envs)}: apply with "
               f"[bold]--confirm {plan.plan_id}[/bold] (or type the environment's name when asked).")


def grouped(changes: Iterable[Change]) -> list[tuple[Change, list[str]]]:
    """Identical changes on several targets, once each with the list of targets, in first-seen order."""
    groups: dict[tuple[str, ...], tuple[Change, list[str]]] = {}
    for c in changes:
        # field values may be lists: compare them as JSON
        fields = json.dumps([[f.path, f.before, f.after] for f in c.fields], sort_keys=True, default=str)
        key = (c.address, c.action, c.reason, fields, c.denied, ",".join(c.risks))
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


FIELDS_SHOWN = 20  # a change with many more fields (a bundle's first push) shows this many without --verbose


def change_lines(change: Change, targets: list[str] | None = None, verbose: bool = False) -> Iterator[str]:
    sym, colour = SYMBOL[change.action]
    target = _targets(targets if targets is not None else [change.target])
    flags = f" [bold yellow]⚠ {escape(', '.join(change.risks))}[/]" if change.risks else ""
    yield (f"[{colour}]{escape(sym):>3} {change.action:<7}[/{colour}] [bold]{escape(change.address)}[/bold]{target}"
           f"{flags}")
    if change.drift:
        yield "              [bold magenta]↯ drift: changed outside recon since it was applied[/]"
    if change.denied:
        yield f"              [bold red]✗ denied by {escape(change.denied)}[/]"
    yield f"              [dim]{escape(change.reason)}[/dim]"
    fields = change.fields
    if not verbose and len(fields) > FIELDS_SHOWN + 5:
        fields = fields[:FIELDS_SHOWN]
    for f in fields:
        before, after = _value(f.before), _value(f.after)
        if f.path == "diff" and isinstance(f.after, str):  # a text file's lines, as `diff -u` shows them
            for line in f.after.split("\n"):
                style = ("dim" if line.startswith(("---", "+++")) else "green" if line.startswith("+") else
                         "red" if line.startswith("-") else "cyan" if line.startswith("@@") else "")
                shown = escape(line)
                yield f"                [{style}]{shown}[/{style}]" if style else f"                {shown}"
        elif f.path == "run":
            yield f"              {escape(f.path)}: {escape(after)}"
        else:
            yield f"              {escape(f.path)}: {escape(before)} [dim]→[/dim] {escape(after)}"
    if len(fields) < len(change.fields):
        yield (f"              [dim]… and {len(change.fields) - len(fields)} more "
               "(recon plan --verbose, or --json, lists every one)[/dim]")


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


PART_MARKS = {"ok": "[green]✓[/]", "failed": "[red]✗[/]", "refused": "[yellow]✗[/]",
              "unfinished": "[cyan]…[/]", "not applied": "[dim]·[/]", "no changes": "[dim]·[/]"}


def parts_lines(states: Sequence[PartState]) -> Iterator[str]:
    """The merged result of a merged plan's parts."""
    done = sum(s.done for s in states)
    yield ""
    yield f"[bold]Applied:[/bold] {done} of {len(states)} parts"
    for s in states:
        what = f"{_count(s.changes, 'change')}, {s.outcome}" if s.changes else s.outcome
        yield f"  {PART_MARKS.get(s.outcome, '?')} part {s.part}: {escape(what)}" + (
            f"  [dim]{escape(s.detail)}[/dim]" if s.detail else "")


def report_lines(report: ApplyReport) -> Iterator[str]:
    for r in report.succeeded:
        if r.note and not r.message:
            yield f"[green]  ✓ {escape(r.change_id)}[/green]\n      [dim]{escape(r.note)}[/dim]"
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


def drift_lines(plan: Plan, report: DriftReport) -> Iterator[str]:
    yield f"[bold]Drift check[/bold] · plan {plan.plan_id} · {_count(len(plan.changes), 'resource')}"
    if plan.shards:
        yield escape(shard_line(plan).split(";")[0] + ".")
    for rule in report.expired:
        yield f"[yellow]Expired ignore rule, no longer applied:[/] {escape(rule)}"
    sections = (("Drift: the live state moved away from what was applied", report.drift),
                ("Pending: the specs moved away from the live state", report.pending))
    for title, changes in sections:
        if changes:
            yield ""
            yield f"[bold]{title}[/bold] ({len(changes)})"
            for change, hosts in grouped(changes):
                yield from change_lines(change, hosts)
    if report.ignored:
        yield ""
        yield f"[dim]Ignored drift ({len(report.ignored)}):[/dim]"
        for c, why in report.ignored:
            yield f"[dim]  {escape(c.id)}: {escape(why)}[/dim]"
    yield ""
    if report.clean:
        yield "[green]No drift and nothing pending.[/green]"
    else:
        yield f"[bold]{len(report.drift)} drifted, {len(report.pending)} pending.[/bold]"


def plan_diff_lines(d: PlanDiff) -> Iterator[str]:
    """`recon show OLD --diff NEW`: what the newer plan adds, drops and changes."""
    if d.same:
        yield f"Plans {d.old} and {d.new} make the same changes."
        return
    yield (f"[bold]Plan {d.old} → {d.new}[/bold]: {len(d.added)} added, {len(d.removed)} dropped, "
           f"{len(d.changed)} changed.")
    for cid in d.added:
        yield f"  [green]+[/green] {escape(cid)}"
    for cid in d.removed:
        yield f"  [red]-[/red] {escape(cid)}"
    for cid, items in d.changed.items():
        yield f"  [yellow]~[/yellow] {escape(cid)}"
        for item in items:
            yield f"      {escape(item['path'])}: {escape(_short(item['old']))} → {escape(_short(item['new']))}"
    if d.specs:
        yield "  specs moved:"
        for item in d.specs:
            yield f"      {escape(item['path'])}: {escape(_short(item['old']))} → {escape(_short(item['new']))}"


def _short(value: Any) -> str:
    text = "(none)" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
