"""The ticket lifecycle as a pure state machine: events in, commands out.

Nothing here does I/O or reads a clock: every event says who did it (``by``, a
user id or ``"system"``) and when (``at``, aware), and ``step`` answers with the
new state and commands (persist these fields, record this history entry, tell
the caller, warn the owner, escalate, wake me at) that an executor performs.

Statuses (the contract, hotline-standards.md section 5), the main line::

    new --Dispatch--> dispatched --Start--> in_progress --Resolve--> resolved
        --CallbackDone--> callback --Close--> closed

and every transition::

    new         --Dispatch-->     dispatched   (department by specialty unless named)
    dispatched  --Dispatch-->     dispatched   (passed on to another department)
    in_progress --Dispatch-->     dispatched   (passed on)
    dispatched  --Start-->        in_progress  (for P1: staff on site)
    in_progress --Resolve-->      resolved     (notes required; photo ids optional)
    resolved    --CallbackDone--> callback     (satisfaction 1-5 and a note)
    callback    --Close-->        closed
    resolved    --Close-->        closed       (a reason required: nobody reachable)
    resolved | callback | closed --Reopen--> in_progress   (a reason required)

AddNote is accepted in every status; Contacted, Assign and Edit until closed;
Tick always (it does nothing once closed). Each accepted event that changes
something writes one ``Record`` (the audit history), each alarm fired too.

The owner is whoever received the ticket (谁受理、谁跟进、谁回复): dispatching
it to a department does not change the owner, only ``Assign`` does. The SLA
clocks (``clocks``) and what they ask for (``sla.alarms``) are computed from
the state; ``Tick`` fires what is due and remembers it in ``sent``, so a
repeated tick sends nothing twice and a restarted executor resumes from the
persisted state.

A rejected event (not allowed in the status, a missing note, a satisfaction
outside 1-5...) leaves the state as it was and answers one ``Rejected`` with a
machine-readable error id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from callcenter.core import CATEGORIES, COMPLAINT_SEVERITIES, URGENCIES, VIP_KINDS, Ticket
from callcenter.tickets import sla as sla_mod
from callcenter.tickets.departments import Departments, load_departments
from callcenter.tickets.sla import Alarm, Clock, Sla, as_utc

NEW = "new"
DISPATCHED = "dispatched"
IN_PROGRESS = "in_progress"
RESOLVED = "resolved"
CALLBACK = "callback"
CLOSED = "closed"
STATUSES = (NEW, DISPATCHED, IN_PROGRESS, RESOLVED, CALLBACK, CLOSED)

NOTICE_KINDS = ("receipt", "dispatched", "resolved", "callback")
SYSTEM = "system"
# Warnings of a ticket nobody received in person (a call-back ticket opened by
# the queue) go to the service centre's desk.
UNOWNED_WARN_TO = "service_centre"
SATISFACTION_MIN, SATISFACTION_MAX = 1, 5

# Error ids (the contract of Rejected; the API passes them on).
E_INVALID_TRANSITION = "ticket.invalid_transition"
E_NAIVE_TIME = "ticket.naive_time"
E_NOTES_REQUIRED = "ticket.notes_required"
E_NOTE_REQUIRED = "ticket.note_required"
E_REASON_REQUIRED = "ticket.reason_required"
E_SATISFACTION = "ticket.satisfaction_out_of_range"
E_UNKNOWN_DEPARTMENT = "ticket.unknown_department"
E_OWNER_REQUIRED = "ticket.owner_required"
E_UNKNOWN_FIELD = "ticket.unknown_field"
E_INVALID_VALUE = "ticket.invalid_value"

# Fields a person may change with Edit, and what each accepts: one of the listed
# values, or (``str``) any text.
EDITABLE_FIELDS: dict[str, tuple[Any, ...] | type[str]] = {
    "category": CATEGORIES,
    "urgency": URGENCIES,
    "complaint_severity": (None, *COMPLAINT_SEVERITIES),
    "repeat_complaint": (True, False),
    "vip": VIP_KINDS,
    "caller_name": str,
    "phone": str,
    "building": str,
    "unit": str,
    "room": str,
    "description": str,
}


# ---- policy ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """What the machine decides by: the SLA, the departments, the hotline's zone
    (the wiring passes ``ZoneInfo(settings.timezone)``)."""

    sla: Sla
    departments: Departments
    zone: ZoneInfo


def make_policy(
    zone: ZoneInfo | str = sla_mod.DEFAULT_TIMEZONE, *, sla: Sla | None = None,
    departments: Departments | None = None,
) -> Policy:
    return Policy(sla=sla or sla_mod.load_sla(), departments=departments or load_departments(),
                  zone=zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone))


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    return make_policy()


# ---- state -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TicketState:
    """One ticket as the lifecycle sees it. Every field is persisted."""

    number: str
    created_at: datetime
    category: str
    urgency: str
    status: str = NEW
    complaint_severity: str | None = None
    repeat_complaint: bool = False
    vip: str = "none"
    caller_name: str = ""
    phone: str = ""
    building: str = ""
    unit: str = ""
    room: str = ""
    description: str = ""
    channel: str = "phone"
    owner: str | None = None  # who received it and follows it up
    department: str | None = None
    assignee: str | None = None  # a named person in the department
    dispatched_at: datetime | None = None  # the first dispatch (time to dispatch)
    started_at: datetime | None = None  # the first start (P1: staff on site)
    contacted_at: datetime | None = None  # first contact with the resident
    resolved_at: datetime | None = None
    resolution_notes: str = ""
    photos: tuple[str, ...] = ()  # attachment ids
    callback_at: datetime | None = None
    satisfaction: int | None = None
    callback_note: str = ""
    closed_at: datetime | None = None
    reopened_at: datetime | None = None  # the last reopen: the clocks restart there
    reopen_count: int = 0
    escalation_level: int = 0  # 0: with its owner; 1, 2...: up the chain
    deadline: datetime | None = None  # the earliest deadline not met yet (for lists)
    sent: frozenset[str] = frozenset()  # keys of the alarms and raises already sent
    next_tick: datetime | None = None  # when the clock needs the next Tick

    @property
    def is_complaint(self) -> bool:
        return self.category == "complaint"

    @property
    def round_start(self) -> datetime:
        """Where the work clocks start: the opening, or the last reopen."""
        return self.reopened_at or self.created_at


def restore(persisted: Mapping[str, Any]) -> TicketState:
    """The state back from its persisted fields (lists where tuples and sets were)."""
    data = dict(persisted)
    data["sent"] = frozenset(data.get("sent") or ())
    data["photos"] = tuple(data.get("photos") or ())
    return TicketState(**data)


def time_to_dispatch(state: TicketState) -> timedelta | None:
    """dispatched_at - created_at, the figure the 5-minute goal is about."""
    if state.dispatched_at is None:
        return None
    return sla_mod.time_to_dispatch(state.created_at, state.dispatched_at)


# ---- events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send the ticket to a department (chosen by specialty when not named)."""

    by: str
    at: datetime
    department: str | None = None
    assignee: str | None = None
    subtype: str | None = None  # water, lift, public_facilities... (departments.yaml)


