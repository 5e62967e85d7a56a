"""The ticket API: routes, their request and response models.

Who may call which route is declared with the routes (``web/app.py``): reading
for everyone signed in, changing for agents, supervisors and admins (QA reads).
Which tickets: an agent those of the calls they answered and those they own
(any other is "not found"); everyone else every ticket. Every change goes
through the lifecycle (``service.py``) and into the audit log.

Bad input is a 400 (``web/openapi.py``); what the lifecycle refuses is a 409 (not
in this status) or a 422 (a missing reason, an unknown department...), each with
the lifecycle's error id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from callcenter.auth.http import audit_request, principal
from callcenter.auth.model import MANAGERS, USERNAME, Principal, Role
from callcenter.core import CATEGORIES, COMPLAINT_SEVERITIES, URGENCIES, VIP_KINDS, Ticket
from callcenter.errors import BadRequest, Forbidden, NotFound
from callcenter.keys import POOL, TICKETS
from callcenter.tickets import lifecycle as lc
from callcenter.tickets import store
from callcenter.tickets.service import TicketService
from callcenter.tickets.store import ListFilter, Viewer
from callcenter.web.openapi import TEXT, Strict, endpoint, json_body, query_of

# ---- vocabulary (the contract of hotline-standards.md section 5) ----------------

Category = Literal["engineering", "cleaning", "security", "landscaping", "complaint",
                   "consultation"]
Urgency = Literal["P1", "P2", "P3", "P4"]
Severity = Literal["minor", "important", "major"]
Vip = Literal["none", "elderly", "disabled"]
Status = Literal["new", "dispatched", "in_progress", "resolved", "callback", "closed"]
Channel = Literal["phone", "walk_in", "online"]
# Spelled out for the schema and for mypy; checked against the one vocabulary here.
for _literal, _values in ((Category, CATEGORIES), (Urgency, URGENCIES),
                          (Severity, COMPLAINT_SEVERITIES), (Vip, VIP_KINDS),
                          (Status, lc.STATUSES)):
    if get_args(_literal) != tuple(_values):
        raise AssertionError(f"ticket API vocabulary out of date: {_values}")

Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=50, pattern=TEXT)]
Place = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20, pattern=TEXT)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{0,20}$")]
Description = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                               max_length=2000, pattern=TEXT)]
Note = Annotated[str, StringConstraints(max_length=2000, pattern=TEXT)]
Username = Annotated[str, StringConstraints(pattern=USERNAME.pattern)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
AttachmentId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
CallId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
WRITERS = frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN})


# ---- request bodies ---------------------------------------------------------------


class TicketCreate(Strict):
    """A ticket a person received: at the service centre, online, or a second
    problem of a call (``call_id``)."""

    channel: Channel
    category: Category
    urgency: Urgency
    description: Description
    caller_name: Name = ""
    phone: Phone = ""
    building: Place = ""
    unit: Place = ""
    room: Place = ""
    complaint_severity: Severity | None = None
    repeat_complaint: bool = False
    vip: Vip = "none"
    call_id: CallId | None = None


def _not_null_schema(schema: dict[str, Any]) -> None:
    """The field may be left out, but not null: the schema says just its type."""
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if branches:
        schema.update(branches[0])
    schema.pop("default", None)


def _optional() -> Any:
    return Field(default=None, json_schema_extra=_not_null_schema)


class TicketEdit(Strict):
    """People's corrections (human values, beside the automatic ones): any of these
    fields, none null but complaint_severity (null: no severity)."""

    category: Category | None = _optional()
    urgency: Urgency | None = _optional()
    complaint_severity: Severity | None = None
    repeat_complaint: bool | None = _optional()
    vip: Vip | None = _optional()
    caller_name: Name | None = _optional()
    phone: Phone | None = _optional()
    building: Place | None = _optional()
    unit: Place | None = _optional()
    room: Place | None = _optional()
    description: Description | None = _optional()

    @field_validator("category", "urgency", "repeat_complaint", "vip", "caller_name", "phone",
                     "building", "unit", "room", "description")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, not null")
        return value

    @model_validator(mode="after")
    def _something_given(self) -> TicketEdit:
        if not self.model_fields_set:
            raise ValueError("give at least one field")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


class DispatchBody(Strict):
    """To a department: named, else chosen by specialty (sub-type, description)."""

    type: Literal["dispatch"]
    department: Identifier | None = None
    assignee: Name | None = None
    subtype: Identifier | None = None


class StartBody(Strict):
    """Work begins (for P1: staff are on site)."""

    type: Literal["start"]


class NoteBody(Strict):
    type: Literal["note"]
    text: Note


class ResolveBody(Strict):
    """The fix: notes (required) and photos (ids of this ticket's attachments)."""

    type: Literal["resolve"]
    notes: Annotated[str, StringConstraints(max_length=4000, pattern=TEXT)]
    photos: Annotated[list[AttachmentId], Field(max_length=20)] = []  # noqa: RUF012 (pydantic copies defaults)


class CallbackBody(Strict):
    """The call-back to the resident (回访), with their satisfaction."""

    type: Literal["callback"]
    satisfaction: Annotated[int, Field(ge=lc.SATISFACTION_MIN, le=lc.SATISFACTION_MAX)]
    note: Note = ""


class CloseBody(Strict):
    """Close; straight from resolved only with a reason (nobody reachable)."""

    type: Literal["close"]
    reason: Note = ""


class ReopenBody(Strict):
    type: Literal["reopen"]
    reason: Note


class ContactedBody(Strict):
    """First contact with the resident (a complaint's 12 h rule)."""

    type: Literal["contacted"]
    note: Note = ""


class AssignBody(Strict):
    """A new owner (supervisors and admins): who follows the ticket up from now."""

    type: Literal["assign"]
    owner: Username


EventBodies = (DispatchBody | StartBody | NoteBody | ResolveBody | CallbackBody | CloseBody
               | ReopenBody | ContactedBody | AssignBody)


class TicketEvent(RootModel[Annotated[EventBodies, Field(discriminator="type")]]):
    """One event of the lifecycle, by its ``type``."""


class TicketListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status | None = None
    category: Category | None = None
    urgency: Urgency | None = None
    overdue: bool | None = None
    owner: Annotated[str, StringConstraints(max_length=64, pattern=TEXT)] | None = None
    building: Place | None = None
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100,
                                        pattern=TEXT)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    before: Annotated[int, Field(ge=1, le=2**62)] | None = None
    after: Annotated[int, Field(ge=1, le=2**62)] | None = None

    @field_validator("after")
    @classmethod
    def _one_direction(cls, after: int | None, info: ValidationInfo) -> int | None:
        if after is not None and info.data.get("before") is not None:
            raise ValueError("give before (next page) or after (previous page), not both")
        return after


class AlertQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Annotated[int, Field(ge=1, le=500)] = 100


# ---- responses --------------------------------------------------------------------


class ContentOut(BaseModel):
    category: str
    urgency: str
    complaint_severity: str | None
    repeat_complaint: bool
    vip: str
    caller_name: str
    phone: str
    building: str
    unit: str
    room: str
    description: str


class TicketSummaryOut(ContentOut):
    """A ticket in a list: the effective values (human over automatic)."""

    number: str
    status: Status
    channel: str
    call_id: str | None
    auto: bool
    owner: str | None
    department: str | None
    assignee: str | None
    deadline: datetime | None
    overdue: bool
    escalation_level: int
    incomplete: list[str]
    callback_required: bool
    created_at: datetime


class TicketPageOut(BaseModel):
    items: list[TicketSummaryOut]
    next_before: int | None = Field(description="pass as `before` for the next page")
    prev_after: int | None = Field(
        default=None, description="pass as `after` for the previous page")


class ClockOut(BaseModel):
    name: str
    start: datetime
    due: datetime
    escalates: bool
    overdue: bool


class HistoryOut(BaseModel):
    id: int
    at: datetime
    by: str
    role: str
    what: str
    from_status: str | None
    to_status: str
    details: dict[str, Any]


class AttachmentOut(BaseModel):
    id: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_by: str
    at: datetime


class AlertOut(BaseModel):
    id: int
    number: str
    at: datetime
    kind: Literal["warn", "escalate"]
    to: str
    level: int
    reason: str
    clock: str | None
    due: datetime | None
    detail: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None


