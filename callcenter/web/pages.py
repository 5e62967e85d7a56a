"""Server-rendered pages for QA staff and supervisors (no build step).

Each QA evidence item links to the recording of its leg at the exact time:
clicking it plays that span in the page's audio player.
"""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.3rem .6rem;
text-align:left}.fail{color:#b00020}.pass{color:#1b5e20}.na{color:#777}
.seg-agent{background:#eef5ff}.seg-caller{background:#f7f7f7}.ev{cursor:pointer;
text-decoration:underline}
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>{escape(title)}"
        f"</title><style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def calls_page(calls: list[dict[str, Any]]) -> str:
    rows = "".join(
        "<tr>"
        f"<td><a href='/calls/{escape(c['id'])}'>{escape(c['id'][:12])}</a></td>"
        f"<td>{escape(str(c['started_at'])[:19])}</td><td>{escape(c['caller_number'] or '')}</td>"
        f"<td>{escape(c['stage'])}</td><td>{escape(c['status'])}</td>"
        f"<td>{escape(c['queue'] or '')}</td><td>{escape(c['ticket_number'] or '')}</td>"
        f"<td>{escape(c['category'] or '')}</td><td>{escape(c['urgency'] or '')}</td>"
        f"<td>{'' if c['qa_score'] is None else round(c['qa_score'])}</td></tr>"
        for c in calls
    )
    head = ("<tr><th>call</th><th>started</th><th>caller</th><th>stage</th><th>status</th>"
            "<th>queue</th><th>ticket</th><th>category</th><th>urgency</th><th>QA</th></tr>")
    return _page("Calls", f"<p><a href='/api/queues'>live queues (JSON)</a></p>"
                          f"<table>{head}{rows}</table>")


def call_page(doc: dict[str, Any]) -> str:
    call = doc["call"]
    players = "".join(
        f"<p>{escape(r['leg'])}: <audio id='audio-{escape(r['leg'])}' controls preload='none' "
        f"src='/recordings/{escape(call['id'])}/{escape(r['leg'])}.wav'></audio></p>"
        for r in doc["recordings"]
    )
    return _page(
        f"Call {call['id']}",
        f"<p>caller {escape(call['caller_number'] or '')} · stage {escape(call['stage'])} · "
        f"status {escape(call['status'])}</p>{players}"
        f"{_ticket_html(doc['ticket'])}{_qa_html(doc['qa'])}{_transcript_html(doc['transcript'])}"
        "<script>function play(leg,s,e){const a=document.getElementById('audio-'+leg);"
        "if(!a)return;a.currentTime=s;a.play();const stop=()=>{if(a.currentTime>=e){a.pause();"
        "a.removeEventListener('timeupdate',stop)}};a.addEventListener('timeupdate',stop)}"
        "</script>",
    )


def _ticket_html(ticket: dict[str, Any] | None) -> str:
    if not ticket:
        return "<h2>Ticket</h2><p>none</p>"
    keys = ("number", "category", "urgency", "complaint_severity", "repeat_complaint", "vip",
            "caller_name", "phone", "building", "unit", "room", "description", "deadline",
            "escalate_to", "incomplete", "status")
    rows = "".join(f"<tr><th>{k}</th><td>{escape(str(ticket.get(k)))}</td></tr>" for k in keys)
    return f"<h2>Ticket</h2><table>{rows}</table>"


def _qa_html(qa: dict[str, Any] | None) -> str:
    if not qa:
        return "<h2>QA</h2><p>not scored</p>"
    rows = []
    for rule in qa["rules"]:
        verdict = {True: ("pass", "pass"), False: ("fail", "fail"), None: ("na", "n/a")}[
            rule["passed"]]
        evidence = " ".join(
            f"<span class='ev' onclick=\"play('{escape(e['leg'])}',{e['start']},{e['end']})\">"
            f"[{escape(e['leg'])} {e['start']:.1f}s] {escape(e['text'])}</span>"
            for e in rule["evidence"]
        )
        rows.append(f"<tr><td>{escape(rule['id'])}</td><td class='{verdict[0]}'>{verdict[1]}"
                    f"</td><td>{escape(rule.get('detail') or '')}</td><td>{evidence}</td></tr>")
    return f"<h2>QA score {round(qa['score'])}</h2><table>{''.join(rows)}</table>"


def _transcript_html(segments: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr class='seg-{escape(s['leg'])}'><td>{s['start']:.1f}–{s['end']:.1f}</td>"
        f"<td>{escape(s['leg'])}</td><td class='ev' onclick=\"play('{escape(s['leg'])}',"
        f"{s['start']},{s['end']})\">{escape(s['text'])}</td></tr>"
        for s in segments
    )
    return f"<h2>Transcript</h2><table>{rows}</table>"