@dataclass(frozen=True, slots=True)
class Start:
    """Work begins (for P1: staff are on site)."""

    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AddNote:
    by: str
    at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class Resolve:
    by: str
    at: datetime
    notes: str
    photos: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CallbackDone:
    """The resident was called back (回访) and rated the fix."""

    by: str
    at: datetime
    satisfaction: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class Close:
    """Close after the call-back; straight from resolved only with a reason (the
    resident could not be reached)."""

    by: str
    at: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Reopen:
    by: str
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Contacted:
    """First contact with the resident (a complaint's 12 h rule)."""

    by: str
    at: datetime
    note: str = ""


@dataclass(frozen=True, slots=True)
class Assign:
    """A new owner: the person who follows the ticket up from now on."""

    by: str
    at: datetime
    owner: str


@dataclass(frozen=True, slots=True)
class Edit:
    """A person corrects fields (``EDITABLE_FIELDS``: urgency, category...)."""

    by: str
    at: datetime
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Tick:
    """The clock: fire the warnings and escalations due at ``at``."""

    at: datetime
    by: str = SYSTEM


Event = (Dispatch | Start | AddNote | Resolve | CallbackDone | Close | Reopen | Contacted
         | Assign | Edit | Tick)

_ALL = frozenset(STATUSES)
_OPEN = _ALL - {CLOSED}
ALLOWED_FROM: dict[type, frozenset[str]] = {
    Dispatch: frozenset({NEW, DISPATCHED, IN_PROGRESS}),
    Start: frozenset({DISPATCHED}),
    Resolve: frozenset({IN_PROGRESS}),
    CallbackDone: frozenset({RESOLVED}),
    Close: frozenset({CALLBACK, RESOLVED}),
    Reopen: frozenset({RESOLVED, CALLBACK, CLOSED}),
    AddNote: _ALL,
    Contacted: _OPEN,
    Assign: _OPEN,
    Edit: _OPEN,
    Tick: _ALL,
}


