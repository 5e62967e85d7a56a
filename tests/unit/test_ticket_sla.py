"""The SLA clock: deadlines by urgency, complaint rules in the hotline's calendar,
time to dispatch, warnings and the escalation chain (pure, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from callcenter.tickets import sla
from callcenter.tickets.sla import Clock

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 10:00 in Shanghai (UTC+8).
T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


# The end of 30 November in Shanghai (its local midnight).
END_OF_DAY = datetime(2026, 12, 1, 0, 0, tzinfo=SHANGHAI)


def local(hour: int, minute: int = 0) -> datetime:
    """A time on 30 November in Shanghai."""
    return datetime(2026, 11, 30, hour, minute, tzinfo=SHANGHAI)


def sla_with(**changes: Any) -> sla.Sla:
    """The shipped sla.yaml with some keys replaced (as parsed YAML)."""
    import yaml

    data = yaml.safe_load(sla.SLA_FILE.read_text(encoding="utf-8"))
    data.update(changes)
    return sla._from_dict(data)


# ---- the classifier's functions keep their behaviour ----------------------------


def test_existing_functions_keep_their_signatures_and_results() -> None:
    now = datetime(2025, 6, 1, 10, 0)  # the classifier passes naive times: still fine
    assert sla.raise_for_vip("P3", "elderly") == "P2"
    assert sla.raise_for_vip("P4", "disabled") == "P4"
    assert sla.raise_for_vip("P2", "none") == "P2"
    assert sla.deadline(now, "P3") == now + timedelta(hours=24)
    assert sla.deadline(now, "P3", complaint=True) == now + timedelta(hours=12)
    assert sla.deadline(now, "P1", complaint=True, sla=sla.load_sla()) == now + timedelta(
        minutes=30)
    assert sla.escalation("P1", severity="major", repeat_complaint=True) == "management"
    assert sla.escalation("P3", severity="major", repeat_complaint=False) == "supervisor"
    assert sla.escalation("P3", severity=None, repeat_complaint=True) == "supervisor"
    assert sla.escalation("P3", severity="minor", repeat_complaint=False) is None
    assert sla.load_sla() is sla.load_sla()  # cached


def test_the_shipped_table() -> None:
    table = sla.load_sla()
    assert table.deadlines_min == {"P1": 30, "P2": 120, "P3": 1440, "P4": 2880}
    assert table.complaint_contact_min == 720
    assert table.met_by == {"P1": "in_progress", "P2": "resolved", "P3": "resolved",
                            "P4": "resolved"}
    assert table.complaint_same_day_cutoff == time(20, 0)
    assert table.complaint_transferred_days == 3
    assert table.complaint_home_department == "service_centre"
    assert table.escalation_chain == ("supervisor", "deputy_gm")
    assert table.warn_at_fraction == (0.8,)
    assert table.dispatch_goal_min == 5
    assert table.callback_within_min == 1440
    assert table.low_satisfaction_max == 2


def test_an_old_style_table_gets_the_defaults() -> None:
    old = sla._from_dict({"deadlines_min": {"P1": 30, "P2": 120, "P3": 1440, "P4": 2880},
                          "complaint_contact_min": 720, "vip_raise": {"P3": "P2"}})
    assert old.escalation == {}
    assert old.escalation_chain == ("supervisor", "deputy_gm")
    assert old.escalation_interval_min == {"default": 60}
    assert old.complaint_same_day_cutoff == time(20, 0)
    # Built by hand (the classifier's tests do): the new fields have defaults too.
    assert sla.Sla({"P3": 1440}, 720, {}).dispatch_goal_min == 5


@pytest.mark.parametrize(("changes", "problem"), [
    ({"complaints": {"same_day_cutoff": 1200}}, "quoted 'HH:MM'"),
    ({"warnings": {"at_fraction": [1.2]}}, "between 0 and 1"),
    ({"warnings": {"minutes_before": [0]}}, "must be positive"),
    ({"escalation_chain": []}, "escalation_chain is empty"),
    ({"escalation_interval_min": {"P1": 15}}, "needs a default"),
    ({"met_by": {"P2": "closed"}}, "is not one of"),
    ({"complaints": {"urgency_clock_for": ["P9"]}}, "unknown urgency"),
    ({"dispatch_goal_min": 0}, "must be positive"),
])
def test_invalid_tables_are_refused(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        sla_with(**changes)


def test_interval_may_be_one_number() -> None:
    table = sla_with(escalation_interval_min=45)
    assert sla.escalation_interval("P1", table) == timedelta(minutes=45)


# ---- deadlines ------------------------------------------------------------------


@pytest.mark.parametrize(("urgency", "minutes"), [
    ("P1", 30), ("P2", 120), ("P3", 24 * 60), ("P4", 48 * 60)])
def test_urgency_deadlines(urgency: str, minutes: int) -> None:
    assert sla.urgency_due(T0, urgency) == T0 + timedelta(minutes=minutes)


def test_results_are_utc_and_naive_times_are_refused() -> None:
    due = sla.urgency_due(local(10), "P1")
    assert due.tzinfo is UTC and due == T0 + timedelta(minutes=30)
    with pytest.raises(ValueError, match="naive"):
        sla.urgency_due(datetime(2026, 11, 30, 10, 0), "P1")
    with pytest.raises(ValueError, match="naive"):
        sla.complaint_close_due(datetime(2026, 11, 30, 10, 0), SHANGHAI, transferred=False)


def test_complaint_contact_within_12_hours() -> None:
    assert sla.complaint_contact_due(T0) == T0 + timedelta(hours=12)


@pytest.mark.parametrize(("received", "due"), [
    (local(10), END_OF_DAY),  # the end of the same local day
    (local(0, 1), END_OF_DAY),
    (local(19, 59), END_OF_DAY),  # before the cut-off: four hours and a minute
    (local(20, 0), END_OF_DAY + timedelta(days=1)),  # at the cut-off: the next day
    (local(23, 50), END_OF_DAY + timedelta(days=1)),  # not ten minutes: 24 h 10 min
])
def test_same_day_closure_in_the_hotlines_calendar(received: datetime, due: datetime) -> None:
    assert sla.complaint_close_due(received, SHANGHAI, transferred=False) == due


def test_same_day_means_the_local_day_whatever_the_input_zone() -> None:
    # 15:50 UTC is 23:50 in Shanghai: past the cut-off there, whatever UTC's day says.
    received = datetime(2026, 11, 30, 15, 50, tzinfo=UTC)
    assert sla.complaint_close_due(received, SHANGHAI, transferred=False) == datetime(
        2026, 12, 1, 16, 0, tzinfo=UTC)
    # The same instant in London is 15:50: closed by London's midnight.
    london = sla.complaint_close_due(received, ZoneInfo("Europe/London"), transferred=False)
    assert london == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


def test_a_complaint_passed_on_has_three_local_days() -> None:
    three_days = END_OF_DAY + timedelta(days=3)
    assert sla.complaint_close_due(local(10), SHANGHAI, transferred=True) == three_days
    # The cut-off is for the same-day rule only.
    assert sla.complaint_close_due(local(23, 50), SHANGHAI, transferred=True) == three_days


def test_end_of_local_day_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29 is 23 hours long in Berlin: its end is 22:00 UTC, not 23:00.
    end = sla.end_of_local_day(datetime(2026, 3, 29).date(), berlin)
    assert end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)


def test_time_to_dispatch_and_its_goal() -> None:
    assert sla.dispatch_due(T0) == T0 + timedelta(minutes=5)
    assert sla.time_to_dispatch(T0, T0 + timedelta(seconds=312)) == timedelta(seconds=312)
    assert sla.dispatched_on_time(T0, T0 + timedelta(minutes=5))
    assert not sla.dispatched_on_time(T0, T0 + timedelta(minutes=5, seconds=1))
    assert sla.dispatched_on_time(T0, T0 + timedelta(minutes=8), sla_with(dispatch_goal_min=10))


def test_callback_within_24_hours_of_the_fix() -> None:
    assert sla.callback_due(T0) == T0 + timedelta(hours=24)


# ---- escalation -----------------------------------------------------------------


@pytest.mark.parametrize(("urgency", "severity", "repeat", "expected"), [
    ("P3", None, False, []),
    ("P1", None, False, [("safety", "management")]),
    ("P3", "major", False, [("major_complaint", "supervisor")]),
    ("P3", "important", True, [("repeat_complaint", "supervisor")]),
    ("P1", "major", True, [("safety", "management"), ("major_complaint", "supervisor"),
                           ("repeat_complaint", "supervisor")]),
])
def test_immediate_escalations(urgency: str, severity: str | None, repeat: bool,
                               expected: list[tuple[str, str]]) -> None:
    assert sla.immediate_escalations(urgency, severity=severity,
                                     repeat_complaint=repeat) == expected


def test_chain_levels_and_intervals() -> None:
    assert sla.chain_level("supervisor") == 1
    assert sla.chain_level("deputy_gm") == 2
    assert sla.chain_level("management") == 0  # outside the chain: informed, not a level
    assert sla.escalation_interval("P1") == timedelta(minutes=15)
    assert sla.escalation_interval("P3") == timedelta(minutes=60)  # the default


# ---- alarms ---------------------------------------------------------------------


def test_a_clock_warns_at_80_percent_then_climbs_the_chain() -> None:
    clock = Clock("deadline", T0, T0 + timedelta(hours=24))
    alarms = sla.alarms(clock, urgency="P3")
    assert [(a.kind, a.at - T0, a.label, a.level, a.to) for a in alarms] == [
        ("warn", timedelta(hours=19, minutes=12), "80%", 0, ""),
        ("escalate", timedelta(hours=24), "", 1, "supervisor"),
        ("escalate", timedelta(hours=25), "", 2, "deputy_gm"),
    ]
    assert alarms[0].stale_at == clock.due  # a warning after the deadline is useless
    assert all(a.stale_at is None for a in alarms[1:])
    assert len({a.key for a in alarms}) == 3
    assert alarms[1].key == "deadline@20261201T020000Z:escalate:1"


def test_a_chain_started_by_a_major_complaint_goes_on_from_there() -> None:
    clock = Clock("closure", T0, T0 + timedelta(hours=14))
    alarms = sla.alarms(clock, urgency="P3", start_level=1)
    escalations = [(a.at - T0, a.to) for a in alarms if a.kind == "escalate"]
    assert escalations == [(timedelta(hours=14), "deputy_gm")]
    assert [a for a in sla.alarms(clock, urgency="P3", start_level=2)
            if a.kind == "escalate"] == []


def test_minutes_before_warnings_and_several_fractions() -> None:
    table = sla_with(warnings={"at_fraction": [0.5, 0.8], "minutes_before": [10, 60]})
    clock = Clock("deadline", T0, T0 + timedelta(minutes=30))
    warnings = [(a.label, a.at - T0) for a in sla.alarms(clock, urgency="P1", sla=table)
                if a.kind == "warn"]
    # 60 minutes before a 30-minute window is its start.
    assert sorted(warnings, key=lambda w: (w[1], w[0])) == [
        ("60m", timedelta(0)), ("50%", timedelta(minutes=15)), ("10m", timedelta(minutes=20)),
        ("80%", timedelta(minutes=24))]


def test_a_goal_warns_once_when_missed_and_never_escalates() -> None:
    clock = Clock("dispatch", T0, T0 + timedelta(minutes=5), escalates=False)
    (alarm,) = sla.alarms(clock, urgency="P1")
    assert (alarm.kind, alarm.at, alarm.label, alarm.stale_at) == (
        "warn", T0 + timedelta(minutes=5), "missed", None)


def test_a_moved_deadline_is_a_new_clock() -> None:
    same_day = Clock("closure", T0, T0 + timedelta(hours=14))
    passed_on = Clock("closure", T0, T0 + timedelta(days=3, hours=14))
    assert same_day.key != passed_on.key
    # The key is the instant, whatever zone the deadline was written in.
    assert Clock("closure", T0, END_OF_DAY).key == same_day.key == "closure@20261130T160000Z"
