"""Opening hours with China's public holidays and make-up working days (pure)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from callcenter.constants import QUEUES
from callcenter.ivr import hours
from callcenter.ivr.hours import HoursError, is_open, kind_of_day, next_opening, parse_schedule

SHANGHAI = ZoneInfo("Asia/Shanghai")  # UTC+8 all year: no DST
MENU_FILE = Path(hours.__file__).with_name("menu.yaml")

OFFICE = parse_schedule("complaint", {"workday": ["08:00-20:00"], "restday": ["09:00-17:00"]})
OFFICE_CLOSED_ON_HOLIDAYS = parse_schedule(
    "complaint", {"workday": ["08:00-20:00"], "restday": ["09:00-17:00"], "holiday": []})
NIGHTS = parse_schedule("consultation", {"workday": ["20:00-08:00"]})


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


# ---- kinds of day: the 2026 calendar as the library has it ------------------------


@pytest.mark.parametrize(("day", "kind"), [
    (date(2026, 10, 1), "holiday"),   # National Day
    (date(2026, 10, 7), "holiday"),   # a Wednesday off in lieu, part of the break
    (date(2026, 9, 20), "workday"),   # a Sunday worked for National Day (调休)
    (date(2026, 10, 10), "workday"),  # a Saturday worked for National Day
    (date(2026, 10, 8), "workday"),   # the Thursday after the break
    (date(2026, 10, 11), "restday"),  # an ordinary Sunday
    (date(2026, 11, 14), "restday"),  # an ordinary Saturday
    (date(2026, 11, 16), "workday"),  # an ordinary Monday
    (date(2026, 9, 25), "holiday"),   # Mid-autumn Festival, a Friday
])
def test_kind_of_day_2026(day: date, kind: str) -> None:
    assert kind_of_day(day) == kind


def test_a_year_the_calendar_lacks_falls_back_to_weekends_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hours._warn_not_covered.cache_clear()
    year = hours.calendar_years().stop + 3
    saturday = next(date(year, 1, d) for d in range(1, 8) if date(year, 1, d).weekday() == 5)
    with caplog.at_level(logging.WARNING, logger="callcenter.ivr.hours"):
        assert kind_of_day(saturday) == "restday"
        assert kind_of_day(date(year, 1, saturday.day + 2)) == "workday"  # a Monday
        assert kind_of_day(date(year, 10, 1)) in ("workday", "restday")  # no holiday known
    warnings = [r for r in caplog.records if str(year) in r.getMessage()]
    assert len(warnings) == 1


def test_covered_years_and_the_configuration_warning() -> None:
    years = hours.calendar_years()
    assert 2004 in years and 2026 in years
    last = years.stop - 1
    assert hours.calendar_warning(date(last, 6, 1)) is None  # next year is months away
    warning = hours.calendar_warning(date(last, 11, 30))
    assert warning is not None and str(last + 1) in warning
    assert hours.calendar_warning(date(last, 11, 30), ahead_days=7) is None


# ---- is_open and next_opening -----------------------------------------------------


def test_always_is_open_at_any_hour_and_opens_now() -> None:
    always = parse_schedule("repair", "always")
    at = local(2026, 10, 1, 3, 0)
    assert is_open(always, at)
    assert next_opening(always, at) == at


def test_workday_and_weekend_hours() -> None:
    assert is_open(OFFICE, local(2026, 11, 16, 8, 0))       # Monday, the opening minute
    assert not is_open(OFFICE, local(2026, 11, 16, 20, 0))  # the closing minute is closed
    assert not is_open(OFFICE, local(2026, 11, 14, 8, 30))  # Saturday opens at 09:00
    assert is_open(OFFICE, local(2026, 11, 14, 16, 59))
    assert next_opening(OFFICE, local(2026, 11, 14, 8, 30)) == local(2026, 11, 14, 9, 0)
    assert next_opening(OFFICE, local(2026, 11, 14, 17, 0)) == local(2026, 11, 15, 9, 0)


def test_make_up_working_day_keeps_workday_hours() -> None:
    saturday_worked = local(2026, 10, 10, 8, 30)
    assert is_open(OFFICE, saturday_worked)
    assert not is_open(OFFICE, local(2026, 10, 17, 8, 30))  # an ordinary Saturday


def test_holidays_use_restday_hours_unless_given_their_own() -> None:
    national_day = local(2026, 10, 2, 10, 0)  # a Friday off
    assert is_open(OFFICE, national_day)
    assert not is_open(OFFICE_CLOSED_ON_HOLIDAYS, national_day)
    # Closed through the break (1-7 October), open again on Thursday the 8th.
    assert next_opening(OFFICE_CLOSED_ON_HOLIDAYS, national_day) == local(2026, 10, 8, 8, 0)
    # An ordinary weekend keeps restday hours.
    assert is_open(OFFICE_CLOSED_ON_HOLIDAYS, local(2026, 10, 11, 10, 0))


def test_span_crossing_midnight_runs_into_the_next_day() -> None:
    assert is_open(NIGHTS, local(2026, 11, 13, 23, 0))      # Friday night
    assert is_open(NIGHTS, local(2026, 11, 14, 7, 59))      # Saturday morning: Friday's span
    assert not is_open(NIGHTS, local(2026, 11, 14, 8, 0))
    assert not is_open(NIGHTS, local(2026, 11, 14, 21, 0))  # no restday hours
    assert not is_open(NIGHTS, local(2026, 11, 15, 7, 0))   # Saturday night had no span
    assert is_open(NIGHTS, local(2026, 11, 17, 3, 0))       # Monday's span, Tuesday 03:00
    assert next_opening(NIGHTS, local(2026, 11, 14, 9, 0)) == local(2026, 11, 16, 20, 0)


def test_whole_day_span_to_midnight() -> None:
    whole = parse_schedule("general", {"workday": ["00:00-24:00"]})
    assert is_open(whole, local(2026, 11, 16, 0, 0))
    assert is_open(whole, local(2026, 11, 16, 23, 59))
    assert not is_open(whole, local(2026, 11, 14, 12, 0))


def test_times_in_other_zones_are_read_in_the_hotline_zone() -> None:
    monday_0830_shanghai = datetime(2026, 11, 16, 0, 30, tzinfo=UTC)
    assert is_open(OFFICE, monday_0830_shanghai)
    sunday_evening_new_york = datetime(2026, 11, 15, 19, 30, tzinfo=ZoneInfo("America/New_York"))
    assert is_open(OFFICE, sunday_evening_new_york)  # Monday 08:30 in Shanghai
    # The same instant is 00:30 on Monday in UTC: closed with UTC as the hotline's zone.
    assert not is_open(OFFICE, monday_0830_shanghai, ZoneInfo("UTC"))
    opening = next_opening(OFFICE, datetime(2026, 11, 15, 23, 0, tzinfo=UTC))
    assert opening == local(2026, 11, 16, 8, 0) and opening.tzinfo == SHANGHAI


def test_never_open_has_no_next_opening() -> None:
    closed = parse_schedule("general", {"workday": [], "restday": []})
    assert not is_open(closed, local(2026, 11, 16, 10, 0))
    assert next_opening(closed, local(2026, 11, 16, 10, 0)) is None


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(OFFICE, datetime(2026, 11, 16, 10, 0))


# ---- parsing and its errors -------------------------------------------------------


def test_menu_file_hours_parse() -> None:
    section = yaml.safe_load(MENU_FILE.read_text(encoding="utf-8"))["hours"]
    schedules = hours.parse_hours(section, QUEUES)
    assert set(schedules) <= set(QUEUES)


def test_parse_hours_builds_each_queue() -> None:
    schedules = hours.parse_hours({"repair": "always", "complaint": {"workday": ["08:00-20:00"]}})
    assert schedules["repair"].always
    assert schedules["complaint"].spans_on("workday") == (hours.Span(8 * 60, 20 * 60),)
    assert schedules["complaint"].spans_on("restday") == ()
    assert str(schedules["complaint"].spans_on("workday")[0]) == "08:00-20:00"


@pytest.mark.parametrize(("section", "message"), [
    ({"complaint": {"workday": ["8:00-20:00"]}},
     "hours.complaint.workday: span '8:00-20:00' is not \"HH:MM-HH:MM\""),
    ({"complaint": {"workday": ["08:00-25:00"]}},
     "hours.complaint.workday: span '08:00-25:00' has a time outside"),
    ({"complaint": {"restday": ["08:60-20:00"]}}, "hours.complaint.restday: span '08:60-20:00'"),
    ({"complaint": {"workday": ["24:00-08:00"]}}, "span '24:00-08:00' has a time outside"),
    ({"complaint": {"workday": ["08:00-08:00"]}}, "span '08:00-08:00' is empty or a whole day"),
    ({"complaint": {"workday": ["00:00-00:00"]}}, "span '00:00-00:00' is empty"),
    ({"complaint": {"workday": [800]}}, "span 800 is not"),
    ({"complaint": {"weekday": ["08:00-20:00"]}}, "hours.complaint: unknown kind of day 'weekday'"),
    ({"complaint": {"workday": "08:00-20:00"}}, "hours.complaint.workday: expected a list"),
    ({"complaint": "sometimes"}, "hours.complaint: expected \"always\""),
    ({"complaint": {}}, "hours.complaint: expected \"always\""),
    ({"billing": "always"}, "hours.billing: unknown queue"),
    (["always"], "hours: expected a mapping"),
])
def test_validation_errors_name_the_queue_and_span(section: object, message: str) -> None:
    with pytest.raises(HoursError) as error:
        hours.parse_hours(section, QUEUES)
    assert message in str(error.value)
