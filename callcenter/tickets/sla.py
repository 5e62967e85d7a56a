"""SLA deadlines, warnings and escalation, from ``sla.yaml`` (no I/O beyond that file).

Pure and clock-free: every function takes the times it needs. Two layers:

- the classifier's view (``raise_for_vip``, ``deadline``, ``escalation``): one
  deadline and one escalation target for a fresh ticket;
- the lifecycle's clock (``Clock``, ``alarms`` and the ``*_due`` functions): every
  deadline a ticket runs against, with the warnings before it and the escalation
  chain after it, as plain data the state machine fires on its ticks.

Times are aware datetimes; results are in UTC (arithmetic in a local zone would
be wall-clock arithmetic across a DST change). Calendar rules ("the same day")
take the hotline's zone as a ``zoneinfo.ZoneInfo``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml

SLA_FILE = Path(__file__).with_name("sla.yaml")
DEFAULT_TIMEZONE = "Asia/Shanghai"  # the default of the setting ``timezone``
MILESTONES = ("in_progress", "resolved")
DEFAULT_MET_BY = {"P1": "in_progress", "P2": "resolved", "P3": "resolved", "P4": "resolved"}


@dataclass(slots=True, frozen=True)
class Sla:
    deadlines_min: dict[str, int]
    complaint_contact_min: int
    vip_raise: dict[str, str]
    escalation: dict[str, str] = field(default_factory=dict)
    # What meets each urgency's deadline: "in_progress" (on site) or "resolved".
    met_by: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MET_BY))
    complaint_same_day_cutoff: time = time(20, 0)
    complaint_transferred_days: int = 3
    complaint_home_department: str = "service_centre"
    complaint_urgency_clocks: tuple[str, ...] = ("P1", "P2")
    escalation_chain: tuple[str, ...] = ("supervisor", "deputy_gm")
    # Minutes between escalation levels, by urgency, with a "default".
    escalation_interval_min: dict[str, int] = field(default_factory=lambda: {"default": 60})
    warn_at_fraction: tuple[float, ...] = (0.8,)
    warn_minutes_before: tuple[int, ...] = ()
    dispatch_goal_min: int = 5
    callback_within_min: int = 1440
    low_satisfaction_max: int = 2


def _from_dict(data: dict[str, Any]) -> Sla:
    complaints = data.get("complaints") or {}
    warnings = data.get("warnings") or {}
    sla = Sla(
        deadlines_min={str(k): int(v) for k, v in data["deadlines_min"].items()},
        complaint_contact_min=int(data["complaint_contact_min"]),
        vip_raise={str(k): str(v) for k, v in data["vip_raise"].items()},
        escalation={str(k): str(v) for k, v in (data.get("escalation") or {}).items()},
        met_by={**DEFAULT_MET_BY,
                **{str(k): str(v) for k, v in (data.get("met_by") or {}).items()}},
        complaint_same_day_cutoff=_clock_time(complaints.get("same_day_cutoff", "20:00")),
        complaint_transferred_days=int(complaints.get("transferred_days", 3)),
        complaint_home_department=str(complaints.get("home_department", "service_centre")),
        complaint_urgency_clocks=tuple(
            str(u) for u in complaints.get("urgency_clock_for", ("P1", "P2"))),
        escalation_chain=tuple(
            str(r) for r in data.get("escalation_chain", ("supervisor", "deputy_gm"))),
        escalation_interval_min=_intervals(data.get("escalation_interval_min", 60)),
        warn_at_fraction=tuple(float(f) for f in warnings.get("at_fraction", (0.8,))),
        warn_minutes_before=tuple(int(m) for m in warnings.get("minutes_before", ())),
        dispatch_goal_min=int(data.get("dispatch_goal_min", 5)),
        callback_within_min=int(data.get("callback_within_min", 1440)),
        low_satisfaction_max=int(data.get("low_satisfaction_max", 2)),
    )
    _validate(sla)
    return sla


def _clock_time(value: Any) -> time:
    # Unquoted, YAML 1.1 reads 20:00 as the base-60 number 1200: refuse it.
    if not isinstance(value, str):
        raise ValueError(f"invalid SLA: same_day_cutoff must be a quoted 'HH:MM', not {value!r}")
    return time.fromisoformat(value)


def _intervals(value: Any) -> dict[str, int]:
    if isinstance(value, Mapping):
        return {str(k): int(v) for k, v in value.items()}
    return {"default": int(value)}


def _validate(sla: Sla) -> None:
    problems = []
    urgencies = set(sla.deadlines_min)
    problems += [f"met_by {u}: {m!r} is not one of {MILESTONES}"
                 for u, m in sla.met_by.items() if m not in MILESTONES]
    problems += [f"unknown urgency {u!r} in urgency_clock_for"
                 for u in sla.complaint_urgency_clocks if u not in urgencies]
    problems += [f"warning fraction {f} is not between 0 and 1"
                 for f in sla.warn_at_fraction if not 0 < f < 1]
    problems += [f"warning minutes {m} must be positive"
                 for m in sla.warn_minutes_before if m <= 0]
    if not sla.escalation_chain:
        problems.append("escalation_chain is empty")
    if "default" not in sla.escalation_interval_min:
        problems.append("escalation_interval_min needs a default")
    problems += [f"escalation interval {k}: {v} must be positive"
                 for k, v in sla.escalation_interval_min.items() if v <= 0]
    if sla.dispatch_goal_min <= 0 or sla.callback_within_min <= 0:
        problems.append("dispatch_goal_min and callback_within_min must be positive")
    if sla.complaint_transferred_days < 0:
        problems.append("complaints.transferred_days must not be negative")
    if problems:
        raise ValueError("invalid SLA: " + "; ".join(problems))


@lru_cache(maxsize=4)
def load_sla(path: Path = SLA_FILE) -> Sla:
    with open(path, encoding="utf-8") as fh:
        return _from_dict(yaml.safe_load(fh))


# ---- the classifier's view --------------------------------------------------------


def raise_for_vip(urgency: str, vip: str, sla: Sla | None = None) -> str:
    """One level up for an elderly or disabled caller; P4 stays P4."""
    if vip in ("", "none"):
        return urgency
    return (sla or load_sla()).vip_raise.get(urgency, urgency)


def deadline(
    now: datetime, urgency: str, *, complaint: bool = False, sla: Sla | None = None
) -> datetime:
    """When the ticket is due: the urgency clock, or the 12 h complaint-contact clock
    when that comes first."""
    sla = sla or load_sla()
    minutes = sla.deadlines_min[urgency]
    if complaint:
        minutes = min(minutes, sla.complaint_contact_min)
    return now + timedelta(minutes=minutes)


def escalation(
    urgency: str, *, severity: str | None, repeat_complaint: bool, sla: Sla | None = None
) -> str | None:
    """Who the ticket goes up to: management for P1 safety, a supervisor for major
    and repeated complaints, nobody otherwise."""
    rules = (sla or load_sla()).escalation
    if urgency == "P1" and "P1" in rules:
        return rules["P1"]
    if severity == "major" and "major" in rules:
        return rules["major"]
    if repeat_complaint and "repeat_complaint" in rules:
        return rules["repeat_complaint"]
    return None


# ---- times ------------------------------------------------------------------------


def as_utc(at: datetime) -> datetime:
    """``at`` in UTC; a naive time is a bug (whose clock would it be?)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: SLA times must be aware")
    return at.astimezone(UTC)


