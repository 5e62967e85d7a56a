"""The ticket lifecycle's executor: the pure machine (``lifecycle.py``) with the I/O
around it, like ``acd/executor.py`` around ``acd/machine.py``.

Every change of a ticket is one transaction: lock the row, restore its state
(effective values: the human value beside the automatic one), ``step``, and
perform the commands on the same connection:

- ``Persist``  -> UPDATE of the lifecycle columns (content values are written by
  their owner: the analysis into the automatic columns, people into ``human``);
- ``Record``   -> a ``ticket_history`` row with the actor's role;
- ``Notify``   -> a ``notify_caller`` job, queued in the same transaction (a
  notice is never sent for a change that rolled back, nor lost for one that
  committed);
- ``Warn`` / ``Escalate`` -> a ``ticket_alerts`` row and NOTIFY ``ticket_alerts``;
- ``Schedule`` -> NOTIFY ``ticket_ticks`` (``next_tick`` itself came with Persist),
  which wakes the SLA ticker (``ticker.py``);
- ``Rejected`` -> ``TicketRejected``: 409 for a transition the status does not
  allow, 422 for anything else the machine refused, with its error id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.errors import RetryRequested
from pgqueuer.queries import Queries

from callcenter.core import Ticket
from callcenter.errors import BadRequest, NotFound, ServiceError, Unavailable, Unprocessable
from callcenter.tickets import store
from callcenter.tickets.lifecycle import (
    CLOSED,
    E_INVALID_TRANSITION,
    SYSTEM,
    Command,
    Edit,
    Escalate,
    Event,
    Notify,
    Persist,
    Policy,
    Record,
    Rejected,
    Resolve,
    Schedule,
    TicketState,
    Warn,
    clocks,
    default_policy,
    open_ticket,
    step,
)
from callcenter.tickets.notify import (
    Notifier,
    PermanentNotifyError,
    TransientNotifyError,
    notice_from,
)
from callcenter.tickets.store import Viewer

log = logging.getLogger("callcenter.tickets")

NOTIFY_CALLER_JOB = "notify_caller"
# A notice the gateway keeps refusing for now is tried this often, the waits
# doubling from the first delay up to the longest, then held for a person.
NOTICE_ATTEMPTS = 8
NOTICE_FIRST_DELAY = timedelta(seconds=30)
NOTICE_MAX_DELAY = timedelta(hours=1)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# ---- rejections -----------------------------------------------------------------

_MESSAGES = {
    E_INVALID_TRANSITION: "this event is not allowed in the ticket's status",
    "ticket.notes_required": "resolving needs notes on the fix",
    "ticket.note_required": "a note needs text",
    "ticket.reason_required": "this needs a reason",
    "ticket.satisfaction_out_of_range": "satisfaction is 1 to 5",
    "ticket.unknown_department": "no such department",
    "ticket.owner_required": "name the new owner",
    "ticket.unknown_field": "that field cannot be edited",
    "ticket.invalid_value": "that value is not allowed for the field",
    "ticket.naive_time": "the event's time has no time zone",
}


class TicketRejected(ServiceError):
    """The lifecycle refused an event; its error id travels as the API's ``error``."""

    def __init__(self, rejected: Rejected) -> None:
        super().__init__(_MESSAGES.get(rejected.error_id, "the ticket refused this change"),
                         error=rejected.error_id, **store.plain_json(rejected.details))
        self.status = 409 if rejected.error_id == E_INVALID_TRANSITION else 422


def _refused(commands: Sequence[Command]) -> None:
    for command in commands:
        if isinstance(command, Rejected):
            raise TicketRejected(command)


# ---- the executor ---------------------------------------------------------------


