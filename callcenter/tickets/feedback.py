"""What people's confirmations and corrections say about the automatic judgements:
accuracy in production, and corrected calls as new training data.

Every value a person sets on a ticket is stored beside the automatic one
(``tickets.human`` with who and when); the analysis's ``judgement`` says which
fields it flagged ``needs_confirmation``. Comparing the two measures the
classifier on real calls; exporting them in the corpus's format (``corpus/``)
turns corrections into training data after a person has reviewed the file.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

# Judgement fields as the ticket row names them, and as the judgement names them.
FIELDS = {"category": "category", "urgency": "urgency", "complaint_severity": "severity"}


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})


def _blank() -> dict[str, int]:
    return {"reviewed": 0, "agreed": 0, "flagged": 0, "flagged_agreed": 0}


def figures_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per field: tickets a person set the field on, how many kept the automatic
    value, and the same for those the classifier had flagged (pure)."""
    out: dict[str, dict[str, Any]] = {f: _blank() for f in FIELDS}
    for row in rows:
        human, flagged = _json(row["human"]), set(_json(row["judgement"]).get(
            "needs_confirmation") or [])
        for column, name in FIELDS.items():
            if column not in human:
                continue
            agreed = (human[column] or None) == (row[column] or None)
            counts = out[column]
            counts["reviewed"] += 1
            counts["agreed"] += agreed
            if name in flagged:
                counts["flagged"] += 1
                counts["flagged_agreed"] += agreed
    for counts in out.values():
        reviewed, flagged = counts["reviewed"], counts["flagged"]
        counts["accuracy"] = round(counts["agreed"] / reviewed, 3) if reviewed else None
        sure = reviewed - flagged
        counts["accuracy_when_sure"] = (
            round((counts["agreed"] - counts["flagged_agreed"]) / sure, 3) if sure else None)
    return out


def base_urgency(urgency: str, vip: str) -> str:
    """The urgency before the VIP raise the corpus is labelled with (a VIP P1 stays
    P1: whether it was raised cannot be told, and a danger errs towards P1)."""
    if vip in ("", "none") or urgency in ("P1", "P4"):
        return urgency
    return {"P2": "P3", "P3": "P4"}[urgency]


_REVIEWED = (
    "SELECT t.id, t.number, t.category, t.urgency, t.complaint_severity, t.vip, t.human,"
    " t.judgement, c.ivr_digits, t.call_id FROM tickets t LEFT JOIN calls c ON c.id = t.call_id"
    " WHERE t.auto AND t.human <> '{}'::jsonb AND t.created_at >= $1 ORDER BY t.id"
)


async def judgement_figures(pool: asyncpg.Pool, since: datetime) -> dict[str, Any]:
    rows = [dict(r) for r in await pool.fetch(_REVIEWED, since)]
    return {"since": since.isoformat(), "tickets": len(rows), "fields": figures_of(rows)}


async def corrections(pool: asyncpg.Pool, since: datetime) -> list[dict[str, Any]]:
    """Reviewed calls as corpus entries (``corpus.py``'s whole-call format): the
    caller's turns with the people's labels (their value where they set one)."""
    entries = []
    for row in await pool.fetch(_REVIEWED, since):
        turns = [r["text"] for r in await pool.fetch(
            "SELECT text FROM transcript_segments WHERE call_id = $1 AND leg = 'caller'"
            " ORDER BY start_s", row["call_id"])] if row["call_id"] else []
        if not turns:
            continue
        labels = {**{c: row[c] for c in FIELDS}, **_json(row["human"])}
        vip = labels.get("vip") or row["vip"] or "none"
        entry: dict[str, Any] = {
            "id": f"p{row['id']}", "group": f"production-{row['number']}",
            "key": str(row["ivr_digits"] or "")[:1], "category": labels["category"],
            "urgency": base_urgency(labels["urgency"], vip), "vip": vip,
            "tags": ["production", "asr_like"], "caller": turns,
        }
        if labels["category"] == "complaint":
            entry["severity"] = labels.get("complaint_severity") or "important"
        entries.append(entry)
    return entries
