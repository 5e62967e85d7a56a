"""The SQL of tickets: rows to lifecycle states and back, the writes the lifecycle's
commands ask for, and the reads of the ticket API.

A ticket row holds two kinds of values side by side: the automatic columns (what
the analysis found, or what a ticket was created with) with the people's
corrections in ``human`` (jsonb), and the lifecycle's own columns. The state the
lifecycle runs on is the effective one: the human value where there is one.
Nothing here opens a transaction: callers pass a connection inside theirs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from callcenter.core import Ticket
from callcenter.tickets.lifecycle import (
    EDITABLE_FIELDS,
    SYSTEM,
    Escalate,
    Record,
    TicketState,
    Warn,
    restore,
)

# NOTIFY channels: a ticket's wake-up moved (payload "<number> <iso time>"), and a
# warning or escalation was raised (payload: the alert as JSON).
TICKS_CHANNEL = "ticket_ticks"
ALERTS_CHANNEL = "ticket_alerts"

# The ticket's content: what people correct (in ``human``) over automatic values.
CONTENT_FIELDS: tuple[str, ...] = tuple(EDITABLE_FIELDS)
# Set once, when the row is inserted.
FIXED_FIELDS = ("number", "created_at", "channel")
STATE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TicketState))
# What ``Persist`` writes: the lifecycle's own columns.
LIFECYCLE_FIELDS = frozenset(STATE_FIELDS) - set(CONTENT_FIELDS) - set(FIXED_FIELDS)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose tickets a person may see when not all: the ones they own, and those of
    the calls their agent answered (none for an agent user without an agent).
    ``None`` in place of a Viewer: every ticket."""

    username: str
    agent_id: str | None


# ---- rows and states ------------------------------------------------------------