# ---- commands --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Persist:
    """Store these fields of the ticket (only those that changed)."""

    number: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Record:
    """One entry of the ticket's history: who, when, what, from which status to which."""

    number: str
    at: datetime
    by: str
    what: str
    from_status: str | None
    to_status: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notify:
    """A progress notice to the caller (``notify.notice_for`` writes the text)."""

    number: str
    kind: str  # one of NOTICE_KINDS
    phone: str
    category: str
    params: dict[str, str] = field(default_factory=dict)
    # How many times the ticket was reopened: a notice of the same kind after a
    # reopen is a new message, not a retry of the earlier one.
    round: int = 0


@dataclass(frozen=True, slots=True)
class Warn:
    """Tell the owner: a deadline is near, the dispatch goal was missed, a resident
    was unhappy at the call-back."""

    number: str
    to: str
    reason: str  # deadline_near | dispatch_late | low_satisfaction
    clock: str | None = None
    due: datetime | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Escalate:
    """Raise the ticket to ``to``. ``level`` is the ticket's chain level after this
    (0: still with its owner; a raise outside the chain, P1 to management, keeps it)."""

    number: str
    to: str
    level: int
    reason: str  # overdue | safety | major_complaint | repeat_complaint
    clock: str | None = None
    due: datetime | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """Send a Tick for this ticket at ``at`` (replaces any earlier wake-up)."""

    number: str
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Rejected:
    error_id: str
    details: dict[str, Any] = field(default_factory=dict)


Command = Persist | Record | Notify | Warn | Escalate | Schedule | Rejected


@dataclass(slots=True)
class _Change:
    """What a handler did: the new state, history entries, and actions."""

    state: TicketState
    records: list[Record] = field(default_factory=list)
    actions: list[Command] = field(default_factory=list)


# ---- entry points ----------------------------------------------------------------


def open_ticket(
    number: str, ticket: Ticket, *, at: datetime, by: str = SYSTEM,
    owner: str | None = None, policy: Policy | None = None,
) -> tuple[TicketState, list[Command]]:
    """A new ticket from the classifier's (or an agent's) ``Ticket``. The owner is
    ``owner``, else whoever opened it (nobody when the system did)."""
    policy = policy or default_policy()
    as_utc(at)  # a naive opening time is a bug of the caller: fail loudly
    state = TicketState(
        number=number, created_at=at, category=ticket.category, urgency=ticket.urgency,
        complaint_severity=ticket.complaint_severity, repeat_complaint=ticket.repeat_complaint,
        vip=ticket.vip, caller_name=ticket.caller_name, phone=ticket.phone,
        building=ticket.building, unit=ticket.unit, room=ticket.room,
        description=ticket.description, channel=ticket.channel,
        owner=owner if owner is not None else (None if by == SYSTEM else by),
    )
    opened = Record(number, at, by, "opened", None, NEW,
                    {"category": state.category, "urgency": state.urgency,
                     "owner": state.owner})
    change = _Change(state, [opened], _notify(state, "receipt"))
    _raise_at_once(change, by, at, policy)
    return _finish(None, change, at, policy)


