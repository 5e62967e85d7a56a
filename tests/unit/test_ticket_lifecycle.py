"""The ticket lifecycle machine, transition by transition, and its SLA clock, tick by
tick: no clock, no I/O (events carry their own times)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from callcenter.core import Ticket
from callcenter.tickets import lifecycle as lc
from callcenter.tickets.departments import (
    department_for,
    departments_from_dict,
    load_departments,
)
from callcenter.tickets.lifecycle import (
    AddNote,
    Assign,
    CallbackDone,
    Close,
    Command,
    Contacted,
    Dispatch,
    Edit,
    Escalate,
    Notify,
    Persist,
    Record,
    Rejected,
    Reopen,
    Resolve,
    Schedule,
    Start,
    Tick,
    TicketState,
    Warn,
)

# 10:00 in Shanghai, the hotline's zone.
T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
NUMBER = "T20261130-000012"
PHONE = "13800001234"
POLICY = lc.make_policy("Asia/Shanghai")
C = TypeVar("C")


def t(minutes: float = 0, *, hours: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, hours=hours, days=days)


def of(kind: type[C], commands: list[Command]) -> list[C]:
    return [c for c in commands if isinstance(c, kind)]


class Life:
    """One ticket fed event by event; every command kept."""

    def __init__(self, category: str = "engineering", urgency: str = "P3", *,
                 by: str = "agent7", at: datetime = T0, **fields: Any) -> None:
        fields.setdefault("phone", PHONE)
        fields.setdefault("description", "厨房水管漏水")
        ticket = Ticket(category, urgency, **fields)
        self.state, self.opened = lc.open_ticket(NUMBER, ticket, at=at, by=by, policy=POLICY)
        self.out: list[Command] = list(self.opened)

    def feed(self, event: lc.Event) -> list[Command]:
        self.state, out = lc.step(self.state, event, POLICY)
        self.out += out
        return out

    def tick(self, at: datetime) -> list[Command]:
        return self.feed(Tick(at))

    def to_resolved(self, at: datetime = T0) -> None:
        self.feed(Dispatch("agent7", at))
        self.feed(Start("eng1", at))
        self.feed(Resolve("eng1", at, "更换了水管接头", ("att-1",)))


# ---- departments ----------------------------------------------------------------


@pytest.mark.parametrize(("category", "subtype", "text", "department"), [
    ("engineering", None, "厨房水管漏水", "engineering"),
    ("engineering", "lift", "", "engineering"),
    ("engineering", None, "小区路灯不亮了", "maintenance"),  # a public facility
    ("engineering", "public_facilities", "", "maintenance"),
    ("cleaning", None, "楼道垃圾没人清", "cleaning"),
    ("security", None, "", "security"),
    ("landscaping", None, "", "landscaping"),
    ("complaint", None, "路灯坏了三个月没人修", "service_centre"),  # keywords: repairs only
    ("consultation", None, "", "service_centre"),
    ("complaint", "water", "", "engineering"),  # a named sub-type wins
    ("unknown", None, "", "service_centre"),  # the service centre triages the rest
])
def test_department_by_specialty(category: str, subtype: str | None, text: str,
                                 department: str) -> None:
    assert department_for(category, subtype=subtype, text=text) == department


def test_departments_have_chinese_names() -> None:
    table = load_departments()
    assert set(table.names) == {"engineering", "maintenance", "cleaning", "security",
                                "landscaping", "service_centre"}
    assert table.name_of("engineering") == "工程部"
    assert table.name_of("service_centre") == "客服中心"
    assert table.name_of("nowhere") == "nowhere"


def test_an_invalid_departments_table_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown department 'plumbing'.*no department for"):
        departments_from_dict({"departments": {"engineering": "工程部"},
                               "by_category": {"engineering": "plumbing"},
                               "default": "engineering"})


# ---- opening --------------------------------------------------------------------


def test_opening_persists_records_and_confirms_receipt() -> None:
    life = Life()
    state, out = life.state, life.opened
    assert state.status == "new" and state.owner == "agent7"
    assert [type(c) for c in out] == [Persist, Record, Notify, Schedule]
    persist = out[0]
    assert isinstance(persist, Persist)
    assert set(persist.fields) == {f.name for f in dataclasses.fields(TicketState)}
    record = of(Record, out)[0]
    assert (record.what, record.by, record.from_status, record.to_status) == (
        "opened", "agent7", None, "new")
    assert of(Notify, out) == [Notify(NUMBER, "receipt", PHONE, "engineering", {})]
    assert state.deadline == t(hours=24)
    # The first thing the clock needs: the 5-minute dispatch goal.
    assert of(Schedule, out)[0].at == t(5) == state.next_tick


def test_the_owner_is_who_received_it() -> None:
    assert Life(by="agent9").state.owner == "agent9"
    assert Life(by="system").state.owner is None  # a call-back ticket from the queue
    assert lc.open_ticket(NUMBER, Ticket("cleaning", "P3", "x"), at=T0, owner="agent3",
                          policy=POLICY)[0].owner == "agent3"


def test_no_phone_no_notice() -> None:
    assert of(Notify, Life(phone="").opened) == []


def test_a_naive_opening_time_is_a_bug() -> None:
    with pytest.raises(ValueError, match="naive"):
        lc.open_ticket(NUMBER, Ticket("cleaning", "P3", "x"), at=datetime(2026, 11, 30, 10),
                       policy=POLICY)


def test_p1_is_raised_to_management_at_once() -> None:
    life = Life(urgency="P1", description="电梯困人")
    assert of(Escalate, life.opened) == [Escalate(NUMBER, "management", 0, "safety")]
    assert life.state.escalation_level == 0  # management is told; the chain is untouched
    assert "escalated" in [r.what for r in of(Record, life.opened)]


def test_a_repeated_or_major_complaint_goes_to_a_supervisor_at_once() -> None:
    repeat = Life("complaint", repeat_complaint=True)
    assert of(Escalate, repeat.opened) == [
        Escalate(NUMBER, "supervisor", 1, "repeat_complaint")]
    assert repeat.state.escalation_level == 1
    major = Life("complaint", complaint_severity="major")
    assert of(Escalate, major.opened) == [Escalate(NUMBER, "supervisor", 1, "major_complaint")]


# ---- the main line --------------------------------------------------------------


def test_the_whole_life_of_a_repair() -> None:
    life = Life()
    out = life.feed(Dispatch("agent7", t(3)))
    assert life.state.status == "dispatched"
    assert life.state.department == "engineering" and life.state.owner == "agent7"
    assert of(Notify, out) == [Notify(NUMBER, "dispatched", PHONE, "engineering",
                                      {"department": "工程部"})]
    dispatched = of(Record, out)[0]
    assert dispatched.details["time_to_dispatch_s"] == 180.0
    assert dispatched.details["on_time"] is True
    assert lc.time_to_dispatch(life.state) == timedelta(minutes=3)

    life.feed(Start("eng1", t(30)))
    assert life.state.status == "in_progress" and life.state.started_at == t(30)

    out = life.feed(Resolve("eng1", t(hours=3), "  更换了水管接头  ", ("att-1", "att-2")))
    assert life.state.status == "resolved"
    assert life.state.resolution_notes == "更换了水管接头"
    assert life.state.photos == ("att-1", "att-2")
    assert of(Notify, out)[0].kind == "resolved"
    assert of(Persist, out)[0].fields["status"] == "resolved"

    out = life.feed(CallbackDone("agent7", t(hours=20), 5, "很满意"))
    assert life.state.status == "callback" and life.state.satisfaction == 5
    assert of(Notify, out)[0].kind == "callback" and of(Warn, out) == []

    out = life.feed(Close("agent7", t(hours=21)))
    assert life.state.status == "closed" and life.state.closed_at == t(hours=21)
    assert life.state.next_tick is None and life.state.deadline is None
    assert lc.clocks(life.state, POLICY) == []

    history = [(r.what, r.from_status, r.to_status) for r in of(Record, life.out)]
    assert history == [
        ("opened", None, "new"), ("dispatched", "new", "dispatched"),
        ("started", "dispatched", "in_progress"), ("resolved", "in_progress", "resolved"),
        ("callback", "resolved", "callback"), ("closed", "callback", "closed")]


def test_every_accepted_event_writes_one_history_entry() -> None:
    life = Life("complaint")
    events: list[lc.Event] = [
        AddNote("agent7", t(1), "住户要求下午上门"), Contacted("agent7", t(2), "已电话联系"),
        Assign("lead1", t(3), "agent8"), Edit("agent8", t(4), {"building": "3"}),
        Dispatch("agent8", t(5)), Start("cs1", t(6)), Resolve("cs1", t(60), "已协调"),
        CallbackDone("agent8", t(90), 4), Close("agent8", t(91)),
        Reopen("lead1", t(120), "住户反映问题仍在"),
    ]
    for event in events:
        out = life.feed(event)
        records = of(Record, out)
        assert len(records) == 1, event
        assert (records[0].by, records[0].at) == (event.by, event.at)


def test_dispatch_to_a_named_department_and_person_keeps_the_owner() -> None:
    life = Life()
    life.feed(Dispatch("agent7", t(1), department="maintenance", assignee="wang"))
    assert (life.state.department, life.state.assignee, life.state.owner) == (
        "maintenance", "wang", "agent7")


def test_dispatch_by_sub_type_and_passing_on() -> None:
    life = Life(description="路灯不亮")
    life.feed(Dispatch("agent7", t(1)))
    assert life.state.department == "maintenance"
    life.feed(Start("m1", t(10)))
    out = life.feed(Dispatch("lead1", t(20), subtype="electricity"))
    assert life.state.status == "dispatched" and life.state.department == "engineering"
    assert life.state.dispatched_at == t(1)  # time to dispatch is about the first one
    assert life.state.started_at == t(10)
    assert of(Notify, out) == []  # passing it on is internal


def test_a_late_dispatch_is_measured() -> None:
    life = Life()
    record = of(Record, life.feed(Dispatch("agent7", t(7))))[0]
    assert record.details["time_to_dispatch_s"] == 420.0 and record.details["on_time"] is False


# ---- rejections -----------------------------------------------------------------


@pytest.mark.parametrize("event", [
    Start("x", t(1)), Resolve("x", t(1), "done"), CallbackDone("x", t(1), 5),
    Close("x", t(1), "why"), Reopen("x", t(1), "again")])
def test_events_not_allowed_in_new(event: lc.Event) -> None:
    life = Life()
    before = life.state
    out = life.feed(event)
    assert life.state is before
    assert out == [Rejected("ticket.invalid_transition", {
        "event": type(event).__name__, "status": "new",
        "allowed_from": sorted(lc.ALLOWED_FROM[type(event)])})]


def test_a_closed_ticket_takes_notes_ticks_and_a_reopen_only() -> None:
    life = Life()
    life.to_resolved(t(1))
    life.feed(CallbackDone("agent7", t(60), 4))
    life.feed(Close("agent7", t(61)))
    for event in (Dispatch("x", t(70)), Start("x", t(70)), Contacted("x", t(70)),
                  Assign("x", t(70), "y"), Edit("x", t(70), {"urgency": "P1"}),
                  CallbackDone("x", t(70), 3), Close("x", t(70))):
        assert [type(c) for c in life.feed(event)] == [Rejected], event
    assert of(Record, life.feed(AddNote("lead1", t(80), "住户来电致谢")))[0].what == "note"
    assert life.feed(Tick(t(days=5))) == []


@pytest.mark.parametrize("notes", ["", "   \n"])
def test_resolving_needs_notes(notes: str) -> None:
    life = Life()
    life.feed(Dispatch("a", t(1)))
    life.feed(Start("a", t(2)))
    assert life.feed(Resolve("a", t(3), notes)) == [
        Rejected("ticket.notes_required", {"event": "Resolve"})]
    assert life.state.status == "in_progress"


@pytest.mark.parametrize("satisfaction", [0, 6, -1, True, 3.5, "5"])
def test_satisfaction_is_1_to_5(satisfaction: Any) -> None:
    life = Life()
    life.to_resolved(t(1))
    (rejected,) = life.feed(CallbackDone("a", t(60), satisfaction))
    assert isinstance(rejected, Rejected)
    assert rejected.error_id == "ticket.satisfaction_out_of_range"
    assert life.state.status == "resolved"


def test_reasons_and_texts_that_are_required() -> None:
    life = Life()
    assert life.feed(AddNote("a", t(1), " ")) == [
        Rejected("ticket.note_required", {"event": "AddNote"})]
    assert life.feed(Assign("a", t(1), "")) == [
        Rejected("ticket.owner_required", {"event": "Assign"})]
    life.to_resolved(t(2))
    (rejected,) = life.feed(Close("a", t(3)))
    assert isinstance(rejected, Rejected) and rejected.error_id == "ticket.reason_required"
    assert life.feed(Reopen("a", t(3), "")) == [
        Rejected("ticket.reason_required", {"event": "Reopen"})]
    assert life.state.status == "resolved"


def test_closing_without_a_call_back_needs_a_reason() -> None:
    life = Life()
    life.to_resolved(t(2))
    out = life.feed(Close("agent7", t(hours=30), "三次回访均未接通"))
    assert life.state.status == "closed"
    assert of(Record, out)[0].details == {"reason": "三次回访均未接通"}


def test_an_unknown_department_and_a_naive_time_are_refused() -> None:
    life = Life()
    assert life.feed(Dispatch("a", t(1), department="plumbing")) == [
        Rejected("ticket.unknown_department", {"department": "plumbing"})]
    assert life.feed(Dispatch("a", datetime(2026, 11, 30, 10, 1))) == [
        Rejected("ticket.naive_time", {"event": "Dispatch"})]
    assert life.state.status == "new"


@pytest.mark.parametrize(("changes", "error"), [
    ({"status": "closed"}, "ticket.unknown_field"),
    ({"number": "T1"}, "ticket.unknown_field"),
    ({"urgency": "P9"}, "ticket.invalid_value"),
    ({"category": "plumbing"}, "ticket.invalid_value"),
    ({"complaint_severity": "huge"}, "ticket.invalid_value"),
    ({"repeat_complaint": 1}, "ticket.invalid_value"),
    ({"vip": "rich"}, "ticket.invalid_value"),
    ({"room": 1203}, "ticket.invalid_value"),
    ({"building": "3", "urgency": "P0"}, "ticket.invalid_value"),  # all or nothing
])
def test_invalid_edits(changes: dict[str, Any], error: str) -> None:
    life = Life()
    before = life.state
    (rejected,) = life.feed(Edit("a", t(1), changes))
    assert isinstance(rejected, Rejected) and rejected.error_id == error
    assert life.state is before


# ---- people and fields ----------------------------------------------------------


def test_assign_changes_the_owner_and_warnings_follow() -> None:
    life = Life()
    out = life.feed(Assign("lead1", t(1), "agent8"))
    assert life.state.owner == "agent8"
    assert of(Persist, out)[0].fields == {"owner": "agent8"}
    assert of(Record, out)[0].details == {"previous": "agent7", "owner": "agent8"}
    assert life.feed(Assign("lead1", t(2), "agent8")) == []  # nothing changed, nothing said
    assert of(Warn, life.tick(t(5)))[0].to == "agent8"


def test_an_unowned_ticket_warns_the_service_centre() -> None:
    life = Life(by="system")
    assert of(Warn, life.tick(t(5)))[0].to == "service_centre"


def test_edit_persists_records_and_re_evaluates_the_clock() -> None:
    life = Life()
    out = life.feed(Edit("lead1", t(2), {"urgency": "P1", "room": "1203"}))
    assert life.state.urgency == "P1" and life.state.room == "1203"
    assert of(Persist, out)[0].fields["urgency"] == "P1"
    assert of(Record, out)[0].details == {"changes": {"urgency": ["P3", "P1"],
                                                      "room": ["", "1203"]}}
    assert of(Escalate, out) == [Escalate(NUMBER, "management", 0, "safety")]
    assert life.state.deadline == t(30)  # the P1 clock runs from the opening
    assert life.feed(Edit("lead1", t(3), {"urgency": "P1"})) == []  # no change
    # A second edit into P1 later does not tell management twice.
    life.feed(Edit("lead1", t(4), {"urgency": "P2"}))
    assert of(Escalate, life.feed(Edit("lead1", t(5), {"urgency": "P1"}))) == []


def test_edit_into_a_major_complaint_starts_the_chain() -> None:
    life = Life("complaint")
    out = life.feed(Edit("lead1", t(10), {"complaint_severity": "major"}))
    assert of(Escalate, out) == [Escalate(NUMBER, "supervisor", 1, "major_complaint")]


def test_contacted_stops_the_contact_clock_once() -> None:
    life = Life("complaint")
    assert "contact" in [c.name for c in lc.clocks(life.state, POLICY)]
    out = life.feed(Contacted("agent7", t(30), "已致电住户"))
    assert life.state.contacted_at == t(30)
    assert of(Record, out)[0].details == {"note": "已致电住户", "first": True}
    assert "contact" not in [c.name for c in lc.clocks(life.state, POLICY)]
    out = life.feed(Contacted("agent7", t(60)))
    assert life.state.contacted_at == t(30) and of(Persist, out) == []
    assert of(Record, out)[0].details["first"] is False


def test_notes_are_history_only() -> None:
    life = Life()
    out = life.feed(AddNote("agent7", t(1), "住户下午在家"))
    assert [type(c) for c in out] == [Record]
    assert out[0] == Record(NUMBER, t(1), "agent7", "note", "new", "new",
                            {"text": "住户下午在家"})


# ---- call-back and reopen -------------------------------------------------------


def test_low_satisfaction_warns_the_owner_and_a_person_decides() -> None:
    life = Life()
    life.to_resolved(t(1))
    out = life.feed(CallbackDone("agent9", t(60), 2, "还是有点漏"))
    assert life.state.status == "callback"  # not reopened by itself
    assert of(Warn, out) == [Warn(NUMBER, "agent7", "low_satisfaction",
                                  detail="satisfaction 2: 还是有点漏")]
    ok = Life()
    ok.to_resolved(t(1))
    assert of(Warn, ok.feed(CallbackDone("a", t(60), 3))) == []


def test_a_call_back_counts_as_contact() -> None:
    life = Life("complaint")
    life.to_resolved(t(1))
    life.feed(CallbackDone("a", t(60), 4))
    assert life.state.contacted_at == t(60)


@pytest.mark.parametrize("status", ["resolved", "callback", "closed"])
def test_reopen_goes_back_to_work_and_restarts_the_clocks(status: str) -> None:
    life = Life()
    life.to_resolved(t(1))
    if status in ("callback", "closed"):
        life.feed(CallbackDone("a", t(60), 1, "没修好"))
    if status == "closed":
        life.feed(Close("a", t(61)))
    assert life.state.status == status
    out = life.feed(Reopen("lead1", t(hours=30), "住户反映仍然漏水"))
    state = life.state
    assert state.status == "in_progress" and state.reopen_count == 1
    assert (state.resolved_at, state.resolution_notes, state.photos, state.satisfaction,
            state.callback_at, state.closed_at) == (None, "", (), None, None, None)
    assert of(Record, out)[0].details == {"reason": "住户反映仍然漏水"}
    # The P3 clock runs again from the reopen, not from the opening a day ago.
    assert state.deadline == t(hours=54)
    out = life.feed(Resolve("eng1", t(hours=31), "更换整段水管"))
    assert life.state.status == "resolved" and life.state.resolution_notes == "更换整段水管"
    # The second "resolved" notice is a new message to the caller, not a retry.
    assert [n.round for n in of(Notify, out)] == [1]


# ---- the clock ------------------------------------------------------------------


def test_a_dispatch_late_warning_at_five_minutes() -> None:
    life = Life()
    assert life.tick(t(4)) == []
    out = life.tick(t(5))
    assert of(Warn, out) == [Warn(NUMBER, "agent7", "dispatch_late", "dispatch", t(5),
                                  "missed")]
    assert of(Record, out)[0].what == "warned"
    on_time = Life()
    on_time.feed(Dispatch("agent7", t(4)))
    assert of(Warn, on_time.tick(t(5))) == []


def test_a_tick_twice_at_the_same_time_sends_nothing_twice() -> None:
    life = Life()
    first = life.tick(t(5))
    assert of(Warn, first)
    assert of(Schedule, first)
    assert life.tick(t(5)) == []
    assert life.tick(t(6)) == []


def test_a_p3_repair_warns_then_climbs_the_chain_until_the_top() -> None:
    life = Life()
    life.feed(Dispatch("agent7", t(2)))
    assert life.state.next_tick == t(hours=19, minutes=12)
    out = life.tick(t(hours=19, minutes=12))
    assert of(Warn, out) == [Warn(NUMBER, "agent7", "deadline_near", "deadline", t(hours=24),
                                  "80%")]
    assert of(Schedule, out) == [Schedule(NUMBER, t(hours=24),
                                          "deadline@20261201T020000Z:escalate:1")]
    out = life.tick(t(hours=24))
    assert of(Escalate, out) == [Escalate(NUMBER, "supervisor", 1, "overdue", "deadline",
                                          t(hours=24))]
    assert life.state.escalation_level == 1
    assert of(Persist, out)[0].fields["escalation_level"] == 1
    out = life.tick(t(hours=25))
    assert of(Escalate, out) == [Escalate(NUMBER, "deputy_gm", 2, "overdue", "deadline",
                                          t(hours=24))]
    assert life.state.next_tick is None  # the top: nothing more to wake up for
    assert life.tick(t(hours=40)) == []


def test_a_late_tick_catches_up_in_order_and_skips_stale_warnings() -> None:
    life = Life()
    life.feed(Dispatch("agent7", t(2)))
    out = life.tick(t(hours=30))  # the service was down for a day
    assert of(Warn, out) == []  # "deadline near" a day late is noise
    assert [(e.to, e.level) for e in of(Escalate, out)] == [("supervisor", 1), ("deputy_gm", 2)]
    assert [r.what for r in of(Record, out)] == ["escalated", "escalated"]


def test_p1_is_met_by_staff_on_site() -> None:
    life = Life(urgency="P1", description="电梯困人")
    life.feed(Dispatch("agent7", t(2)))
    assert life.state.next_tick == t(24)  # 80 % of 30 minutes
    life.feed(Start("eng1", t(20)))
    assert life.state.deadline is None and life.state.next_tick is None
    assert of(Escalate, life.tick(t(hours=5))) == []


def test_a_missed_p1_escalates_every_15_minutes() -> None:
    life = Life(urgency="P1")
    life.feed(Dispatch("agent7", t(2)))
    assert [e.to for e in of(Escalate, life.tick(t(30)))] == ["supervisor"]
    assert of(Escalate, life.tick(t(44))) == []
    assert [e.to for e in of(Escalate, life.tick(t(45)))] == ["deputy_gm"]


def test_a_resolved_ticket_waits_for_its_call_back() -> None:
    life = Life()
    life.to_resolved(t(2))
    assert [c.name for c in lc.clocks(life.state, POLICY)] == ["callback"]
    assert life.state.deadline == t(2) + timedelta(hours=24)
    out = life.tick(t(2) + timedelta(hours=24))
    assert [(e.to, e.clock) for e in of(Escalate, out)] == [("supervisor", "callback")]
    life.feed(CallbackDone("agent7", t(hours=25), 4))
    assert lc.clocks(life.state, POLICY) == [] and life.state.next_tick is None


def test_schedule_only_when_the_next_moment_moves() -> None:
    life = Life()
    assert of(Schedule, life.feed(AddNote("a", t(1), "x"))) == []
    out = life.feed(Dispatch("a", t(2)))  # the dispatch goal is met: the 80 % warning next
    assert of(Schedule, out) == [Schedule(NUMBER, t(hours=19, minutes=12),
                                          "deadline@20261201T020000Z:warn:80%")]


# ---- complaints -----------------------------------------------------------------


def test_a_complaint_runs_against_contact_and_same_day_closure() -> None:
    life = Life("complaint", description="保安态度恶劣")
    clocks = {c.name: c.due for c in lc.clocks(life.state, POLICY)}
    # 10:00 in Shanghai: contact by 22:00, closed by midnight; a P3 complaint has no
    # separate 24 h repair clock.
    assert clocks == {"dispatch": t(5), "contact": t(hours=12), "closure": t(hours=14)}
    assert life.state.deadline == t(hours=12)
    life.feed(Dispatch("agent7", t(3)))
    assert life.state.department == "service_centre"
    life.feed(Contacted("agent7", t(60)))
    out = life.tick(t(hours=14))
    assert [(e.to, e.clock) for e in of(Escalate, out)] == [("supervisor", "closure")]


def test_a_complaint_at_23_50_is_due_the_next_day() -> None:
    late = datetime(2026, 11, 30, 15, 50, tzinfo=UTC)  # 23:50 in Shanghai
    life = Life("complaint", at=late)
    closure = next(c for c in lc.clocks(life.state, POLICY) if c.name == "closure")
    assert closure.due == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)  # 24:00 on 1 December


def test_a_complaint_passed_to_another_department_has_three_days() -> None:
    life = Life("complaint", description="物业维修拖延")
    life.feed(Contacted("agent7", t(10)))
    out = life.feed(Dispatch("agent7", t(20), department="engineering"))
    closure = next(c for c in lc.clocks(life.state, POLICY) if c.name == "closure")
    assert closure.due == t(hours=14, days=3)
    assert of(Persist, out)[0].fields["deadline"] == t(hours=14, days=3)
    # The same-day alarms are gone with the same-day deadline.
    assert of(Escalate, life.tick(t(hours=14))) == []


def test_an_urgent_complaint_keeps_its_urgency_clock() -> None:
    life = Life("complaint", urgency="P2", description="停水两天没人管")
    names = [c.name for c in lc.clocks(life.state, POLICY)]
    assert names == ["dispatch", "contact", "deadline", "closure"]
    assert life.state.deadline == t(hours=2)


def test_a_major_complaint_overdue_goes_straight_to_the_deputy_gm() -> None:
    life = Life("complaint", complaint_severity="major")
    life.feed(Dispatch("agent7", t(2)))
    out = life.tick(t(hours=12))  # no contact in 12 h
    assert of(Escalate, out) == [Escalate(NUMBER, "deputy_gm", 2, "overdue", "contact",
                                          t(hours=12))]


# ---- persistence ----------------------------------------------------------------


def test_the_persisted_fields_rebuild_the_same_state() -> None:
    life = Life("complaint", repeat_complaint=True)
    life.feed(Dispatch("agent7", t(2), department="engineering", assignee="wang"))
    life.tick(t(hours=12))
    life.feed(Start("wang", t(hours=13)))
    life.feed(Resolve("wang", t(hours=15), "已处理", ("a1",)))
    row: dict[str, Any] = {}
    for persist in of(Persist, life.out):
        row.update(persist.fields)
    assert lc.restore(row) == life.state
    # A restarted executor ticking the restored state sends nothing twice.
    assert lc.step(lc.restore(row), Tick(t(hours=15)), POLICY)[1] == []


def test_events_and_commands_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Start("a", T0).at = t(1)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Life().state.status = "closed"  # type: ignore[misc]
