"""The console's HTML: pure functions from what ``sources`` read to escaped markup.

Everything the agent, the server or a policy author chose (tool names, arguments, reasons,
identities, notes) is hostile: it goes through ``esc`` (control and bidi characters made
visible as ``\\uXXXX``, then HTML-escaped) and never into an attribute without quoting, a URL
without ``quote``, or a script at all (the pages carry no inline script; the CSP forbids it).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from ..proxy.approvals import SHOWN_MAX, args_cut, args_lookalikes
from ..vocab import terminal_text
from ..audit_filters import FIELDS, AuditFilter, is_decision
from .counts import EFFECTS, counts_over_time, counts_per_tool

__all__ = ["esc", "page", "approvals_fragment", "hidden_args", "audit_fragment", "policy_page", "login_page", "json_html"]

FOLD_AT = 200  # a string value longer than this is folded (its start shown, the rest one click away)
AUDIT_ROWS = 500  # the newest matching records listed (the chart and counts use every one kept)


def esc(value: Any) -> str:
    """Text for HTML: invisible and direction-changing characters shown as escapes, then escaped."""
    return html.escape(terminal_text("" if value is None else value), quote=True)


def _when(t: float | None) -> str:
    if t is None:
        return ""
    try:
        return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return esc(t)


def _span(d: float) -> str:
    d = max(0.0, d)
    return f"{d:.0f} s" if d < 120 else f"{d / 60:.0f} min" if d < 7200 else f"{d / 3600:.0f} h"


# --- JSON, pretty-printed, long values folded ---------------------------------------------------


def json_html(value: Any, indent: int = 0) -> str:
    """``value`` as indented JSON in HTML; a string longer than ``FOLD_AT`` is a <details> whose
    summary is its start and length (the whole value is in the page, one click away)."""
    pad = "  " * indent
    inner = "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f'{inner}<span class="k">{esc(json.dumps(str(k), ensure_ascii=False))}</span>: {json_html(v, indent + 1)}'
            for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(f"{inner}{json_html(v, indent + 1)}" for v in value) + f"\n{pad}]"
    text = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and len(text) > FOLD_AT:
        return (
            f'<details class="fold"><summary><span class="s">{esc(text[:80])}</span>… '
            f"({len(value)} characters: show all)</summary>"
            f'<span class="s">{esc(text)}</span></details>'
        )
    cls = "s" if isinstance(value, str) else "n"
    return f'<span class="{cls}">{esc(text)}</span>'


def hidden_args(args_text: str) -> str | None:
    """Why the approver cannot see the whole arguments of a request (None: they can). The
    console shows the reason in red above them and does not approve such a request."""
    cut = args_cut(args_text)
    if cut is not None:
        return (
            f"arguments cut at {SHOWN_MAX:,} characters: {cut:,} more characters not shown. The arguments "
            "are sorted by name, so any argument after the cut is not on this page at all. Do not approve "
            "what you cannot see: Approve is disabled; deny it, or have the call made with smaller arguments."
        )
    try:
        json.loads(args_text)
    except (ValueError, RecursionError):
        return (
            "the arguments cannot be read as JSON: what would run is not shown here. Do not approve what "
            "you cannot see: Approve is disabled; deny it."
        )
    return None


def _lookalike_html(args_text: str, hidden: str | None) -> str:
    """The look-alike letters warning above readable arguments (``args_lookalikes``)."""
    warning = None if hidden is not None else args_lookalikes(args_text)
    return "" if warning is None else f'<p class="error lookalike" role="alert"><strong>{esc(warning)}</strong></p>'


def _args_html(args_text: str, hidden: str | None) -> str:
    if hidden is not None:  # cut at the queue's bound (or unreadable): the raw text, under a warning
        return f'<p class="error args-hidden" role="alert"><strong>{esc(hidden)}</strong></p><pre class="args">{esc(args_text)}</pre>'
    try:
        return f'<pre class="args">{json_html(json.loads(args_text))}</pre>'
    except RecursionError:  # nested deeper than the page can draw: as text (still whole)
        return f'<pre class="args">{esc(args_text)}</pre>'


# --- the page around every view -----------------------------------------------------------------


def page(title: str, body: str, *, csrf: str, active: str, who: str | None, banner: str = "") -> str:
    nav = "".join(
        f'<a href="{href}"{" aria-current=page" if name == active else ""}>{label}</a>'
        for name, href, label in (("approvals", "/", "Approvals"), ("audit", "/audit", "Audit"), ("policy", "/policy", "Policy"))
    )
    user = f'<span class="who">signed in as {esc(who)}</span>' if who else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{esc(csrf)}">
<title>{esc(title)} · plr console</title>
<link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script>
</head><body data-view="{esc(active)}">
<header class="top"><strong>plr console</strong><nav>{nav}</nav>{user}<span id="live" class="live" aria-live="polite"></span></header>
{banner}
<main>{body}</main>
<div id="queue-changed" class="queue-changed" role="status" aria-live="polite" hidden></div>
</body></html>"""