class AlertListOut(BaseModel):
    items: list[AlertOut]


class TicketOut(TicketSummaryOut):
    """One ticket: effective values, with the automatic and the human ones side by
    side, the lifecycle, its clocks, history, attachments and alerts."""

    automatic: ContentOut
    human: dict[str, Any]
    human_by: str | None
    human_at: datetime | None
    judgement: dict[str, Any]
    escalate_to: str | None
    earlier_tickets: list[int]
    department_name: str | None
    dispatched_at: datetime | None
    time_to_dispatch_s: float | None
    started_at: datetime | None
    contacted_at: datetime | None
    resolved_at: datetime | None
    resolution_notes: str
    photos: list[str]
    callback_at: datetime | None
    satisfaction: int | None
    callback_note: str
    closed_at: datetime | None
    reopened_at: datetime | None
    reopen_count: int
    next_tick: datetime | None
    clocks: list[ClockOut]
    history: list[HistoryOut]
    attachments: list[AttachmentOut]
    alerts: list[AlertOut]


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status,
                        content_type="application/json")


def _summary(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    content = store.effective_content(row)
    late = row["deadline"] is not None and row["status"] != lc.CLOSED and row["deadline"] < now
    return {**row, **content, "overdue": late}


def _ticket_out(doc: dict[str, Any], service: TicketService) -> TicketOut:
    row, state, now = doc["row"], doc["state"], service.now()
    automatic = {name: row[name] for name in store.CONTENT_FIELDS}
    department = row["department"]
    took = lc.time_to_dispatch(state)
    return TicketOut.model_validate({
        **_summary(row, now), "automatic": automatic, "earlier_tickets": row["history"],
        "department_name": service.policy.departments.name_of(department) if department else None,
        "time_to_dispatch_s": took.total_seconds() if took is not None else None,
        "clocks": [{"name": c.name, "start": c.start, "due": c.due, "escalates": c.escalates,
                    "overdue": now > c.due} for c in doc["clocks"]],
        "history": doc["history"], "attachments": doc["attachments"],
        "alerts": [_alert(a) for a in doc["alerts"]]})


def _alert(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "to": row["recipient"]}


# ---- who sees what ----------------------------------------------------------------


def viewer_of(who: Principal) -> Viewer | None:
    """An agent sees the tickets of their calls and those they own; others all."""
    return Viewer(who.username, who.agent_id) if who.role is Role.AGENT else None


def alert_recipients(who: Principal) -> list[str] | None:
    """Whose alerts a person handles: their own (as an owner), a supervisor's those
    to the supervisors and the service centre too; an admin every alert."""
    if who.role is Role.ADMIN:
        return None
    if who.role is Role.SUPERVISOR:
        return [who.username, "supervisor", lc.UNOWNED_WARN_TO]
    return [who.username]


def _number(request: web.Request) -> str:
    return request.match_info["number"][:64]


# ---- handlers ---------------------------------------------------------------------


@endpoint("Tickets, newest first, filtered on what people see", query=TicketListQuery,
          response=TicketPageOut)
async def list_tickets(request: web.Request) -> web.Response:
    query = query_of(request, TicketListQuery)
    page = await find_tickets(request, query)
    return _json(TicketPageOut(items=[TicketSummaryOut.model_validate(r) for r in page.rows],
                               next_before=page.next_before, prev_after=page.prev_after))


@dataclass(frozen=True, slots=True)
class TicketPage:
    rows: list[dict[str, Any]]
    next_before: int | None  # older tickets may follow
    prev_after: int | None  # newer tickets come before


async def find_tickets(request: web.Request, query: TicketListQuery) -> TicketPage:
    """The tickets of one page as the list shows them (rows with their effective
    values and ``overdue``), and the cursors of the pages either side: for the API
    and the ticket pages alike."""
    service = request.app[TICKETS]
    now = service.now()
    # One more than the page: whether there is more in the direction of travel.
    where = ListFilter(**{**query.model_dump(), "limit": query.limit + 1})
    rows = await store.list_tickets(request.app[POOL], where, viewer_of(principal(request)), now)
    backwards = query.after is not None
    more = len(rows) > query.limit
    if more:
        rows = rows[1:] if backwards else rows[:-1]  # the extra one is the farthest
    # Coming back from an older page, older ones exist; going on from a newer one,
    # newer ones do.
    more_older = backwards or more
    more_newer = query.before is not None or (backwards and more)
    return TicketPage(
        rows=[_summary(r, now) for r in rows],
        next_before=rows[-1]["id"] if rows and more_older else None,
        prev_after=rows[0]["id"] if rows and more_newer else None,
    )


@endpoint("Open a ticket (walk-in, online, another problem of a call)", body=TicketCreate,
          response=TicketOut, status=201)
async def create_ticket(request: web.Request) -> web.Response:
    body = await json_body(request, TicketCreate)
    who = principal(request)
    service = request.app[TICKETS]
    if body.call_id is not None and not await _may_use_call(request, who, body.call_id):
        raise BadRequest("no such call", error="invalid_input",
                         fields=[{"field": "call_id", "problem": "no such call"}])
    values = body.model_dump(exclude={"call_id"})
    number = await service.create(Ticket(**values), by=who.username, role=who.role.value,
                                  call_id=body.call_id)
    await audit_request(request, "ticket_created", "ticket", number,
                        {"channel": body.channel, "call_id": body.call_id})
    doc = await service.document(number, None)
    return _json(_ticket_out(doc, service), status=201)


async def _may_use_call(request: web.Request, who: Principal, call_id: str) -> bool:
    """The call exists and, for an agent, is one they answered."""
    call = await request.app[POOL].fetchrow("SELECT agent_id FROM calls WHERE id = $1", call_id)
    return call is not None and (who.role is not Role.AGENT
                                 or (who.agent_id is not None
                                     and call["agent_id"] == who.agent_id))


@endpoint("One ticket: automatic and human values, lifecycle, clocks, history, files, alerts",
          response=TicketOut, errors=(404,))
async def get_ticket(request: web.Request) -> web.Response:
    return _json(await read_ticket(request, _number(request)))


async def read_ticket(request: web.Request, number: str) -> TicketOut:
    """One ticket as ``GET /api/tickets/{number}`` shows it to the person asking
    (NotFound when they may not see it): for the API and the ticket pages alike."""
    service = request.app[TICKETS]
    doc = await service.document(number, viewer_of(principal(request)))
    return _ticket_out(doc, service)


@endpoint("Correct the ticket's fields (stored as human values, with who and when)",
          body=TicketEdit, response=TicketOut, errors=(404, 409, 422))
async def edit_ticket(request: web.Request) -> web.Response:
    body = await json_body(request, TicketEdit)
    changes = body.changes()
    return await _apply(request, lambda by, at: lc.Edit(by, at, changes), "ticket_edited",
                        {"fields": sorted(changes)})


@endpoint("An event of the lifecycle: dispatch, start, note, resolve, callback, close, "
          "reopen, contacted, assign", body=TicketEvent, response=TicketOut,
          errors=(403, 404, 409, 422))
async def post_event(request: web.Request) -> web.Response:
    body = (await json_body(request, TicketEvent)).root
    who = principal(request)
    if isinstance(body, AssignBody):
        if who.role not in MANAGERS:
            raise Forbidden("only supervisors and admins assign tickets", error="forbidden")
        if not await _active_user(request, body.owner):
            raise BadRequest("no such user", error="invalid_input",
                             fields=[{"field": "owner", "problem": "no such user"}])
    return await _apply(request, lambda by, at: event_of(body, by, at), "ticket_event",
                        body.model_dump(mode="json"))


def event_of(body: EventBodies, by: str, at: datetime) -> lc.Event:
    """The lifecycle's event for a request body."""
    match body:
        case DispatchBody():
            return lc.Dispatch(by, at, department=body.department, assignee=body.assignee,
                               subtype=body.subtype)
        case StartBody():
            return lc.Start(by, at)
        case NoteBody():
            return lc.AddNote(by, at, body.text)
        case ResolveBody():
            return lc.Resolve(by, at, body.notes, tuple(body.photos))
        case CallbackBody():
            return lc.CallbackDone(by, at, body.satisfaction, body.note)
        case CloseBody():
            return lc.Close(by, at, body.reason)
        case ReopenBody():
            return lc.Reopen(by, at, body.reason)
        case ContactedBody():
            return lc.Contacted(by, at, body.note)
        case AssignBody():
            return lc.Assign(by, at, body.owner)


async def _active_user(request: web.Request, username: str) -> bool:
    return bool(await request.app[POOL].fetchval(
        "SELECT 1 FROM users WHERE username = $1 AND NOT disabled", username))


async def _apply(request: web.Request, make: Callable[[str, datetime], lc.Event], action: str,
                 details: dict[str, Any]) -> web.Response:
    who = principal(request)
    service = request.app[TICKETS]
    number = _number(request)
    viewer = viewer_of(who)
    await service.apply(number, make(who.username, service.now()), role=who.role.value,
                        viewer=viewer)
    await audit_request(request, action, "ticket", number, details)
    return _json(_ticket_out(await service.document(number, viewer), service))


@endpoint("Attach a photo or PDF (multipart/form-data, one part named file)",
          response=AttachmentOut, status=201, upload=True, errors=(404, 413, 415))
async def upload_attachment(request: web.Request) -> web.Response:
    if request.content_type != "multipart/form-data":
        raise BadRequest("send multipart/form-data with a part named file",
                         error="bad_content_type")
    who = principal(request)
    number = _number(request)
    part = await _file_part(request)
    saved = await request.app[TICKETS].add_attachment(
        number, filename=part.filename, content_type=part.headers.get("Content-Type", ""),
        chunks=_chunks(part), by=who.username, role=who.role.value, viewer=viewer_of(who))
    await audit_request(request, "ticket_attachment_added", "ticket", number,
                        {"attachment_id": saved["id"], "filename": saved["filename"],
                         "size_bytes": saved["size_bytes"], "sha256": saved["sha256"]})
    return _json(AttachmentOut.model_validate(saved), status=201)


async def _file_part(request: web.Request) -> BodyPartReader:
    try:
        reader = await request.multipart()
        part = await reader.next()
    except (ValueError, AssertionError) as exc:
        raise BadRequest("malformed multipart body", error="bad_multipart") from exc
    if not isinstance(part, BodyPartReader) or part.name != "file":
        raise BadRequest("the first part must be the file, named file", error="invalid_input",
                         fields=[{"field": "file", "problem": "missing"}])
    return part


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk():
        yield chunk


@endpoint("Download an attachment", download=True, errors=(404,))
async def download_attachment(request: web.Request) -> web.FileResponse:
    number, attachment_id = _number(request), request.match_info["attachment_id"][:64]
    found, path = await request.app[TICKETS].attachment_file(
        number, attachment_id, viewer_of(principal(request)))
    await audit_request(request, "ticket_attachment_downloaded", "ticket", number,
                        {"attachment_id": attachment_id})
    # Always a download, never rendered here: the type is one we checked the bytes of.
    return web.FileResponse(path, headers={
        "Content-Type": found["content_type"],
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found['filename'])}"})


@endpoint("Open alerts (warnings, escalations) for me and my role", query=AlertQuery,
          response=AlertListOut)
async def list_alerts(request: web.Request) -> web.Response:
    query = query_of(request, AlertQuery)
    rows = await store.open_alerts(request.app[POOL], alert_recipients(principal(request)),
                                   query.limit)
    return _json(AlertListOut(items=[AlertOut.model_validate(_alert(r)) for r in rows]))


@endpoint("Acknowledge an alert (the first acknowledgement stands)", response=AlertOut,
          errors=(404,))
async def acknowledge_alert(request: web.Request) -> web.Response:
    who = principal(request)
    try:
        alert_id = int(request.match_info["alert_id"])
    except ValueError:
        alert_id = 0
    row = None
    if 0 < alert_id < 2**62:
        row = await store.acknowledge_alert(request.app[POOL], alert_id, alert_recipients(who),
                                            by=who.username, at=request.app[TICKETS].now())
    if row is None:
        raise NotFound("no such alert for you", alert_id=request.match_info["alert_id"][:30])
    await audit_request(request, "ticket_alert_acknowledged", "ticket", row["number"],
                        {"alert_id": alert_id})
    return _json(AlertOut.model_validate(_alert(row)))
