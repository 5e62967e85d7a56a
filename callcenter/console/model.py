"""What the console decides without I/O: the ticket a wrap-up starts from, and
whether what the agent sends is acceptable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callcenter.core import CATEGORIES, URGENCIES
from callcenter.core import COMPLAINT_SEVERITIES as SEVERITIES
from callcenter.tickets.sla import raise_for_vip

# How the call ended, said by the agent at wrap-up.
DISPOSITIONS = ("resolved", "ticket", "callback", "transferred", "no_issue", "wrong_number")
TICKET_FIELDS = ("category", "urgency", "complaint_severity", "caller_name", "building", "unit",
                 "room", "description")
_LIMITS = {"caller_name": 50, "building": 20, "unit": 20, "room": 20, "description": 2000}

# The IVR choice says what the call is probably about; the agent corrects it.
_BY_QUEUE = {"repair": ("engineering", "P3"), "complaint": ("complaint", "P3"),
             "consultation": ("consultation", "P4")}
SAFETY_PRIORITY = 2  # menu.yaml priority.safety: a P1 choice (keys 1-1, a spoken emergency)


def prefill(*, queue: str | None, priority: int, resident: dict[str, Any] | None,
            caller_number: str) -> dict[str, Any]:
    """The ticket fields the wrap-up form shows when the call has no ticket yet."""
    category, urgency = _BY_QUEUE.get(queue or "", ("", "P3"))
    if priority >= SAFETY_PRIORITY:
        category, urgency = category or "engineering", "P1"
    # The classifier's rule (sla.yaml vip_raise): one level up, a P4 question stays P4.
    vip = (resident or {}).get("vip", "none")
    urgency = raise_for_vip(urgency, vip)
    resident = resident or {}
    return {"category": category, "urgency": urgency, "caller_name": resident.get("name", ""),
            "phone": caller_number, "building": resident.get("building", ""),
            "unit": resident.get("unit", ""), "room": resident.get("room", ""),
            "description": "", "vip": vip, "complaint_severity": ""}


@dataclass(frozen=True)
class WrapUp:
    disposition: str
    ticket: dict[str, str] | None  # the fields the agent entered; None: no ticket
    ready: bool  # end wrap-up now


def check_wrap_up(body: Any) -> tuple[WrapUp | None, dict[str, str]]:
    """The wrap-up the agent sent, or the problems by field."""
    if not isinstance(body, dict):
        return None, {"body": "must be a JSON object"}
    problems: dict[str, str] = {}
    disposition = body.get("disposition")
    if disposition not in DISPOSITIONS:
        problems["disposition"] = f"one of {', '.join(DISPOSITIONS)}"
    ticket = body.get("ticket")
    fields: dict[str, str] | None = None
    if ticket is not None:
        if not isinstance(ticket, dict):
            problems["ticket"] = "must be an object"
        else:
            fields = {}
            for name, value in ticket.items():
                if name not in TICKET_FIELDS:
                    problems[f"ticket.{name}"] = "unknown field"
                elif not isinstance(value, str):
                    problems[f"ticket.{name}"] = "must be text"
                elif len(value.strip()) > _LIMITS.get(name, 20):
                    problems[f"ticket.{name}"] = f"at most {_LIMITS.get(name, 20)} characters"
                else:
                    fields[name] = value.strip()
            if fields.get("category", "x") not in CATEGORIES:
                problems["ticket.category"] = f"one of {', '.join(CATEGORIES)}"
            if fields.get("urgency", "x") not in URGENCIES:
                problems["ticket.urgency"] = f"one of {', '.join(URGENCIES)}"
            severity = fields.get("complaint_severity", "")
            if severity and (severity not in SEVERITIES or fields.get("category") != "complaint"):
                problems["ticket.complaint_severity"] = (
                    f"one of {', '.join(SEVERITIES)}, for a complaint only")
            if not severity:
                fields.pop("complaint_severity", None)
    if disposition in ("ticket", "callback") and ticket is None:
        problems["ticket"] = f"a {disposition} disposition needs the ticket"
    ready = body.get("ready", False)
    if not isinstance(ready, bool):
        problems["ready"] = "true or false"
    if problems:
        return None, problems
    return WrapUp(str(disposition), fields, bool(ready)), {}


def effective_ticket(row: dict[str, Any]) -> dict[str, Any]:
    """A ticket as people see it: the human value where there is one, the automatic
    value otherwise; both kept side by side (``automatic``, ``human``)."""
    human = row.get("human") or {}
    automatic = {k: row.get(k) for k in human}
    return {**row, **human, "human": human, "automatic": automatic}


# The judgement fields the classifier may ask the agent to confirm, and the ticket
# field (as the wrap-up form names it) each one sets; the ticket pages use it too.
CONFIRMABLE = {"category": "category", "urgency": "urgency", "severity": "complaint_severity",
                "address": "building"}


def to_confirm(ticket: dict[str, Any] | None) -> dict[str, list[str]]:
    """The fields the analysis was unsure of and no person has set yet, each with
    the evidence the classifier had (shown to the agent at wrap-up)."""
    if not ticket:
        return {}
    judgement = ticket.get("judgement") or {}
    human = ticket.get("human") or {}
    evidence = judgement.get("evidence") or {}
    return {
        CONFIRMABLE[name]: [str(e) for e in evidence.get(name, [])][:3]
        for name in judgement.get("needs_confirmation") or []
        if name in CONFIRMABLE and CONFIRMABLE[name] not in human
    }
