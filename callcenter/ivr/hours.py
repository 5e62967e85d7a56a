"""Opening hours of the hotline's queues, with China's public holidays (pure).

The ``hours:`` section of ``callcenter/ivr/menu.yaml`` gives each queue either
``always`` or, per kind of day, a list of ``"HH:MM-HH:MM"`` spans in the
hotline's local time::

    hours:
      repair: always
      complaint:
        workday: ["08:00-20:00"]
        restday: ["09:00-17:00"]     # weekends and public holidays
        holiday: []                  # optional: public holidays only (here: closed)
      consultation:
        workday: ["20:00-08:00"]     # crosses midnight: until 08:00 the next day

Kinds of day come from the maintained ``chinese-calendar`` library (the State
Council's yearly holiday notice): ``workday`` (make-up working days, 调休,
included), ``restday`` (weekends and public holidays), ``holiday`` (a day off of a
public holiday break, the days off in lieu included). ``holiday`` spans override
``restday`` on those days; a queue without them uses ``restday``. A kind of day a
queue does not list is closed. A span belongs to the day it starts on: a span
crossing midnight runs into the next day whatever kind that day is.

No I/O and no clock: the time is passed in (timezone-aware) and evaluated in the
hotline's zone (the setting ``timezone``, as a ``ZoneInfo``). For a year the
library has no data yet it raises ``NotImplementedError``; we then fall back to
weekends only (logged once per year) and ``calendar_years()`` lets a configuration
check warn before that year comes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Literal, get_args
from zoneinfo import ZoneInfo

import chinese_calendar
from chinese_calendar import constants as holiday_data

log = logging.getLogger("callcenter.ivr.hours")

DayKind = Literal["workday", "restday", "holiday"]
DAY_KINDS: tuple[DayKind, ...] = get_args(DayKind)
ALWAYS = "always"
DEFAULT_TIMEZONE = ZoneInfo("Asia/Shanghai")  # the default of the setting ``timezone``
MINUTES_PER_DAY = 24 * 60
# How far next_opening looks ahead: a queue open on public holidays only may wait
# most of a year for the next one.
LOOKAHEAD_DAYS = 400
# The State Council publishes a year's holidays in the autumn before, and the library
# follows: warn this long before a year it lacks begins.
CALENDAR_WARNING_DAYS = 62

_SPAN = re.compile(r"^\s*(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*$")


class HoursError(ValueError):
    """The ``hours`` section is malformed; the message names the queue and span."""


@dataclass(frozen=True, slots=True)
class Span:
    """Open from ``start`` to ``end`` (minutes after local midnight, end excluded).
    ``end <= start`` means the span crosses midnight; ``end`` may be 1440 (24:00)."""

    start: int
    end: int

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One queue's opening hours. ``always`` ignores ``spans``."""

    queue: str
    always: bool = False
    spans: Mapping[DayKind, tuple[Span, ...]] = field(default_factory=dict)

    def spans_on(self, kind: DayKind) -> tuple[Span, ...]:
        if kind == "holiday" and "holiday" not in self.spans:
            kind = "restday"  # a public holiday is a rest day unless said otherwise
        return self.spans.get(kind, ())


# ---- parsing ----------------------------------------------------------------------


def parse_hours(section: object, known_queues: Collection[str] | None = None
                ) -> dict[str, Schedule]:
    """The whole ``hours`` section: queue name -> schedule. ``known_queues``
    (when given) are the only names allowed."""
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise HoursError("hours: expected a mapping of queue name to opening hours")
    schedules = {}
    for queue, value in section.items():
        if known_queues is not None and queue not in known_queues:
            raise HoursError(f"hours.{queue}: unknown queue (known: "
                             f"{', '.join(sorted(known_queues))})")
        schedules[str(queue)] = parse_schedule(str(queue), value)
    return schedules


def parse_schedule(queue: str, value: object) -> Schedule:
    """One queue's entry: ``"always"`` or ``{kind of day: ["HH:MM-HH:MM", ...]}``."""
    if value == ALWAYS:
        return Schedule(queue=queue, always=True)
    if not isinstance(value, Mapping) or not value:
        raise HoursError(f"hours.{queue}: expected \"{ALWAYS}\" or a mapping of "
                         f"{', '.join(DAY_KINDS)} to lists of \"HH:MM-HH:MM\" spans")
    spans: dict[DayKind, tuple[Span, ...]] = {}
    for kind, texts in value.items():
        if kind not in DAY_KINDS:
            raise HoursError(f"hours.{queue}: unknown kind of day {kind!r} "
                             f"(expected {', '.join(DAY_KINDS)})")
        if not isinstance(texts, list):
            raise HoursError(f"hours.{queue}.{kind}: expected a list of \"HH:MM-HH:MM\" "
                             "spans ([] for closed)")
        spans[kind] = tuple(parse_span(f"hours.{queue}.{kind}", text) for text in texts)
    return Schedule(queue=queue, spans=spans)