def step(
    state: TicketState, event: Event, policy: Policy | None = None
) -> tuple[TicketState, list[Command]]:
    """Apply ``event``: the new state and the commands, or the same state and one
    ``Rejected``."""
    policy = policy or default_policy()
    problem = _precheck(state, event)
    if problem is not None:
        return state, [problem]
    change = _apply(state, event, policy)
    if isinstance(change, Rejected):
        return state, [change]
    return _finish(state, change, event.at, policy)


def _precheck(state: TicketState, event: Event) -> Rejected | None:
    if event.at.tzinfo is None or event.at.utcoffset() is None:
        return Rejected(E_NAIVE_TIME, {"event": type(event).__name__})
    allowed = ALLOWED_FROM[type(event)]
    if state.status not in allowed:
        return Rejected(E_INVALID_TRANSITION, {
            "event": type(event).__name__, "status": state.status,
            "allowed_from": sorted(allowed)})
    return None


def _apply(state: TicketState, event: Event, policy: Policy) -> _Change | Rejected:
    match event:
        case Dispatch():
            return _dispatch(state, event, policy)
        case Start():
            return _start(state, event)
        case AddNote():
            return _add_note(state, event)
        case Resolve():
            return _resolve(state, event)
        case CallbackDone():
            return _callback_done(state, event, policy)
        case Close():
            return _close(state, event)
        case Reopen():
            return _reopen(state, event)
        case Contacted():
            return _contacted(state, event)
        case Assign():
            return _assign(state, event)
        case Edit():
            return _edit(state, event, policy)
        case Tick():
            return _tick(state, event, policy)


def _finish(
    old: TicketState | None, change: _Change, at: datetime, policy: Policy
) -> tuple[TicketState, list[Command]]:
    """Refresh the deadline and the wake-up, then persist what changed."""
    new = replace(change.state, deadline=current_deadline(change.state, policy))
    new, schedule = _reschedule(new, at, policy)
    persist = _changed_fields(old, new)
    commands: list[Command] = [Persist(new.number, persist)] if persist else []
    return new, [*commands, *change.records, *change.actions, *schedule]


def _changed_fields(old: TicketState | None, new: TicketState) -> dict[str, Any]:
    changed = {}
    for f in fields(TicketState):
        value = getattr(new, f.name)
        if old is None or getattr(old, f.name) != value:
            changed[f.name] = tuple(sorted(value)) if isinstance(value, frozenset) else value
    return changed


# ---- handlers --------------------------------------------------------------------


def _record(state: TicketState, event: Event, what: str, to_status: str | None = None,
            **details: Any) -> Record:
    return Record(state.number, event.at, event.by, what, state.status,
                  to_status or state.status, details)


def _notify(state: TicketState, kind: str, **params: str) -> list[Command]:
    # No number to text: the call-back list (incomplete tickets) covers the caller.
    if not state.phone:
        return []
    return [Notify(state.number, kind, state.phone, state.category, params,
                   state.reopen_count)]


def _owner_of(state: TicketState) -> str:
    return state.owner or UNOWNED_WARN_TO


def _dispatch(state: TicketState, e: Dispatch, policy: Policy) -> _Change | Rejected:
    departments = policy.departments
    department = e.department or departments.choose(
        state.category, subtype=e.subtype, text=state.description)
    if not departments.knows(department):
        return Rejected(E_UNKNOWN_DEPARTMENT, {"department": department})
    first = state.dispatched_at is None
    new = replace(state, status=DISPATCHED, department=department, assignee=e.assignee,
                  dispatched_at=state.dispatched_at or e.at)
    details: dict[str, Any] = {"department": department, "assignee": e.assignee}
    if first:
        took = sla_mod.time_to_dispatch(state.created_at, e.at)
        details["time_to_dispatch_s"] = took.total_seconds()
        details["on_time"] = sla_mod.dispatched_on_time(state.created_at, e.at, policy.sla)
    record = _record(state, e, "dispatched", DISPATCHED, **details)
    # The caller hears of the first dispatch; passing it on later is internal.
    notices = _notify(new, "dispatched", department=departments.name_of(department))
    return _Change(new, [record], notices if first else [])