def _csrf_input(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


# --- approvals ----------------------------------------------------------------------------------


def _request(a: Any, csrf: str, now: float) -> str:
    rows = [
        ("reason", a.reason),
        ("rule", a.rule),
        ("identity", a.identity),
        ("session", a.session),
        ("server", a.server),
        ("id", a.id),
        ("args sha256", a.args_sha256),
    ]
    dl = "".join(f"<dt>{k}</dt><dd>{esc(v) if v else '<span class=none>—</span>'}</dd>" for k, v in rows)
    aid = esc(a.id)
    hidden = hidden_args(a.args)
    if hidden is None:
        approve = '<button type="submit" name="decision" value="grant" class="approve">Approve</button>'
    else:  # disabled in the markup (no script needed), and refused by the server too
        approve = (
            '<button type="submit" name="decision" value="grant" class="approve" disabled data-held="args" '
            'title="the arguments are not all shown">Approve</button>'
            '<span class="held">Approve is disabled: the arguments are not all shown</span>'
        )
    # the form posts the id this request was rendered with: a click answers the request it is in.
    # Its first submit button is a disabled one: the browser's default button, which Enter in the
    # note field would press. So Enter answers nothing (it would have pressed Approve while the
    # approver typed a reason to deny), with or without the script.
    return f"""<article class="request" id="req-{aid}" data-id="{aid}" aria-label="request {aid}">
<header><h3><code class="tool">{esc(a.tool)}</code></h3>
<span class="age">filed {_span(now - a.created)} ago</span>
<span class="expires" data-expires="{a.expires:.3f}">expires in {_span(a.expires - now)}</span> <span class="age">({_when(a.expires)})</span></header>
<dl>{dl}</dl>
<h4>arguments</h4>{_lookalike_html(a.args, hidden)}{_args_html(a.args, hidden)}
<form method="post" action="/approvals/{quote(a.id, safe='')}" class="decide">{_csrf_input(csrf)}
<button type="submit" class="no-enter" disabled hidden tabindex="-1" aria-hidden="true"></button>
<label>Note <input type="text" name="note" maxlength="1000" placeholder="optional: why"></label>
{approve}
<button type="submit" name="decision" value="deny" class="deny">Deny</button>
</form></article>"""


def _answered_row(a: Any) -> str:
    status = a.effective_status()
    shown = "granted (used)" if status == "used" else status
    decided = a.decided_at is not None and status not in ("pending", "expired", "cancelled")
    return (
        f'<tr id="done-{esc(a.id)}" class="st-{esc(status)}"><td><code>{esc(a.id)}</code></td>'
        f"<td><code>{esc(a.tool)}</code></td><td class=status>{esc(shown)}</td>"
        f"<td>{esc(a.decided_by or '(unknown)') if decided else '—'}</td>"
        f"<td>{_when(a.decided_at) if decided else '—'}</td><td>{esc(a.note or '')}</td>"
        f"<td>{esc(a.identity or '')}</td><td>{_when(a.created)}</td></tr>"
    )


def approvals_fragment(view: Any, csrf: str, *, now: float | None = None, notice: str = "") -> str:
    """The pending requests (oldest first: a new one is added below, never above the one the
    approver is reading) with their buttons, then the recently answered ones.

    The parts ``static/console.js`` updates on its own have ids: ``pending-head`` (the count),
    ``pending-list`` (one ``article.request`` per request, ``data-id`` its id) and ``answered``."""
    now = time.time() if now is None else now
    parts = [notice]
    if view.error:
        parts.append(f'<p class="error" role="alert">{esc(view.error)}</p>')
    parts.append(f'<p class="where">queue: <code>{esc(view.where)}</code></p>')
    if not view.error:
        parts.append(f'<h2 id="pending-head">Pending ({len(view.pending)})</h2>')
        if view.pending:
            items = "\n".join(_request(a, csrf, now) for a in view.pending)
        else:
            items = '<p class="empty">No call is waiting for a human.</p>'
        parts.append(f'<div id="pending-list">{items}</div>')
        answered = ""
        if view.recent:
            head = "<tr><th>id</th><th>tool</th><th>status</th><th>decided by</th><th>decided at</th><th>note</th><th>identity</th><th>filed</th></tr>"
            rows = "".join(_answered_row(a) for a in view.recent)
            answered = f"<h2>Answered and expired</h2><table class=done>{head}{rows}</table>"
        parts.append(f'<div id="answered">{answered}</div>')
    return "\n".join(parts)


def answer_notice(aid: str, a: Any, error: str | None) -> str:
    """What the page says after a decision: only what the queue recorded."""
    if error:
        return f'<p class="error" role="alert">{esc(error)}</p>'
    if a is None:
        return f'<p class="error" role="alert">no approval request {esc(aid)} in the queue</p>'
    status = a.effective_status()
    if status in ("granted", "used", "denied") and a.decided_at is not None:
        verb = "granted" if status in ("granted", "used") else "denied"
        note = f" (note: {esc(a.note)})" if a.note else ""
        return (
            f'<p class="notice" role="status">{esc(a.id)} {verb} by {esc(a.decided_by or "(unknown)")} '
            f"at {_when(a.decided_at)}{note}; the queue recorded it</p>"
        )
    return f'<p class="error" role="alert">{esc(a.id)} was not answered: it is {esc(status)}</p>'


# --- audit --------------------------------------------------------------------------------------


def _filters_form(f: AuditFilter, choices: Mapping[str, Sequence[str]]) -> str:
    fields = []
    for name in FIELDS:
        opts = "".join(
            f'<option value="{esc(v)}"{" selected" if v in f.wanted(name) else ""}>{esc(v)}</option>'
            for v in choices.get(name, ())
        )
        fields.append(
            f'<label>{name} <select name="{name}"><option value="">any</option>{opts}</select></label>'
        )
    fields.append(f'<label>since <input name="since" value="{esc(f.since)}" placeholder="1h, 15m, ISO time" size="12"></label>')
    err = f'<p class="error" role="alert">{esc(f.error)}</p>' if f.error else ""
    return f'<form method="get" action="/audit" class="filters">{"".join(fields)}<button type="submit">Filter</button> <a href="/audit">clear</a></form>{err}'


def _chart(records: Sequence[Mapping[str, Any]]) -> str:
    """Stacked bars of decisions per effect over time, as SVG drawn here (no script, no service)."""
    starts, buckets = counts_over_time(records)
    if not buckets:
        return '<p class="empty">No decisions to chart.</p>'
    w, h, pad = 720, 160, 24
    bw = (w - pad) / len(buckets)
    top = max(sum(b.values()) for b in buckets) or 1
    colours = {"allow": "#2e7d32", "deny": "#c62828", "approval_required": "#f9a825"}
    bars = []
    for i, b in enumerate(buckets):
        y = h - pad
        for effect in EFFECTS:
            n = b.get(effect, 0)
            if not n:
                continue
            bh = (h - 2 * pad) * n / top
            y -= bh
            bars.append(
                f'<rect x="{pad + i * bw + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" height="{bh:.1f}" '
                f'fill="{colours[effect]}"><title>{esc(starts[i])}: {n} {effect}</title></rect>'
            )
    legend = " ".join(
        f'<text x="{pad + k * 170}" y="14" class="legend"><tspan fill="{colours[e]}">■</tspan> {e}</text>'
        for k, e in enumerate(EFFECTS)
    )
    axis = (
        f'<text x="{pad}" y="{h - 6}" class="axis">{esc(starts[0])}</text>'
        f'<text x="{w - 4}" y="{h - 6}" class="axis" text-anchor="end">max {top} per slice</text>'
    )
    return (
        f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="decisions per effect over time">'
        f'{legend}<line x1="{pad}" y1="{h - pad}" x2="{w}" y2="{h - pad}" stroke="#888"/>{"".join(bars)}{axis}</svg>'
    )


def _tool_counts(records: Sequence[Mapping[str, Any]]) -> str:
    per = counts_per_tool(records)
    if not per:
        return ""
    head = "<tr><th>tool</th>" + "".join(f"<th>{e}</th>" for e in EFFECTS) + "</tr>"
    rows = "".join(
        f"<tr><td><code>{esc(t)}</code></td>" + "".join(f"<td>{c.get(e, 0)}</td>" for e in EFFECTS) + "</tr>"
        for t, c in sorted(per.items(), key=lambda kv: -sum(kv[1].values()))
    )
    return f'<table class="counts">{head}{rows}</table>'


def _record_row(rec: Mapping[str, Any]) -> str:
    eff = str(rec.get("effect"))
    whole = json_html(dict(rec))
    trace = rec.get("explain") or rec.get("trace")
    trace_html = f"<h4>explain</h4><pre>{json_html(trace)}</pre>" if trace else ""
    summary = (
        f'<span class="ts">{esc(rec.get("ts"))}</span> <span class="eff eff-{esc(eff)}">{esc(eff)}</span> '
        f'<code class="tool">{esc(rec.get("tool"))}</code> <span class="code">({esc(rec.get("code"))})</span> '
        f'<span class="reason">{esc(rec.get("reason") or "")}</span>'
    )
    return f'<li class="rec"><details><summary>{summary}</summary><pre class="record">{whole}</pre>{trace_html}</details></li>'


def audit_fragment(records: Sequence[Mapping[str, Any]], f: AuditFilter, errors: Sequence[str] = ()) -> str:
    """The filtered records (newest first), their chart and counts per tool."""
    decisions = [r for r in records if is_decision(r)]  # the page lists decisions, not events
    matching = [r for r in decisions if f.matches(r)]
    choices = {
        name: sorted({v for r in decisions if isinstance(v := r.get(name), str)})[:200]  # what can match
        for name in FIELDS
    }
    errs = "".join(f'<p class="error" role="alert">{esc(e)}</p>' for e in errors)
    shown = matching[::-1][:AUDIT_ROWS]
    more = f" (the newest {AUDIT_ROWS} listed)" if len(matching) > AUDIT_ROWS else ""
    rows = "".join(_record_row(r) for r in shown)
    return (
        f"{errs}{_filters_form(f, choices)}<h2>Decisions over time</h2>{_chart(matching)}{_tool_counts(matching)}"
        f'<h2>Records: {len(matching)} of {len(decisions)}{more}</h2><ul class="records">{rows}</ul>'
    )


def audit_query(f: AuditFilter) -> str:
    q = f.query()
    return "?" + urlencode(q) if q else ""


# --- policy -------------------------------------------------------------------------------------


def _conditions(n: int, what: str) -> str:
    return f"{n} {what}" if n else ""


def policy_page(view: Any, enforced: Sequence[str]) -> str:
    """The policy given with --policy (sha256, source, tools and their rules), and the sha256
    the audit log says the proxy enforced, so a mismatch shows."""
    seen = "".join(f"<li><code>{esc(s)}</code></li>" for s in enforced)
    seen_html = f"<h3>Policy sha256 in the audit log (newest last)</h3><ul>{seen}</ul>" if enforced else ""
    if view is None:
        return (
            "<h2>Policy</h2><p>Start the console with <code>--policy FILE</code> (the proxy's own) to show its rules "
            f"here.</p>{seen_html}"
        )
    if view.error:
        return f'<h2>Policy</h2><p class="error" role="alert">{esc(view.error)}</p>{seen_html}'
    p = view.policy
    match = ""
    if enforced:
        ok = enforced[-1] == view.sha256
        match = (
            '<p class="notice">the proxy\'s newest audit record names this policy</p>'
            if ok
            else '<p class="error" role="alert">the proxy\'s newest audit record names another policy sha256: '
            "it may enforce another version</p>"
        )
    rows = []
    for name, t in sorted(p.tools.items()):
        extra = ", ".join(
            x
            for x in (
                _conditions(len(t.require), "require"),
                _conditions(len(t.deny_if), "deny if"),
                _conditions(len(t.limits), "limits"),
            )
            if x
        )
        rows.append(
            f"<tr><td><code>{esc(name)}</code></td><td>{esc(t.action)}</td><td>{esc(t.reason or '')}</td>"
            f"<td>{esc(t.rule or '')}</td><td>{esc(extra)}</td></tr>"
        )
    hidden = ", ".join(f"<code>{esc(h)}</code>" for h in p.hide) or "none"
    table = (
        "<table class=policy><tr><th>tool</th><th>action</th><th>reason</th><th>rule</th><th>conditions</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    return (
        f"<h2>Policy</h2><dl><dt>source</dt><dd><code>{esc(view.source)}</code></dd>"
        f"<dt>sha256</dt><dd><code>{esc(view.sha256)}</code></dd><dt>package</dt><dd>{esc(p.package or '')}</dd>"
        f"<dt>default</dt><dd>{esc(p.default)}</dd><dt>hidden</dt><dd>{hidden}</dd></dl>{match}{table}"
        f'<details><summary>The policy JSON</summary><pre class="record">{json_html(json.loads(p.to_json()))}</pre></details>'
        f"{seen_html}"
    )


def login_page(csrf: str, error: str = "") -> str:
    err = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    return f"""<h2>Sign in</h2>{err}
<form method="post" action="/login">{_csrf_input(csrf)}
<label>Token <input type="password" name="token" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form>
<p>A token from the console's <code>--auth-tokens</code> file; the decisions you make are recorded under its identity.</p>"""