def end_of_local_day(day: date, zone: ZoneInfo) -> datetime:
    """The end of ``day`` in ``zone`` (the next local midnight), in UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


def urgency_due(start: datetime, urgency: str, sla: Sla | None = None) -> datetime:
    """The urgency clock: P1 on site in 30 min, P2 2 h, P3 24 h, P4 48 h from ``start``."""
    return as_utc(start) + timedelta(minutes=(sla or load_sla()).deadlines_min[urgency])


def complaint_contact_due(received_at: datetime, sla: Sla | None = None) -> datetime:
    """A complaint's first contact with the resident: within 12 h."""
    return as_utc(received_at) + timedelta(minutes=(sla or load_sla()).complaint_contact_min)


def complaint_close_due(
    received_at: datetime, zone: ZoneInfo, *, transferred: bool, sla: Sla | None = None
) -> datetime:
    """When a complaint must be closed, in the hotline's calendar.

    Within the service centre's scope: the end of the local day of receipt; one
    received at or after the cut-off (20:00) counts as received the next day, so
    it always has at least 24:00 minus the cut-off (four hours) and a complaint
    at 23:50 is not overdue ten minutes later. Passed to another department: the
    end of the third local day after the day of receipt.
    """
    sla = sla or load_sla()
    local = as_utc(received_at).astimezone(zone)
    if transferred:
        return end_of_local_day(local.date() + timedelta(days=sla.complaint_transferred_days), zone)
    day = local.date()
    if local.time() >= sla.complaint_same_day_cutoff:
        day += timedelta(days=1)
    return end_of_local_day(day, zone)


def dispatch_due(created_at: datetime, sla: Sla | None = None) -> datetime:
    """The goal for time to dispatch (5 minutes after the ticket was opened)."""
    return as_utc(created_at) + timedelta(minutes=(sla or load_sla()).dispatch_goal_min)


def time_to_dispatch(created_at: datetime, dispatched_at: datetime) -> timedelta:
    return as_utc(dispatched_at) - as_utc(created_at)