async def execute(conn: asyncpg.Connection, ticket_id: int, number: str,
                  commands: Sequence[Command], *, role: str, at: datetime) -> None:
    """Perform ``commands`` inside the caller's transaction (see the module docstring)."""
    _refused(commands)
    last_record: int | None = None
    for command in commands:
        if isinstance(command, Persist):
            await store.persist(conn, ticket_id, command.fields)
        elif isinstance(command, Record):
            last_record = await store.insert_history(conn, ticket_id, command, role)
        elif isinstance(command, Notify):
            await enqueue_notice(conn, command, last_record)
        elif isinstance(command, Warn | Escalate):
            alert = await store.insert_alert(conn, ticket_id, command, at)
            await conn.execute("SELECT pg_notify($1, $2)", store.ALERTS_CHANNEL,
                               json.dumps({**store.plain_json(alert), "number": number}))
        elif isinstance(command, Schedule):
            await conn.execute("SELECT pg_notify($1, $2)", store.TICKS_CHANNEL,
                               f"{number} {command.at.isoformat()}")


async def enqueue_notice(conn: asyncpg.Connection, command: Notify,
                         history_id: int | None) -> None:
    """Queue the notice on this connection. The history entry of the transition that
    asked for it makes the key: one notice per transition, however often retried."""
    payload = json.dumps({"number": command.number, "kind": command.kind,
                          "phone": command.phone, "category": command.category,
                          "params": command.params, "round": command.round,
                          "history_id": history_id},
                         ensure_ascii=False).encode()
    await Queries(AsyncpgDriver(conn)).enqueue(
        NOTIFY_CALLER_JOB, payload,
        dedupe_key=f"notice:{command.number}:{command.kind}:{history_id}", on_conflict="skip")


async def open_on(
    conn: asyncpg.Connection, ticket: Ticket, *, at: datetime, by: str, role: str,
    owner: str | None, call_id: str | None, auto: bool, policy: Policy,
    history: Sequence[int] = (), human: Mapping[str, Any] | None = None,
) -> tuple[int, str] | None:
    """Open a ticket through the lifecycle: its row (``ticket``'s values as the
    automatic ones, ``human`` beside them), history, receipt notice, clock.
    None when the call's automatic ticket exists already (opened meanwhile)."""
    number = await store.next_ticket_number(conn)
    effective = replace(ticket, **human) if human else ticket
    _state, commands = open_ticket(number, effective, at=at, by=by, owner=owner, policy=policy)
    ticket_id = await store.insert_ticket(conn, number, ticket, created_at=at, call_id=call_id,
                                          auto=auto, history=history)
    if ticket_id is None:
        return None
    if human:
        await store.set_human(conn, ticket_id, human, by=by, at=at)
    await execute(conn, ticket_id, number, commands, role=role, at=at)
    return ticket_id, number


async def apply_locked(conn: asyncpg.Connection, row: Mapping[str, Any], event: Event, *,
                       role: str, policy: Policy) -> TicketState:
    """``event`` on a ticket row the caller has locked. A person's Edit also stores
    every value they gave as a human value (an unchanged one too: a confirmation
    the analysis must not overturn later)."""
    state, commands = step(store.state_from_row(row), event, policy)
    _refused(commands)
    if isinstance(event, Edit) and event.by != SYSTEM:
        await store.set_human(conn, row["id"], event.changes, by=event.by, at=event.at)
    await execute(conn, row["id"], row["number"], commands, role=role, at=event.at)
    return state


# ---- the analysis and the wrap-up ------------------------------------------------


async def save_automatic(conn: asyncpg.Connection, call_id: str, ticket: Ticket,
                         history: Sequence[int], *, policy: Policy, at: datetime) -> str:
    """The analysis's ticket for a call: opened the first time (owned by whoever
    answered the call), afterwards only its automatic values and judgement are
    refreshed. Status, owner, the lifecycle and people's values are never touched;
    when the effective values change, the machine re-evaluates the clock."""
    row = await store.lock_auto_ticket(conn, call_id)
    if row is None:
        owner = await store.owner_for_call(conn, call_id)
        opened = await open_on(conn, ticket, at=at, by=SYSTEM, role=SYSTEM, owner=owner,
                               call_id=call_id, auto=True, history=history, policy=policy)
        if opened is not None:
            return opened[1]
        row = await store.lock_auto_ticket(conn, call_id)  # a wrap-up opened it meanwhile
        assert row is not None
    await _refresh_automatic(conn, row, ticket, history, policy=policy, at=at)
    return str(row["number"])


