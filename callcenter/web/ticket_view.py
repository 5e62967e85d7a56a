"""What the ticket pages show, worked out without I/O: display names of the
contract's ids (through the translation tables), countdowns to SLA deadlines,
the actions a person may take on a ticket in its status, people's corrections
beside the automatic values, what the classifier asks to confirm, and the
history's details in words.

The ids themselves (statuses, categories, departments...) stay what the data,
the URLs and the JSON carry; only what a person reads is translated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from callcenter.auth.model import MANAGERS, Role
from callcenter.console.model import CONFIRMABLE
from callcenter.tickets import lifecycle as lc
from callcenter.tickets.http import WRITERS
from callcenter.tickets.store import CONTENT_FIELDS

Translate = Callable[..., str]

# The detail page's actions, each the lifecycle event it sends (POST .../events).
ACTION_EVENTS: dict[str, type] = {
    "dispatch": lc.Dispatch, "start": lc.Start, "note": lc.AddNote, "resolve": lc.Resolve,
    "callback": lc.CallbackDone, "close": lc.Close, "reopen": lc.Reopen,
    "contacted": lc.Contacted, "assign": lc.Assign,
}
MANAGER_ACTIONS = frozenset({"assign"})
CHANNELS_RECEIVED = ("walk_in", "online")  # what a person opens a ticket for by hand
# The list's filters, as the URL query names them (TicketListQuery's fields).
FILTERS = ("status", "category", "urgency", "overdue", "owner", "building", "q")
PAGING = ("limit", "before", "after")
# Details of history entries shown, in this order; others (ids, hashes) are not.
SHOWN_DETAILS = ("category", "urgency", "owner", "previous", "department", "assignee",
                 "time_to_dispatch_s", "on_time", "text", "notes", "photos", "satisfaction",
                 "note", "reason", "changes", "to", "level", "clock", "due", "filename",
                 "kind", "status", "attempts")
TIME_FORMAT = "%Y-%m-%d %H:%M"


# ---- names ------------------------------------------------------------------------


def label(t: Translate, family: str, value: Any) -> str:
    """The display name of ``value`` in ``family`` (``tickets.status``...), or the
    value itself when the tables have no name for it."""
    if value is None or value == "":
        return ""
    key = f"{family}.{value}"
    text = t(key)
    return str(value) if text == key else text


def field_value(t: Translate, name: str, value: Any) -> str:
    """A content field's value as a person reads it."""
    if name == "category":
        return label(t, "category", value)
    if name == "urgency":
        return label(t, "urgency", value)
    if name == "complaint_severity":
        return label(t, "tickets.severity", value) if value else t("tickets.none")
    if name == "vip":
        return label(t, "tickets.vip", value)
    if isinstance(value, bool):
        return t("tickets.yes") if value else t("tickets.no")
    return "" if value is None else str(value)


def address(building: str, unit: str, room: str) -> str:
    return "-".join(part for part in (building, unit, room) if part)