def decoded(row: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    """A ticket row as a dict, its jsonb values decoded (a pool without the codecs
    hands them over as text)."""
    out = dict(row)
    for key in ("human", "judgement", "details"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def effective_content(row: Mapping[str, Any]) -> dict[str, Any]:
    """The content fields as people see them: the human value over the automatic one."""
    human = row.get("human") or {}
    return {name: human.get(name, row[name]) for name in CONTENT_FIELDS}


def state_from_row(row: Mapping[str, Any]) -> TicketState:
    """The lifecycle's state of a ticket row (content values effective)."""
    data = {name: row[name] for name in STATE_FIELDS}
    data.update(effective_content(decoded(row)))
    if data["satisfaction"] is not None:
        data["satisfaction"] = int(data["satisfaction"])
    return restore(data)


def _column_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | frozenset) else value


async def lock_ticket(conn: asyncpg.Connection, number: str) -> dict[str, Any] | None:
    """The row of ``number``, locked until the end of the transaction."""
    row = await conn.fetchrow("SELECT * FROM tickets WHERE number = $1 FOR UPDATE", number)
    return decoded(row) if row else None


async def lock_auto_ticket(conn: asyncpg.Connection, call_id: str) -> dict[str, Any] | None:
    """The ticket the analysis of ``call_id`` opened (or the wrap-up opened for it)."""
    row = await conn.fetchrow(
        "SELECT * FROM tickets WHERE call_id = $1 AND auto FOR UPDATE", call_id)
    return decoded(row) if row else None


async def next_ticket_number(conn: asyncpg.Connection) -> str:
    """T<yyyymmdd>-<six digits>, from one sequence (never reused)."""
    return str(await conn.fetchval(
        "SELECT 'T' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') || '-'"
        " || lpad(nextval('ticket_number_seq')::text, 6, '0')"))


async def insert_ticket(
    conn: asyncpg.Connection, number: str, ticket: Ticket, *, created_at: datetime,
    call_id: str | None, auto: bool, history: Sequence[int] = (),
) -> int | None:
    """Insert a ticket's fixed and automatic values; its lifecycle columns follow
    from the opening's ``Persist``. None when the call already has its automatic
    ticket (a wrap-up and the analysis raced): the caller updates that one.

    A survey key the caller pressed before the ticket existed comes from the call;
    the call row is share-locked so that a survey saved meanwhile (which updates
    the call, then its tickets) either is read here or finds this ticket."""
    return await conn.fetchval(
        "INSERT INTO tickets (number, call_id, auto, channel, created_at, category, urgency,"
        " complaint_severity, repeat_complaint, vip, caller_name, phone, building, unit,"
        " room, description, escalate_to, incomplete, callback_required, history, judgement,"
        " satisfaction_ivr)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,"
        " (SELECT survey_score FROM calls WHERE id = $2 FOR SHARE))"
        " ON CONFLICT (call_id) WHERE auto DO NOTHING RETURNING id",
        number, call_id, auto, ticket.channel, created_at, ticket.category, ticket.urgency,
        ticket.complaint_severity, ticket.repeat_complaint, ticket.vip, ticket.caller_name,
        ticket.phone, ticket.building, ticket.unit, ticket.room, ticket.description,
        ticket.escalate_to, list(ticket.incomplete), ticket.callback_required, list(history),
        judgement_of(ticket))


async def update_automatic(conn: asyncpg.Connection, ticket_id: int, ticket: Ticket,
                           history: Sequence[int]) -> dict[str, Any]:
    """The analysis's values into the automatic columns (and nothing else: status,
    owner, the lifecycle and ``human`` are people's and the machine's). The row after."""
    row = await conn.fetchrow(
        "UPDATE tickets SET category = $2, urgency = $3, complaint_severity = $4,"
        " repeat_complaint = $5, vip = $6, caller_name = $7, phone = $8, building = $9,"
        " unit = $10, room = $11, description = $12, escalate_to = $13, incomplete = $14,"
        " callback_required = $15, history = $16, judgement = $17"
        " WHERE id = $1 RETURNING *",
        ticket_id, ticket.category, ticket.urgency, ticket.complaint_severity,
        ticket.repeat_complaint, ticket.vip, ticket.caller_name, ticket.phone, ticket.building,
        ticket.unit, ticket.room, ticket.description, ticket.escalate_to,
        list(ticket.incomplete), ticket.callback_required, list(history), judgement_of(ticket))
    return decoded(row)


def judgement_of(ticket: Ticket) -> dict[str, Any]:
    """Why the classifier decided as it did (shown to the agent who confirms it)."""
    return {"needs_confirmation": list(ticket.needs_confirmation),
            "evidence": {k: list(v) for k, v in ticket.evidence.items()},
            "complaint": dict(ticket.complaint)}


async def set_human(conn: asyncpg.Connection, ticket_id: int, values: Mapping[str, Any], *,
                    by: str, at: datetime) -> None:
    """People's values, beside the automatic ones; the analysis never writes these."""
    await conn.execute(
        "UPDATE tickets SET human = human || $2::jsonb, human_by = $3, human_at = $4"
        " WHERE id = $1", ticket_id, dict(values), by, at)


# ---- the commands' writes -------------------------------------------------------


async def persist(conn: asyncpg.Connection, ticket_id: int, changed: Mapping[str, Any]) -> None:
    """The lifecycle columns among ``changed`` (content values are written by their
    owner: the analysis into the columns, people into ``human``)."""
    names = sorted(name for name in changed if name in LIFECYCLE_FIELDS)
    if not names:
        return
    # Column names come from TicketState's own fields, never from input.
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    await conn.execute(f"UPDATE tickets SET {assignments} WHERE id = $1", ticket_id,
                       *[_column_value(changed[name]) for name in names])


async def insert_history(conn: asyncpg.Connection, ticket_id: int, record: Record,
                         role: str) -> int:
    return int(await conn.fetchval(
        "INSERT INTO ticket_history (ticket_id, at, by, role, what, from_status, to_status,"
        " details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        ticket_id, record.at, record.by, role if record.by != SYSTEM else SYSTEM, record.what,
        record.from_status, record.to_status, plain_json(record.details)))


async def add_history(conn: asyncpg.Connection | asyncpg.Pool, number: str, *, at: datetime,
                      by: str, what: str, details: dict[str, Any], role: str = SYSTEM) -> None:
    """A history entry that is no transition (a notice sent, a file attached): the
    status stays what it is."""
    await conn.execute(
        "INSERT INTO ticket_history (ticket_id, at, by, role, what, from_status, to_status,"
        " details) SELECT id, $2, $3, $4, $5, status, status, $6 FROM tickets WHERE number = $1",
        number, at, by, role, what, plain_json(details))


async def insert_alert(conn: asyncpg.Connection, ticket_id: int, alarm: Warn | Escalate,
                       at: datetime) -> dict[str, Any]:
    kind, level = ("warn", 0) if isinstance(alarm, Warn) else ("escalate", alarm.level)
    detail = alarm.detail if isinstance(alarm, Warn) else ""
    row = await conn.fetchrow(
        "INSERT INTO ticket_alerts (ticket_id, at, kind, recipient, level, reason, clock, due,"
        " detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " RETURNING id, at, kind, recipient, level, reason, clock, due",
        ticket_id, at, kind, alarm.to, level, alarm.reason, alarm.clock, alarm.due, detail)
    return dict(row)


def plain_json(value: Mapping[str, Any]) -> dict[str, Any]:
    """Only JSON's own types (times as ISO text), for a jsonb column."""
    return dict(json.loads(json.dumps(dict(value), ensure_ascii=False, default=_iso)))


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


# ---- the SLA ticker -------------------------------------------------------------


async def lock_due_ticket(conn: asyncpg.Connection, now: datetime,
                          done: Sequence[int]) -> dict[str, Any] | None:
    """One ticket whose wake-up is due, locked; rows another worker holds are
    skipped, so two tickers never tick the same ticket at once."""
    row = await conn.fetchrow(
        "SELECT * FROM tickets WHERE next_tick <= $1 AND NOT (id = ANY($2::bigint[]))"
        " ORDER BY next_tick LIMIT 1 FOR UPDATE SKIP LOCKED", now, list(done))
    return decoded(row) if row else None


async def postpone_tick(conn: asyncpg.Connection | asyncpg.Pool, ticket_id: int,
                        until: datetime) -> None:
    await conn.execute("UPDATE tickets SET next_tick = $2 WHERE id = $1", ticket_id, until)


async def earliest_tick(pool: asyncpg.Pool) -> datetime | None:
    value = await pool.fetchval("SELECT min(next_tick) FROM tickets")
    return value if isinstance(value, datetime) else None


# ---- reads of the API -----------------------------------------------------------


_VISIBLE = ("(NOT $R::boolean OR t.owner = $U::text OR EXISTS (SELECT 1 FROM calls c"
            " WHERE c.id = t.call_id AND c.agent_id = $V::text))")


def _visible(viewer: Viewer | None, first: int) -> tuple[str, list[Any]]:
    """The visibility condition with its three parameters numbered from ``first``."""
    clause = (_VISIBLE.replace("$R", f"${first}").replace("$U", f"${first + 1}")
              .replace("$V", f"${first + 2}"))
    if viewer is None:
        return clause, [False, None, None]
    return clause, [True, viewer.username, viewer.agent_id]


async def visible_ticket(pool: asyncpg.Pool | asyncpg.Connection, number: str,
                         viewer: Viewer | None) -> dict[str, Any] | None:
    clause, params = _visible(viewer, 2)
    row = await pool.fetchrow(f"SELECT t.* FROM tickets t WHERE t.number = $1 AND {clause}",
                              number, *params)
    return decoded(row) if row else None


def may_see(row: Mapping[str, Any], viewer: Viewer | None, call_agent: str | None) -> bool:
    """The same rule as ``_VISIBLE``, for a row already read (and locked)."""
    return viewer is None or row.get("owner") == viewer.username or (
        call_agent is not None and viewer.agent_id is not None and call_agent == viewer.agent_id)


async def call_agent_of(conn: asyncpg.Connection | asyncpg.Pool,
                        call_id: str | None) -> str | None:
    if call_id is None:
        return None
    value = await conn.fetchval("SELECT agent_id FROM calls WHERE id = $1", call_id)
    return str(value) if value is not None else None


async def owner_for_call(conn: asyncpg.Connection, call_id: str) -> str | None:
    """Who received the call: the user linked to the agent who answered it."""
    value = await conn.fetchval(
        "SELECT u.username FROM calls c JOIN users u ON u.agent_id = c.agent_id"
        " WHERE c.id = $1", call_id)
    return str(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class ListFilter:
    status: str | None = None
    category: str | None = None
    urgency: str | None = None
    owner: str | None = None
    building: str | None = None
    overdue: bool | None = None
    q: str | None = None
    before: int | None = None  # older than this id: the next page
    after: int | None = None  # newer than this id: the previous page
    limit: int = 50


def _like(text: str) -> str:
    """A LIKE pattern that finds ``text`` literally (its % and _ escaped)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_tickets(pool: asyncpg.Pool, where: ListFilter, viewer: Viewer | None,
                       now: datetime) -> list[dict[str, Any]]:
    """Newest first (by id, the order of receipt), filtered on effective values."""
    clause, params = _visible(viewer, 1)
    conditions = [clause]
    args: list[Any] = list(params)

    def add(sql: str, value: Any) -> None:
        args.append(value)
        conditions.append(sql.replace("$?", f"${len(args)}"))

    if where.status is not None:
        add("t.status = $?", where.status)
    for name in ("category", "urgency", "building"):
        value = getattr(where, name)
        if value is not None:
            add(f"COALESCE(t.human->>'{name}', t.{name}) = $?", value)
    if where.owner is not None:
        add("t.owner = $?", where.owner)
    if where.overdue is not None:
        late = "(t.status <> 'closed' AND t.deadline < $?)"
        add(late if where.overdue else f"NOT COALESCE({late}, false)", now)
    if where.q:
        add("(t.number ILIKE $? OR COALESCE(t.human->>'phone', t.phone) ILIKE $?"
            " OR COALESCE(t.human->>'description',"
            " t.description) ILIKE $? OR COALESCE(t.human->>'caller_name', t.caller_name)"
            " ILIKE $?)", _like(where.q))
    if where.before is not None:
        add("t.id < $?", where.before)
    if where.after is not None:
        add("t.id > $?", where.after)
    args.append(where.limit)
    # The previous page is the ``limit`` oldest of the newer ones, shown newest first.
    order = "ASC" if where.after is not None else "DESC"
    rows = await pool.fetch(
        f"SELECT t.* FROM tickets t WHERE {' AND '.join(conditions)}"
        f" ORDER BY t.id {order} LIMIT ${len(args)}", *args)
    found = [decoded(r) for r in rows]
    return found[::-1] if where.after is not None else found


async def history_of(pool: asyncpg.Pool, ticket_id: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT id, at, by, role, what, from_status, to_status, details FROM ticket_history"
        " WHERE ticket_id = $1 ORDER BY id", ticket_id)
    return [decoded(r) for r in rows]


async def attachments_of(pool: asyncpg.Pool, ticket_id: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT id, filename, content_type, size_bytes, sha256, uploaded_by, at"
        " FROM ticket_attachments WHERE ticket_id = $1 ORDER BY at, id", ticket_id)
    return [dict(r) for r in rows]


async def alerts_of(pool: asyncpg.Pool, ticket_id: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"SELECT {_ALERT_COLUMNS} FROM ticket_alerts a JOIN tickets t ON t.id = a.ticket_id"
        " WHERE a.ticket_id = $1 ORDER BY a.id", ticket_id)
    return [dict(r) for r in rows]


_ALERT_COLUMNS = ("a.id, t.number, a.at, a.kind, a.recipient, a.level, a.reason, a.clock,"
                  " a.due, a.detail, a.acknowledged_by, a.acknowledged_at")


async def open_alerts(pool: asyncpg.Pool, recipients: Sequence[str] | None,
                      limit: int) -> list[dict[str, Any]]:
    """Alerts nobody acknowledged yet, newest first: those to ``recipients``, or all."""
    rows = await pool.fetch(
        f"SELECT {_ALERT_COLUMNS} FROM ticket_alerts a JOIN tickets t ON t.id = a.ticket_id"
        " WHERE a.acknowledged_at IS NULL AND ($1::text[] IS NULL OR a.recipient = ANY($1))"
        " ORDER BY a.id DESC LIMIT $2",
        list(recipients) if recipients is not None else None, limit)
    return [dict(r) for r in rows]


async def acknowledge_alert(pool: asyncpg.Pool, alert_id: int,
                            recipients: Sequence[str] | None, *, by: str,
                            at: datetime) -> dict[str, Any] | None:
    """Mark an alert seen (the first acknowledgement stands); None when there is no
    such alert for these recipients."""
    row = await pool.fetchrow(
        "WITH hit AS (UPDATE ticket_alerts SET acknowledged_by = COALESCE(acknowledged_by, $3),"
        " acknowledged_at = COALESCE(acknowledged_at, $4)"
        " WHERE id = $1 AND ($2::text[] IS NULL OR recipient = ANY($2)) RETURNING *)"
        f" SELECT {_ALERT_COLUMNS} FROM hit a JOIN tickets t ON t.id = a.ticket_id",
        alert_id, list(recipients) if recipients is not None else None, by, at)
    return dict(row) if row else None


async def insert_attachment(conn: asyncpg.Connection, ticket_id: int, *, attachment_id: str,
                            filename: str, content_type: str, size_bytes: int, sha256: str,
                            stored_name: str, by: str, at: datetime) -> dict[str, Any]:
    row = await conn.fetchrow(
        "INSERT INTO ticket_attachments (id, ticket_id, filename, content_type, size_bytes,"
        " sha256, stored_name, uploaded_by, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " RETURNING id, filename, content_type, size_bytes, sha256, uploaded_by, at",
        attachment_id, ticket_id, filename, content_type, size_bytes, sha256, stored_name, by, at)
    return dict(row)


async def attachment(pool: asyncpg.Pool, ticket_id: int,
                     attachment_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT * FROM ticket_attachments WHERE ticket_id = $1 AND id = $2",
        ticket_id, attachment_id)
    return dict(row) if row else None


async def attachment_ids(conn: asyncpg.Connection, ticket_id: int) -> set[str]:
    rows = await conn.fetch("SELECT id FROM ticket_attachments WHERE ticket_id = $1", ticket_id)
    return {str(r["id"]) for r in rows}