async def _refresh_automatic(conn: asyncpg.Connection, row: Mapping[str, Any], ticket: Ticket,
                             history: Sequence[int], *, policy: Policy, at: datetime) -> None:
    before = store.state_from_row(row)
    after = await store.update_automatic(conn, row["id"], ticket, history)
    changes = {name: value for name, value in store.effective_content(after).items()
               if getattr(before, name) != value}
    if not changes or before.status == CLOSED:
        return
    # What people see changed (no human value covers it): the machine re-evaluates
    # the clock and raises what the new values call for, as for any edit.
    _state, commands = step(before, Edit(SYSTEM, at, changes), policy)
    if any(isinstance(c, Rejected) for c in commands):
        log.warning("ticket %s: analysis values %s not applied to the lifecycle: %s",
                    row["number"], sorted(changes), commands)
        return
    await execute(conn, row["id"], row["number"], commands, role=SYSTEM, at=at)


async def save_wrap_up_ticket(conn: asyncpg.Connection, call_id: str, fields: Mapping[str, str],
                              automatic: Ticket, *, by: str, role: str, policy: Policy,
                              at: datetime) -> str:
    """The agent's ticket fields of a call, as human values. Opens the call's
    automatic ticket when the analysis has not yet (``automatic``: what the IVR and
    the directory suggest; the analysis fills the same row later), owned by the
    agent who received the call; otherwise an Edit of that ticket."""
    row = await store.lock_auto_ticket(conn, call_id)
    if row is None:
        opened = await open_on(conn, automatic, at=at, by=by, role=role, owner=by,
                               call_id=call_id, auto=True, policy=policy, human=fields)
        if opened is not None:
            return opened[1]
        row = await store.lock_auto_ticket(conn, call_id)
        assert row is not None
    await apply_locked(conn, row, Edit(by, at, dict(fields)), role=role, policy=policy)
    return str(row["number"])


# ---- notices --------------------------------------------------------------------


def notice_delay(attempts: int, retry_after_s: float | None) -> timedelta:
    """The wait before the next try: doubling per attempt, at least what the
    gateway asked for (Retry-After), never more than the longest wait."""
    delay = min(NOTICE_FIRST_DELAY * (2 ** attempts), NOTICE_MAX_DELAY)
    if retry_after_s is not None:
        delay = max(delay, timedelta(seconds=min(retry_after_s, NOTICE_MAX_DELAY.total_seconds())))
    return delay


def notify_of(payload: bytes) -> Notify:
    data = json.loads(payload)
    return Notify(str(data["number"]), str(data["kind"]), str(data["phone"]),
                  str(data.get("category", "")), dict(data.get("params") or {}),
                  int(data.get("round") or 0))


async def send_notice(pool: asyncpg.Pool, notifier: Notifier, payload: bytes, *,
                      attempts: int, now: Clock = utc_now) -> None:
    """The ``notify_caller`` job: send the notice; the outcome goes to the ticket's
    history. A permanent refusal is recorded and the job ends (sending it again
    would be refused again); a transient one is retried later, and after the last
    attempt the job is held, never dropped."""
    command = notify_of(payload)
    notice = notice_from(command)
    details: dict[str, Any] = {"kind": command.kind, "ref": notice.ref}
    try:
        await notifier.send(notice)
    except PermanentNotifyError as exc:
        await store.add_history(pool, command.number, at=now(), by=SYSTEM, what="notice_failed",
                                details={**details, "status": exc.status, "error": str(exc)})
        return
    except TransientNotifyError as exc:
        if attempts + 1 < NOTICE_ATTEMPTS:
            raise RetryRequested(delay=notice_delay(attempts, exc.retry_after_s),
                                 reason=str(exc)) from exc
        await store.add_history(pool, command.number, at=now(), by=SYSTEM, what="notice_held",
                                details={**details, "status": exc.status, "error": str(exc),
                                         "attempts": attempts + 1})
        raise
    await store.add_history(pool, command.number, at=now(), by=SYSTEM, what="notice_sent",
                            details=details)