def dispatched_on_time(
    created_at: datetime, dispatched_at: datetime, sla: Sla | None = None
) -> bool:
    return as_utc(dispatched_at) <= dispatch_due(created_at, sla)


def callback_due(resolved_at: datetime, sla: Sla | None = None) -> datetime:
    """The call-back (回访) to the resident: within 24 h of the fix."""
    return as_utc(resolved_at) + timedelta(minutes=(sla or load_sla()).callback_within_min)


# ---- escalation -------------------------------------------------------------------


# The rules of ``sla.yaml: escalation`` that raise a ticket the moment it is known,
# with the reason each one gives.
IMMEDIATE_REASONS = {"P1": "safety", "major": "major_complaint",
                     "repeat_complaint": "repeat_complaint"}


def immediate_escalations(
    urgency: str, *, severity: str | None, repeat_complaint: bool, sla: Sla | None = None
) -> list[tuple[str, str]]:
    """Every (reason, target) that applies at once, unlike ``escalation`` which gives
    the first only: a P1 major complaint goes to management and starts the chain."""
    rules = (sla or load_sla()).escalation
    applies = {"P1": urgency == "P1", "major": severity == "major",
               "repeat_complaint": repeat_complaint}
    return [(IMMEDIATE_REASONS[rule], rules[rule])
            for rule, hit in applies.items() if hit and rule in rules]


def chain_level(target: str, sla: Sla | None = None) -> int:
    """The level of ``target`` in the escalation chain (1 = first above the owner);
    0 for someone outside it (management, informed at once for safety)."""
    chain = (sla or load_sla()).escalation_chain
    return chain.index(target) + 1 if target in chain else 0


def escalation_interval(urgency: str, sla: Sla | None = None) -> timedelta:
    intervals = (sla or load_sla()).escalation_interval_min
    return timedelta(minutes=intervals.get(urgency, intervals["default"]))


# ---- the clock --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clock:
    """One deadline a ticket runs against, from ``start`` to ``due``.

    ``name``: dispatch | contact | deadline | closure | callback. A clock that
    does not escalate is a goal: missing it warns the owner once, nothing more.
    """

    name: str
    start: datetime
    due: datetime
    escalates: bool = True

    @property
    def key(self) -> str:
        # A clock whose deadline moves (an edited urgency, a complaint passed on)
        # is a new clock: its warnings and escalations are due again.
        return f"{self.name}@{as_utc(self.due).strftime('%Y%m%dT%H%M%SZ')}"


@dataclass(frozen=True, slots=True)
class Alarm:
    """Something a clock asks for at ``at``: a warning to the owner, or one level of
    escalation. ``key`` is unique per clock and alarm, so each fires once."""

    key: str
    kind: Literal["warn", "escalate"]
    at: datetime
    clock: Clock
    label: str = ""  # warn: "80%", "15m" or "missed" (a goal)
    level: int = 0  # escalate: the chain level reached
    to: str = ""  # escalate: who is told
    stale_at: datetime | None = None  # a warning no longer worth sending from then on


def alarms(clock: Clock, *, urgency: str, start_level: int = 0,
           sla: Sla | None = None) -> list[Alarm]:
    """Every warning and escalation of ``clock``, in time order.

    Warnings come before the deadline (at each fraction of the window and each
    "minutes before"), and are stale once it has passed: the escalation speaks
    then. Escalation climbs from ``start_level`` (where immediate rules put the
    ticket): the next level when the deadline passes, one more each interval.
    """
    sla = sla or load_sla()
    if not clock.escalates:
        return [Alarm(f"{clock.key}:warn:missed", "warn", as_utc(clock.due), clock, "missed")]
    out = _warnings(clock, sla) + _escalations(clock, urgency, start_level, sla)
    return sorted(out, key=lambda a: (a.at, a.key))


def _warnings(clock: Clock, sla: Sla) -> list[Alarm]:
    start, due = as_utc(clock.start), as_utc(clock.due)
    moments = [(f"{round(f * 100)}%", start + (due - start) * f) for f in sla.warn_at_fraction]
    moments += [(f"{m}m", max(start, due - timedelta(minutes=m)))
                for m in sla.warn_minutes_before]
    return [Alarm(f"{clock.key}:warn:{label}", "warn", at, clock, label, stale_at=due)
            for label, at in moments]


def _escalations(clock: Clock, urgency: str, start_level: int, sla: Sla) -> list[Alarm]:
    due, every = as_utc(clock.due), escalation_interval(urgency, sla)
    chain = sla.escalation_chain
    return [
        Alarm(f"{clock.key}:escalate:{level}", "escalate", due + every * step, clock,
              level=level, to=chain[level - 1])
        for step, level in enumerate(range(start_level + 1, len(chain) + 1))
    ]