def _start(state: TicketState, e: Start) -> _Change:
    new = replace(state, status=IN_PROGRESS, started_at=state.started_at or e.at)
    return _Change(new, [_record(state, e, "started", IN_PROGRESS)])


def _add_note(state: TicketState, e: AddNote) -> _Change | Rejected:
    if not e.text.strip():
        return Rejected(E_NOTE_REQUIRED, {"event": "AddNote"})
    return _Change(state, [_record(state, e, "note", text=e.text.strip())])


def _resolve(state: TicketState, e: Resolve) -> _Change | Rejected:
    notes = e.notes.strip()
    if not notes:
        return Rejected(E_NOTES_REQUIRED, {"event": "Resolve"})
    new = replace(state, status=RESOLVED, resolved_at=e.at, resolution_notes=notes,
                  photos=tuple(e.photos))
    record = _record(state, e, "resolved", RESOLVED, notes=notes, photos=list(e.photos))
    return _Change(new, [record], _notify(new, "resolved"))


def _valid_satisfaction(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and SATISFACTION_MIN <= value <= SATISFACTION_MAX)


def _callback_done(state: TicketState, e: CallbackDone, policy: Policy) -> _Change | Rejected:
    if not _valid_satisfaction(e.satisfaction):
        return Rejected(E_SATISFACTION, {"satisfaction": e.satisfaction,
                                         "min": SATISFACTION_MIN, "max": SATISFACTION_MAX})
    new = replace(state, status=CALLBACK, callback_at=e.at, satisfaction=e.satisfaction,
                  callback_note=e.note, contacted_at=state.contacted_at or e.at)
    record = _record(state, e, "callback", CALLBACK, satisfaction=e.satisfaction, note=e.note)
    actions = _notify(new, "callback")
    # An unhappy resident does not reopen the ticket by itself: a person decides.
    if e.satisfaction <= policy.sla.low_satisfaction_max:
        actions.append(Warn(state.number, _owner_of(state), "low_satisfaction",
                            detail=f"satisfaction {e.satisfaction}: {e.note}".rstrip(": ")))
    return _Change(new, [record], actions)


def _close(state: TicketState, e: Close) -> _Change | Rejected:
    reason = e.reason.strip()
    if state.status == RESOLVED and not reason:
        return Rejected(E_REASON_REQUIRED, {
            "event": "Close", "status": state.status,
            "why": "closing without a call-back needs a reason"})
    new = replace(state, status=CLOSED, closed_at=e.at)
    return _Change(new, [_record(state, e, "closed", CLOSED, reason=reason)])


def _reopen(state: TicketState, e: Reopen) -> _Change | Rejected:
    reason = e.reason.strip()
    if not reason:
        return Rejected(E_REASON_REQUIRED, {"event": "Reopen"})
    # The fix did not hold: the resolution and its call-back belong to the last
    # round (the history keeps them); the work clocks restart now.
    new = replace(state, status=IN_PROGRESS, reopened_at=e.at,
                  reopen_count=state.reopen_count + 1, resolved_at=None,
                  resolution_notes="", photos=(), callback_at=None, satisfaction=None,
                  callback_note="", closed_at=None)
    return _Change(new, [_record(state, e, "reopened", IN_PROGRESS, reason=reason)])


def _contacted(state: TicketState, e: Contacted) -> _Change:
    new = replace(state, contacted_at=state.contacted_at or e.at)
    return _Change(new, [_record(state, e, "contacted", note=e.note,
                                 first=state.contacted_at is None)])