# ---- attachments ----------------------------------------------------------------

# What may be attached: photos and PDF documents, each recognised by its first
# bytes too (a client's Content-Type is a claim, not a fact).
ATTACHMENT_TYPES = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp",
                    "application/pdf": ".pdf"}
_MAGIC = {"image/jpeg": re.compile(rb"\A\xff\xd8\xff"),
          "image/png": re.compile(rb"\A\x89PNG\r\n\x1a\n"),
          "image/webp": re.compile(rb"\ARIFF....WEBP", re.DOTALL),
          "application/pdf": re.compile(rb"\A%PDF-")}
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]+")
MAX_FILENAME = 200


class AttachmentRefused(ServiceError):
    status = 415
    error_id = "attachment.type_not_allowed"


class AttachmentTooLarge(ServiceError):
    status = 413
    error_id = "attachment.too_large"


@dataclass(frozen=True, slots=True)
class AttachmentRules:
    folder: Path
    max_bytes: int


def display_name(filename: str | None) -> str:
    """The client's file name, for showing only: no folders, no control characters
    (some clients percent-encode it: decoded first, so no folder hides in it)."""
    plain = unquote(filename or "")
    name = _UNSAFE_NAME.sub("_", plain.rsplit("/", 1)[-1].rsplit("\\", 1)[-1])
    return name.strip(" .")[:MAX_FILENAME] or "attachment"


def check_type(content_type: str) -> None:
    if content_type not in ATTACHMENT_TYPES:
        raise AttachmentRefused(f"only {', '.join(ATTACHMENT_TYPES)} may be attached",
                                content_type=content_type[:100],
                                allowed=sorted(ATTACHMENT_TYPES))


def check_magic(content_type: str, head: bytes) -> None:
    if not _MAGIC[content_type].match(head):
        raise AttachmentRefused("the file is not what its Content-Type says",
                                error="attachment.content_mismatch", content_type=content_type)


