"""The SQL of the console: a call's context for the screen pop, the caller's
tickets, the wrap-up, and the agent's figures of the day."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from callcenter.console.model import effective_ticket
from callcenter.core import Ticket
from callcenter.residents import normalise_phone
from callcenter.tickets.service import TicketService, save_wrap_up_ticket

_CALL = ("id, caller_number, queue, priority, ivr_digits, ivr_intent, agent_id, started_at,"
         " answered_at, ended_at, disposition, disposition_by, disposition_at")
_TICKET = ("number, call_id, category, urgency, complaint_severity, status, caller_name, phone,"
           " building, unit, room, description, vip, deadline, created_at, human, human_by,"
           " human_at, judgement")


def _plain(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = {}
    for key, value in dict(row).items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif key == "human" and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out


async def call_context(pool: asyncpg.Pool, call_id: str) -> dict[str, Any] | None:
    return _plain(await pool.fetchrow(f"SELECT {_CALL} FROM calls WHERE id = $1", call_id))


async def call_ticket(pool: asyncpg.Pool, call_id: str) -> dict[str, Any] | None:
    row = _plain(await pool.fetchrow(
        f"SELECT {_TICKET} FROM tickets WHERE call_id = $1 AND auto", call_id))
    return effective_ticket(row) if row else None


async def caller_tickets(pool: asyncpg.Pool, phone: str, *, exclude_call: str | None = None,
                         limit: int = 10) -> list[dict[str, Any]]:
    """The caller's tickets, open ones first, then the most recent."""
    numbers = sorted({phone, normalise_phone(phone)} - {""})
    if not numbers:
        return []
    rows = await pool.fetch(
        f"SELECT {_TICKET} FROM tickets WHERE phone = ANY($1::text[])"
        " AND call_id IS DISTINCT FROM $2"
        " ORDER BY (status IN ('resolved', 'callback', 'closed')), created_at DESC LIMIT $3",
        numbers, exclude_call, limit)
    return [effective_ticket(r) for r in (_plain(row) for row in rows) if r]


async def save_wrap_up(pool: asyncpg.Pool, call_id: str, *, by: str, disposition: str,
                       fields: dict[str, str] | None, suggested: dict[str, Any],
                       phone: str, tickets: TicketService, role: str = "agent") -> str | None:
    """The disposition, and the agent's ticket fields as human values: an Edit of the
    call's automatic ticket, or its opening (owned by the agent) when the analysis
    has not opened it yet; the analysis fills its automatic columns later and leaves
    the human values alone. Returns the ticket number."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE calls SET disposition = $2, disposition_by = $3, disposition_at = now()"
            " WHERE id = $1", call_id, disposition, by)
        if fields is None:
            return await conn.fetchval(
                "SELECT number FROM tickets WHERE call_id = $1 AND auto", call_id)
        return await save_wrap_up_ticket(conn, call_id, fields, _suggested_ticket(
            suggested, fields, phone), by=by, role=role, policy=tickets.policy, at=tickets.now())


def _suggested_ticket(suggested: dict[str, Any], fields: dict[str, str], phone: str) -> Ticket:
    """The automatic values of a ticket the wrap-up opens: what the IVR choice and
    the directory suggested, the agent's value where they suggest nothing."""
    auto = {k: suggested.get(k) or fields.get(k) or "" for k in
            ("category", "urgency", "caller_name", "building", "unit", "room")}
    return Ticket(category=auto["category"], urgency=auto["urgency"], description="",
                  caller_name=auto["caller_name"], phone=phone, building=auto["building"],
                  unit=auto["unit"], room=auto["room"], vip=suggested.get("vip") or "none")


async def sip_account(pool: asyncpg.Pool, agent_id: str) -> dict[str, Any] | None:
    return _plain(await pool.fetchrow(
        "SELECT s.username, s.realm, s.ha1, a.name FROM sip_accounts s"
        " JOIN agents a ON a.id = s.agent_id WHERE s.agent_id = $1", agent_id))


async def today(pool: asyncpg.Pool, agent_id: str, since: datetime) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT count(*) AS answered,"
        " avg(extract(epoch FROM ended_at - answered_at)) AS aht,"
        " avg(extract(epoch FROM answered_at - queued_at)) AS asa"
        " FROM calls WHERE agent_id = $1 AND answered_at >= $2", agent_id, since)
    history = await pool.fetch(
        "SELECT agent_id, to_state, at FROM agent_state_history WHERE agent_id = $1 AND at >= $2"
        " UNION ALL (SELECT agent_id, to_state, at FROM agent_state_history"
        " WHERE agent_id = $1 AND at < $2 ORDER BY at DESC LIMIT 1)", agent_id, since)
    return {"answered": row["answered"], "aht_s": _round(row["aht"]),
            "asa_s": _round(row["asa"]), "history": [dict(r) for r in history]}


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