def _assign(state: TicketState, e: Assign) -> _Change | Rejected:
    owner = e.owner.strip()
    if not owner:
        return Rejected(E_OWNER_REQUIRED, {"event": "Assign"})
    if owner == state.owner:
        return _Change(state)
    new = replace(state, owner=owner)
    return _Change(new, [_record(state, e, "assigned", previous=state.owner, owner=owner)])


def _edit(state: TicketState, e: Edit, policy: Policy) -> _Change | Rejected:
    for name, value in e.changes.items():
        problem = _invalid_edit(name, value)
        if problem is not None:
            return problem
    changes = {name: [getattr(state, name), value] for name, value in e.changes.items()
               if getattr(state, name) != value}
    if not changes:
        return _Change(state)
    new = replace(state, **{name: after for name, (_, after) in changes.items()})
    change = _Change(new, [_record(state, e, "edited", changes=changes)])
    # A ticket edited into P1, a major or a repeated complaint is raised now.
    _raise_at_once(change, e.by, e.at, policy)
    return change


def _invalid_edit(name: str, value: Any) -> Rejected | None:
    if name not in EDITABLE_FIELDS:
        return Rejected(E_UNKNOWN_FIELD, {"field": name, "editable": sorted(EDITABLE_FIELDS)})
    accepted = EDITABLE_FIELDS[name]
    if not isinstance(accepted, tuple):
        ok = isinstance(value, str)
    else:
        # Same type too: 1 is not True, and 0 is not a severity.
        ok = any(value is a or (type(value) is type(a) and value == a) for a in accepted)
    if not ok:
        return Rejected(E_INVALID_VALUE, {"field": name, "value": value})
    return None


# ---- escalation at once ----------------------------------------------------------


def _raise_at_once(change: _Change, by: str, at: datetime, policy: Policy) -> None:
    """P1 to management, a major or repeated complaint to the supervisor: each
    rule once per ticket, the moment it applies."""
    state = change.state
    for reason, target in _immediate(state, policy.sla):
        key = f"immediate:{reason}"
        if key in state.sent:
            continue
        level = max(state.escalation_level, sla_mod.chain_level(target, policy.sla))
        state = replace(state, sent=state.sent | {key}, escalation_level=level)
        change.actions.append(Escalate(state.number, target, level, reason))
        change.records.append(Record(state.number, at, by, "escalated", state.status,
                                     state.status, {"to": target, "level": level,
                                                    "reason": reason}))
    change.state = state


def _immediate(state: TicketState, sla: Sla) -> list[tuple[str, str]]:
    return sla_mod.immediate_escalations(
        state.urgency, severity=state.complaint_severity,
        repeat_complaint=state.repeat_complaint, sla=sla)


def _start_level(state: TicketState, sla: Sla) -> int:
    """Where an overdue chain starts: above the level the immediate rules reached."""
    return max((sla_mod.chain_level(t, sla) for _, t in _immediate(state, sla)), default=0)


# ---- the clock -------------------------------------------------------------------


def clocks(state: TicketState, policy: Policy | None = None) -> list[Clock]:
    """The deadlines the ticket runs against now (met ones are gone; none once closed).

    dispatch: the 5-minute goal, until dispatched (a goal: warns, never escalates).
    contact: a complaint's first contact, 12 h.
    deadline: the urgency clock (P1 on site, P2-P4 resolved); a complaint has it
      only at the levels ``complaints.urgency_clock_for`` names (P1, P2).
    closure: a complaint's closure, same local day or 3 days when passed on.
    callback: the call-back within 24 h of the fix.
    The work clocks (deadline, closure) restart at a reopen.
    """
    policy = policy or default_policy()
    if state.status == CLOSED:
        return []
    sla = policy.sla
    out: list[Clock] = []
    if state.dispatched_at is None:
        out.append(Clock("dispatch", state.created_at,
                         sla_mod.dispatch_due(state.created_at, sla), escalates=False))
    if state.is_complaint and state.contacted_at is None:
        out.append(Clock("contact", state.created_at,
                         sla_mod.complaint_contact_due(state.created_at, sla)))
    if _urgency_clock_applies(state, sla) and not _urgency_met(state, sla):
        out.append(Clock("deadline", state.round_start,
                         sla_mod.urgency_due(state.round_start, state.urgency, sla)))
    if state.is_complaint:
        transferred = state.department not in (None, sla.complaint_home_department)
        out.append(Clock("closure", state.round_start, sla_mod.complaint_close_due(
            state.round_start, policy.zone, transferred=transferred, sla=sla)))
    if state.resolved_at is not None and state.callback_at is None:
        out.append(Clock("callback", state.resolved_at,
                         sla_mod.callback_due(state.resolved_at, sla)))
    return out