async def read_limited(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """The whole upload, refused as soon as it grows past ``max_bytes``."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise AttachmentTooLarge(f"at most {max_bytes} bytes", max_bytes=max_bytes)
        parts.append(chunk)
    return b"".join(parts)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(path)  # whole or not at all


# ---- the service ----------------------------------------------------------------


class TicketService:
    """Tickets for the web and the worker: events, new tickets, attachments, and
    the documents the API shows. ``now`` is the one clock (tests drive it)."""

    def __init__(self, pool: asyncpg.Pool, *, policy: Policy | None = None,
                 now: Clock = utc_now, attachments: AttachmentRules | None = None) -> None:
        self.pool = pool
        self.policy = policy or default_policy()
        self.now = now
        self.attachments = attachments

    async def apply(self, number: str, event: Event, *, role: str,
                    viewer: Viewer | None = None) -> TicketState:
        """``event`` (which says who and when) on ticket ``number``, in one
        transaction. NotFound when ``viewer`` may not see the ticket."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._locked(conn, number, viewer)
            if isinstance(event, Resolve):
                await self._check_photos(conn, row, event.photos)
            return await apply_locked(conn, row, event, role=role, policy=self.policy)

    async def create(self, ticket: Ticket, *, by: str, role: str,
                     call_id: str | None = None) -> str:
        """A ticket a person received (walk-in, online, or a second problem of a
        call): owned by that person. Returns its number."""
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                opened = await open_on(conn, ticket, at=self.now(), by=by, role=role, owner=by,
                                       call_id=call_id, auto=False, policy=self.policy)
            except asyncpg.ForeignKeyViolationError as exc:
                raise BadRequest("no such call", error="invalid_input",
                                 fields=[{"field": "call_id", "problem": "no such call"}]) from exc
        assert opened is not None  # only an automatic ticket can meet another
        return opened[1]

    async def document(self, number: str, viewer: Viewer | None) -> dict[str, Any]:
        """Everything about one ticket: its row, state, clocks, history, files, alerts."""
        row = await store.visible_ticket(self.pool, number, viewer)
        if row is None:
            raise NotFound(f"no ticket {number}", number=number)
        state = store.state_from_row(row)
        return {"row": row, "state": state, "clocks": clocks(state, self.policy),
                "history": await store.history_of(self.pool, row["id"]),
                "attachments": await store.attachments_of(self.pool, row["id"]),
                "alerts": await store.alerts_of(self.pool, row["id"])}

    async def add_attachment(self, number: str, *, filename: str | None, content_type: str,
                             chunks: AsyncIterator[bytes], by: str, role: str,
                             viewer: Viewer | None) -> dict[str, Any]:
        """Store one file of ticket ``number`` under a name of our making; the row and
        a history entry in one transaction (the file is removed if that fails)."""
        rules = self._attachment_rules()
        if await store.visible_ticket(self.pool, number, viewer) is None:
            raise NotFound(f"no ticket {number}", number=number)
        check_type(content_type)
        data = await read_limited(chunks, rules.max_bytes)
        if not data:
            raise BadRequest("the file is empty", error="attachment.empty")
        check_magic(content_type, data[:16])
        attachment_id = uuid.uuid4().hex
        stored_name = f"{attachment_id[:2]}/{attachment_id}{ATTACHMENT_TYPES[content_type]}"
        path = rules.folder / stored_name
        await asyncio.to_thread(_write_file, path, data)
        try:
            return await self._record_attachment(
                number, viewer, attachment_id=attachment_id, filename=display_name(filename),
                content_type=content_type, size_bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(), stored_name=stored_name, by=by, role=role)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    async def attachment_file(self, number: str, attachment_id: str,
                              viewer: Viewer | None) -> tuple[dict[str, Any], Path]:
        rules = self._attachment_rules()
        row = await store.visible_ticket(self.pool, number, viewer)
        found = await store.attachment(self.pool, row["id"], attachment_id) if row else None
        path = (rules.folder / found["stored_name"]).resolve() if found else None
        if found is None or path is None or rules.folder.resolve() not in path.parents \
                or not path.is_file():
            raise NotFound("no such attachment", number=number, attachment_id=attachment_id[:64])
        return found, path

    async def _record_attachment(self, number: str, viewer: Viewer | None, *, by: str,
                                 role: str, **attachment: Any) -> dict[str, Any]:
        at = self.now()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._locked(conn, number, viewer)
            saved = await store.insert_attachment(conn, row["id"], by=by, at=at, **attachment)
            await store.add_history(conn, number, at=at, by=by, role=role, what="attached",
                                    details={"attachment_id": saved["id"],
                                             "filename": saved["filename"],
                                             "size_bytes": saved["size_bytes"]})
            return saved

    def _attachment_rules(self) -> AttachmentRules:
        if self.attachments is None:
            raise Unavailable("attachments are not configured", error="attachments_disabled")
        return self.attachments

    async def _locked(self, conn: asyncpg.Connection, number: str,
                      viewer: Viewer | None) -> dict[str, Any]:
        row = await store.lock_ticket(conn, number)
        if row is None or not store.may_see(row, viewer,
                                            await store.call_agent_of(conn, row["call_id"])):
            raise NotFound(f"no ticket {number}", number=number)
        return row

    async def _check_photos(self, conn: asyncpg.Connection, row: Mapping[str, Any],
                            photos: Sequence[str]) -> None:
        unknown = sorted(set(photos) - await store.attachment_ids(conn, row["id"]))
        if unknown:
            raise Unprocessable("photos must be attachments of this ticket",
                                error="ticket.unknown_photo", photos=unknown[:20])


__all__ = ["NOTIFY_CALLER_JOB", "AttachmentRules", "TicketRejected", "TicketService",
           "Viewer", "execute", "save_automatic", "save_wrap_up_ticket", "send_notice",
           "utc_now"]
