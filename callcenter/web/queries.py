"""Read models for the web: calls with their transcript, ticket and QA result."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import asyncpg

from callcenter import pii
from callcenter.asr.figures import transcription_figures as figures_of
from callcenter.console.model import effective_ticket
from callcenter.core import Segment, Word
from callcenter.db.store import PROCESS_CALL_JOB
from callcenter.errors import NotFound


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


async def list_calls(pool: asyncpg.Pool, limit: int = 100, *, agent_id: str | None = None
                     ) -> list[dict[str, Any]]:
    """Newest first; with ``agent_id``, that agent's calls only."""
    rows = await pool.fetch(
        "SELECT c.id, c.source, c.caller_number, c.stage, c.status, c.queue, c.agent_id,"
        " c.started_at, c.ended_at, c.duration_s, c.hangup_by, t.number AS ticket_number,"
        # what people entered at wrap-up wins over what the analysis found
        " COALESCE(t.human->>'category', t.category) AS category,"
        " COALESCE(t.human->>'urgency', t.urgency) AS urgency, q.score AS qa_score"
        " FROM calls c LEFT JOIN tickets t ON t.call_id = c.id AND t.auto"
        " LEFT JOIN qa_results q ON q.call_id = c.id"
        " WHERE $2::text IS NULL OR c.agent_id = $2"
        " ORDER BY c.started_at DESC LIMIT $1",
        limit, agent_id,
    )
    return [_iso(dict(r)) for r in rows]


async def call_document(pool: asyncpg.Pool, call_id: str, *, originals: bool = False
                        ) -> dict[str, Any]:
    """Everything about a call. Its transcript has personal numbers masked unless
    ``originals`` (for the roles that may see them: the caller is checked before)."""
    call = await pool.fetchrow("SELECT * FROM calls WHERE id = $1", call_id)
    if call is None:
        raise NotFound(f"no call {call_id}", call_id=call_id)
    segments = await transcript(pool, call_id, originals=originals)
    ticket = await pool.fetchrow("SELECT * FROM tickets WHERE call_id = $1 AND auto", call_id)
    others = await pool.fetch(
        "SELECT number, status, category, urgency, human FROM tickets"
        " WHERE call_id = $1 AND NOT auto ORDER BY id", call_id)
    qa = await pool.fetchrow("SELECT * FROM qa_results WHERE call_id = $1", call_id)
    rules = await pool.fetch(
        "SELECT rule_id AS id, passed, weight, detail, evidence FROM qa_rule_results"
        " WHERE call_id = $1 ORDER BY rule_id",
        call_id,
    )
    recordings = await pool.fetch(
        "SELECT leg, path, duration_s, sample_rate FROM recordings WHERE call_id = $1", call_id
    )
    events = await pool.fetch(
        "SELECT at, kind, data FROM call_events WHERE call_id = $1 ORDER BY id", call_id
    )
    return {
        "call": _iso(dict(call)),
        "recordings": [dict(r) for r in recordings],
        "transcript": segments,
        "transcript_masked": not originals,
        "ticket": effective_ticket(_iso(_decoded(ticket))) if ticket else None,
        # Further problems of the same call, opened by people (tickets API).
        "other_tickets": [effective_ticket(_iso(_decoded(t))) for t in others],
        "qa": {"score": qa["score"], "rules": [dict(r) for r in rules]} if qa else None,
        "events": [_iso(dict(e)) for e in events],
    }


async def transcript(pool: asyncpg.Pool, call_id: str, *, originals: bool = False
                     ) -> list[dict[str, Any]]:
    """A call's segments, masked (``pii.py``) or as recognised. Segments stored
    before masking existed are masked here, as they are read."""
    rows = await pool.fetch(
        "SELECT leg, start_s, end_s, redacted,"
        " CASE WHEN $2 THEN coalesce(original_text, text) ELSE text END AS text,"
        " CASE WHEN $2 THEN coalesce(original_words, words) ELSE words END AS words"
        " FROM transcript_segments WHERE call_id = $1 ORDER BY start_s, id", call_id, originals)
    out = []
    for r in rows:
        segment = {"leg": r["leg"], "start": r["start_s"], "end": r["end_s"], "text": r["text"],
                   "words": r["words"]}
        if not originals and not r["redacted"]:
            segment = _masked(segment)
        out.append(segment)
    return out


def _masked(segment: dict[str, Any]) -> dict[str, Any]:
    words = [Word(w["w"], w["start"], w["end"], w.get("conf", 1.0))
             for w in segment["words"] or []]
    masked, _ = pii.redact_segment(Segment(segment["leg"], segment["start"], segment["end"],
                                           segment["text"], words))
    return {**segment, "text": masked.text, "words": [asdict(w) for w in masked.words]}


def _decoded(row: Any) -> dict[str, Any]:
    """A ticket row with its ``human`` values as a dict."""
    out = dict(row)
    if isinstance(out.get("human"), str):
        out["human"] = json.loads(out["human"])
    return out


async def list_agents(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM agents ORDER BY id")
    return [_iso(dict(r)) for r in rows]


async def transcription_figures(pool: asyncpg.Pool, since: Any, until: Any) -> dict[str, Any]:
    """Jobs by state now, and the calls processed in [since, until)."""
    jobs = await pool.fetch("SELECT status::text AS status, count(*) AS n FROM pgqueuer"
                            " WHERE entrypoint = $1 GROUP BY status", PROCESS_CALL_JOB)
    rows = await pool.fetch(
        "SELECT e.at, c.ended_at, e.data FROM call_events e JOIN calls c ON c.id = e.call_id"
        " WHERE e.kind = 'processed' AND e.at >= $1 AND e.at < $2", since, until)
    return figures_of({r["status"]: r["n"] for r in jobs},
                   ((r["at"], r["ended_at"], r["data"]) for r in rows))