def parse_span(where: str, text: object) -> Span:
    """``"08:00-20:00"``; ``"20:00-08:00"`` crosses midnight; ``24:00`` ends a day."""
    match = _SPAN.match(text) if isinstance(text, str) else None
    if match is None:
        raise HoursError(f"{where}: span {text!r} is not \"HH:MM-HH:MM\"")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or start_m > 59 or end_m > 59 or end_h > 24 or (end_h == 24 and end_m):
        raise HoursError(f"{where}: span {text!r} has a time outside 00:00-24:00")
    span = Span(start_h * 60 + start_m, end_h * 60 + end_m)
    if span.start == span.end:
        raise HoursError(f"{where}: span {text!r} is empty or a whole day "
                         "(write \"00:00-24:00\" for a whole day)")
    return span


# ---- the calendar -----------------------------------------------------------------


def calendar_years() -> range:
    """The years chinese-calendar knows the holidays of (each year's notice is
    published in the autumn before; a newer release of the library adds it)."""
    years = [day.year for day in holiday_data.holidays]
    return range(min(years), max(years) + 1)


def calendar_warning(today: date, ahead_days: int = CALENDAR_WARNING_DAYS) -> str | None:
    """A warning for a configuration check when the holiday calendar lacks a year
    within ``ahead_days`` of ``today`` (opening hours then follow weekends only)."""
    covered = calendar_years()
    last = today + timedelta(days=ahead_days)
    missing = [year for year in range(today.year, last.year + 1) if year not in covered]
    if not missing:
        return None
    return (f"the holiday calendar (chinese-calendar) covers {covered.start}-"
            f"{covered.stop - 1}, not {', '.join(map(str, missing))}: opening hours "
            "follow weekends only there; upgrade chinesecalendar")


def kind_of_day(day: date) -> DayKind:
    """``workday`` (make-up working days included), ``holiday`` (a day off of a
    public holiday break) or ``restday`` (any other weekend day)."""
    try:
        day_off, holiday_name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        _warn_not_covered(day.year)
        return "restday" if day.weekday() >= 5 else "workday"
    if not day_off:
        return "workday"
    # The library names every day of a holiday break and leaves plain weekends unnamed.
    return "holiday" if holiday_name is not None else "restday"


@cache
def _warn_not_covered(year: int) -> None:
    """Logged once per year (cached), not on every call of that year."""
    covered = calendar_years()
    log.warning("chinese-calendar has no holidays for %d (it covers %d-%d): opening "
                "hours follow weekends only; upgrade chinesecalendar",
                year, covered.start, covered.stop - 1)


# ---- questions --------------------------------------------------------------------


def is_open(schedule: Schedule, at: datetime, zone: ZoneInfo = DEFAULT_TIMEZONE) -> bool:
    """Whether the queue is open at ``at`` (timezone-aware), in the zone's local time."""
    if schedule.always:
        return True
    local = _local(at, zone)
    minute = local.hour * 60 + local.minute
    today = local.date()
    for span in schedule.spans_on(kind_of_day(today)):
        end = MINUTES_PER_DAY if span.crosses_midnight else span.end
        if span.start <= minute < end:
            return True
    # Yesterday's spans that cross midnight are still running this morning.
    yesterday = today - timedelta(days=1)
    return any(span.crosses_midnight and minute < span.end
               for span in schedule.spans_on(kind_of_day(yesterday)))


def next_opening(schedule: Schedule, at: datetime, zone: ZoneInfo = DEFAULT_TIMEZONE
                 ) -> datetime | None:
    """When the queue next opens, in the zone's local time: ``at`` itself when it is
    open then, None when it never opens within ``LOOKAHEAD_DAYS``."""
    local = _local(at, zone)
    if is_open(schedule, local, zone):
        return local
    minute = local.hour * 60 + local.minute
    for offset in range(LOOKAHEAD_DAYS):
        day = local.date() + timedelta(days=offset)
        starts = [span.start for span in schedule.spans_on(kind_of_day(day))
                  if offset > 0 or span.start > minute]
        if starts:
            return _at_minute(day, min(starts), zone)
    return None


def _local(at: datetime, zone: ZoneInfo) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("opening hours need a timezone-aware time")
    return at.astimezone(zone)


def _at_minute(day: date, minute: int, zone: ZoneInfo) -> datetime:
    wall = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone)
    # Through UTC and back: a wall time skipped by a DST change becomes a real one.
    return wall.astimezone(UTC).astimezone(zone)


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