def _urgency_clock_applies(state: TicketState, sla: Sla) -> bool:
    return not state.is_complaint or state.urgency in sla.complaint_urgency_clocks


def _urgency_met(state: TicketState, sla: Sla) -> bool:
    milestone = sla.met_by.get(state.urgency, RESOLVED)
    reached = state.started_at if milestone == IN_PROGRESS else state.resolved_at
    return reached is not None


def current_deadline(state: TicketState, policy: Policy | None = None) -> datetime | None:
    """The earliest deadline the ticket has not met yet (goals aside)."""
    dues = [c.due for c in clocks(state, policy) if c.escalates]
    return min(dues, default=None)


def pending_alarms(
    state: TicketState, now: datetime, policy: Policy | None = None
) -> list[Alarm]:
    """The warnings and escalations still to come (or due and not sent), in order.
    A warning whose deadline has passed by ``now`` is dropped: the escalation speaks."""
    policy = policy or default_policy()
    start_level = _start_level(state, policy.sla)
    out = [
        alarm
        for clock in clocks(state, policy)
        for alarm in sla_mod.alarms(clock, urgency=state.urgency, start_level=start_level,
                                    sla=policy.sla)
        if alarm.key not in state.sent
        and (alarm.stale_at is None or as_utc(now) < alarm.stale_at)
    ]
    return sorted(out, key=lambda a: (a.at, a.key))


def _reschedule(
    state: TicketState, now: datetime, policy: Policy
) -> tuple[TicketState, list[Command]]:
    upcoming = pending_alarms(state, now, policy)
    if not upcoming:
        return replace(state, next_tick=None), []
    nxt = upcoming[0]
    if nxt.at == state.next_tick:
        return state, []  # the wake-up asked for already stands
    return replace(state, next_tick=nxt.at), [Schedule(state.number, nxt.at, nxt.key)]


def _tick(state: TicketState, e: Tick, policy: Policy) -> _Change:
    now = as_utc(e.at)
    change = _Change(state)
    for alarm in pending_alarms(state, now, policy):
        if alarm.at > now:
            break
        _fire(change, alarm, e)
    return change


def _fire(change: _Change, alarm: Alarm, e: Tick) -> None:
    state = change.state
    clock, due = alarm.clock.name, alarm.clock.due
    if alarm.kind == "warn":
        reason = "deadline_near" if alarm.clock.escalates else f"{clock}_late"
        change.actions.append(Warn(state.number, _owner_of(state), reason, clock, due,
                                   alarm.label))
        details: dict[str, Any] = {"to": _owner_of(state), "reason": reason, "clock": clock,
                                   "label": alarm.label, "due": due.isoformat()}
        what = "warned"
    else:
        level = max(state.escalation_level, alarm.level)
        state = replace(state, escalation_level=level)
        change.actions.append(Escalate(state.number, alarm.to, level, "overdue", clock, due))
        details = {"to": alarm.to, "level": level, "reason": "overdue", "clock": clock,
                   "due": due.isoformat()}
        what = "escalated"
    change.state = replace(state, sent=state.sent | {alarm.key})
    change.records.append(_record(state, e, what, **details))