def local_time(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime(TIME_FORMAT) if value is not None else ""


def local_iso(value: str | datetime | None, zone: ZoneInfo) -> str:
    """A stored time (a datetime, or the ISO text the JSON documents carry) as the
    hotline reads it, in its own time zone, to the minute; text that is no time is
    shown as it is."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return local_time(value, zone)
    try:
        return local_time(datetime.fromisoformat(str(value)), zone)
    except ValueError:
        return str(value)


def formatters(t: Translate, zone: ZoneInfo, now: datetime) -> dict[str, Callable[..., Any]]:
    """The helpers the pages format tickets and times with, for their templates
    (``ticket_parts.html``'s macros use ``label``, ``when`` and ``countdown``)."""
    return {
        "label": lambda family, value: label(t, family, value),
        "field_value": lambda name, value: field_value(t, name, value),
        "when": lambda value: local_time(value, zone),
        "local": lambda value: local_iso(value, zone),
        "countdown": lambda due: countdown(t, due, now),
        "address": address,
    }


# ---- countdowns -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Countdown:
    text: str
    overdue: bool


def countdown(t: Translate, due: datetime, now: datetime) -> Countdown:
    """"剩余 1 小时 05 分" before ``due``; "已超时 N 分钟" after it (at least 1).
    static/countdown.js says the same, once a second."""
    left_s = math.floor((due - now).total_seconds())
    if left_s > 0:
        return Countdown(t("tickets.remaining", time=duration(t, left_s)), False)
    late_min = max(1, math.floor(-left_s / 60))
    return Countdown(t("tickets.overdue_by", minutes=late_min), True)


def duration(t: Translate, seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return t("tickets.duration.days", d=days, h=hours)
    if hours:
        return t("tickets.duration.hours", h=hours, m=f"{minutes:02d}")
    return t("tickets.duration.minutes", m=minutes, s=f"{secs:02d}")


# ---- what a person may do ---------------------------------------------------------


def allowed_actions(status: str, role: Role) -> list[str]:
    """The actions of the detail page for a ticket in ``status``: those the
    lifecycle accepts there, for the roles that change tickets (assigning: the
    supervisors and admins). The API decides again; this only hides buttons."""
    if role not in WRITERS:
        return []
    return [name for name, event in ACTION_EVENTS.items()
            if status in lc.ALLOWED_FROM[event]
            and (name not in MANAGER_ACTIONS or role in MANAGERS)]


def may_change(role: Role) -> bool:
    return role in WRITERS


def may_edit(status: str, role: Role) -> bool:
    """Whether the page offers the correct / confirm form (PATCH): the roles that
    change tickets, in the statuses the lifecycle accepts an edit in."""
    return role in WRITERS and status in lc.ALLOWED_FROM[lc.Edit]


# ---- the list's query -------------------------------------------------------------


def list_params(query: Mapping[str, str]) -> dict[str, str]:
    """The filters and paging of the list's URL, empty ones left out (a form sends
    every field; "any status" is an empty one)."""
    return {name: query[name].strip() for name in (*FILTERS, *PAGING)
            if query.get(name, "").strip()}


def filters_only(params: Mapping[str, str]) -> dict[str, str]:
    """The same filters, on their first page."""
    return {name: value for name, value in params.items() if name not in ("before", "after")}


# ---- the judgement ----------------------------------------------------------------


def to_confirm(judgement: Mapping[str, Any], human: Mapping[str, Any]) -> list[str]:
    """The fields the classifier was unsure of that no person has set yet."""
    return [CONFIRMABLE[name] for name in judgement.get("needs_confirmation") or []
            if name in CONFIRMABLE and CONFIRMABLE[name] not in human]


def evidence(judgement: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """What made the classifier decide, per judgement (category, urgency, severity)."""
    found = judgement.get("evidence") or {}
    return [(name, [str(e) for e in found[name]]) for name in CONFIRMABLE if found.get(name)]


# ---- people beside the analysis ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Correction:
    """A field a person set: the automatic value, theirs, who and when."""

    field: str
    automatic: Any
    human: Any
    by: str | None
    at: datetime | None


def corrections(automatic: Mapping[str, Any], human: Mapping[str, Any],
                history: Sequence[Mapping[str, Any]], human_by: str | None,
                human_at: datetime | None) -> list[Correction]:
    """Every field with a human value, in the content's order; who and when from
    the last person's edit of that field (else the ticket's last human change)."""
    out = []
    for name in CONTENT_FIELDS:
        if name not in human:
            continue
        edit = _last_edit_of(name, history)
        by, at = (edit["by"], edit["at"]) if edit else (human_by, human_at)
        out.append(Correction(name, automatic.get(name), human[name], by, at))
    return out


def _last_edit_of(name: str, history: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for entry in reversed(history):
        changes = (entry.get("details") or {}).get("changes") or {}
        if entry.get("what") == "edited" and entry.get("by") != lc.SYSTEM and name in changes:
            return entry
    return None


# ---- history ----------------------------------------------------------------------


def notes_of(history: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The notes people added, oldest first."""
    return [entry for entry in history if entry.get("what") == "note"]


def history_details(t: Translate, entry: Mapping[str, Any], zone: ZoneInfo,
                    department_name: Callable[[str], str]) -> list[tuple[str, str]]:
    """An entry's details as (label, value) pairs a person reads."""
    details = entry.get("details") or {}
    pairs = []
    for key in SHOWN_DETAILS:
        value = details.get(key)
        if value is None or value == "" or value == [] or value == {}:
            continue
        pairs.append((t(f"tickets.detail.{key}"),
                      _detail_value(t, key, value, zone, department_name)))
    return pairs


def _detail_value(t: Translate, key: str, value: Any, zone: ZoneInfo,
                  department_name: Callable[[str], str]) -> str:
    match key:
        case "category" | "urgency":
            return field_value(t, key, value)
        case "department":
            return department_label(t, str(value), department_name)
        case "time_to_dispatch_s":
            return t("tickets.minutes", minutes=round(float(value) / 60))
        case "on_time":
            return t("tickets.yes") if value else t("tickets.no")
        case "photos":
            return t("tickets.count", n=len(value))
        case "reason":
            return label(t, "tickets.reason", value)
        case "to":
            return label(t, "tickets.recipient", value)
        case "clock":
            return label(t, "tickets.clock", value)
        case "kind":
            return label(t, "tickets.notice", value)
        case "due":
            return local_iso(value, zone)
        case "changes" if isinstance(value, Mapping):
            return "；".join(f"{t(f'tickets.field.{name}')}：{_change(t, name, change)}"
                            for name, change in value.items())
    return str(value)


def _change(t: Translate, name: str, change: Any) -> str:
    """An edit's [before, after] of one field (or just the value given)."""
    if isinstance(change, list) and len(change) == 2:
        before, after = change
        return f"{field_value(t, name, before)} → {field_value(t, name, after)}"
    return field_value(t, name, change)


def department_label(t: Translate, department: str | None,
                     department_name: Callable[[str], str]) -> str:
    """A department's name from the tables, else the departments file's own name."""
    if not department:
        return ""
    text = label(t, "tickets.department", department)
    return text if text != department else department_name(department)


def role_label(t: Translate, role: str) -> str:
    return t("tickets.system") if role == lc.SYSTEM else label(t, "role", role)
