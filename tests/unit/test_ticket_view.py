"""What the ticket pages show, without a server: names of the contract's ids in
both languages, countdowns, the actions of each status and role, people's
corrections beside the automatic values, and history details in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callcenter.auth.model import Role
from callcenter.core import CATEGORIES, COMPLAINT_SEVERITIES, URGENCIES, VIP_KINDS
from callcenter.tickets import lifecycle as lc
from callcenter.tickets.departments import load_departments
from callcenter.tickets.sla import load_sla
from callcenter.web import i18n
from callcenter.web import ticket_view as view

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
zh = i18n.translator("zh-CN")


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_every_id_of_the_contract_has_a_display_name(language: str) -> None:
    table = i18n.table(language)
    families = {
        "tickets.status": lc.STATUSES, "category": CATEGORIES, "urgency": URGENCIES,
        "tickets.severity": COMPLAINT_SEVERITIES, "tickets.vip": VIP_KINDS,
        "tickets.department": tuple(load_departments().names),
        "tickets.channel": ("phone", "walk_in", "online"),
        "tickets.clock": ("dispatch", "contact", "deadline", "closure", "callback"),
        "tickets.notice": lc.NOTICE_KINDS,
        "tickets.recipient": (*load_sla().escalation_chain, "management",
                              lc.UNOWNED_WARN_TO),
        "tickets.action": tuple(view.ACTION_EVENTS),
        "tickets.done": tuple(view.ACTION_EVENTS),
        "tickets.detail": view.SHOWN_DETAILS,
        "tickets.field": (*view.FILTERS, *view.PAGING, "caller_name", "phone", "building",
                          "room", "description", "complaint_severity"),
    }
    missing = [f"{family}.{value}" for family, values in families.items() for value in values
               if f"{family}.{value}" not in table]
    assert not missing


def test_the_departments_read_the_same_in_the_tables_and_the_file() -> None:
    names = load_departments().names
    assert all(zh(f"tickets.department.{d}") == name for d, name in names.items())


def test_a_name_falls_back_to_the_id_itself() -> None:
    assert view.label(zh, "tickets.status", "in_progress") == "处理中"
    assert view.label(zh, "tickets.status", "paused") == "paused"
    assert view.label(zh, "tickets.status", None) == ""
    assert view.department_label(zh, "plumbers", lambda d: f"name of {d}") == "name of plumbers"


@pytest.mark.parametrize(("left", "text"), [
    (timedelta(days=1, hours=2, minutes=5), "剩余 1 天 2 小时"),
    (timedelta(hours=1, minutes=5, seconds=9), "剩余 1 小时 05 分"),
    (timedelta(minutes=4, seconds=7), "剩余 4 分 07 秒"),
    (timedelta(seconds=1), "剩余 0 分 01 秒"),
    (timedelta(0), "已超时 1 分钟"),
    (timedelta(seconds=-30), "已超时 1 分钟"),
    (timedelta(hours=-1, minutes=-2, seconds=-59), "已超时 62 分钟"),
])
def test_countdowns(left: timedelta, text: str) -> None:
    shown = view.countdown(zh, NOW + left, NOW)
    assert shown.text == text
    assert shown.overdue is (left <= timedelta(0))


@pytest.mark.parametrize(("status", "role", "actions"), [
    ("new", Role.AGENT, ["dispatch", "note", "contacted"]),
    ("new", Role.SUPERVISOR, ["dispatch", "note", "contacted", "assign"]),
    ("dispatched", Role.ADMIN, ["dispatch", "start", "note", "contacted", "assign"]),
    ("in_progress", Role.AGENT, ["dispatch", "note", "resolve", "contacted"]),
    ("resolved", Role.AGENT, ["note", "callback", "close", "reopen", "contacted"]),
    ("callback", Role.SUPERVISOR, ["note", "close", "reopen", "contacted", "assign"]),
    ("closed", Role.AGENT, ["note", "reopen"]),
    ("new", Role.QA, []),
])
def test_the_actions_of_each_status_and_role(status: str, role: Role,
                                             actions: list[str]) -> None:
    assert sorted(view.allowed_actions(status, role)) == sorted(actions)


def test_the_list_query_leaves_out_empty_fields_and_unknown_ones() -> None:
    params = view.list_params({"status": "", "urgency": "P2", "q": " 停水 ", "page": "3",
                               "before": "17", "limit": "20"})
    assert params == {"urgency": "P2", "q": "停水", "before": "17", "limit": "20"}
    assert view.filters_only(params) == {"urgency": "P2", "q": "停水", "limit": "20"}
    assert view.filters_only({"after": "9", "q": "漏水"}) == {"q": "漏水"}


def test_what_still_needs_confirming() -> None:
    judgement = {"needs_confirmation": ["category", "urgency", "severity"]}
    assert view.to_confirm(judgement, {}) == ["category", "urgency", "complaint_severity"]
    assert view.to_confirm(judgement, {"urgency": "P2"}) == ["category", "complaint_severity"]
    assert view.to_confirm({}, {}) == []


def test_corrections_say_who_changed_each_field_and_when() -> None:
    first, second = NOW - timedelta(hours=2), NOW - timedelta(hours=1)
    history = [
        {"what": "edited", "by": "ag1", "at": first, "details": {"changes": {
            "building": ["3", "5"], "urgency": ["P3", "P2"]}}},
        {"what": "edited", "by": lc.SYSTEM, "at": second, "details": {"changes": {
            "urgency": ["P2", "P1"]}}},
        {"what": "edited", "by": "sup1", "at": second, "details": {"changes": {
            "building": ["5", "6"]}}},
    ]
    automatic = {"building": "3", "urgency": "P3", "room": "501"}
    human = {"urgency": "P2", "building": "6", "room": "501"}
    shown = view.corrections(automatic, human, history, "wrapup", NOW)
    assert [(c.field, c.automatic, c.human, c.by, c.at) for c in shown] == [
        ("urgency", "P3", "P2", "ag1", first),  # the system's edit is not a person's
        ("building", "3", "6", "sup1", second),
        ("room", "501", "501", "wrapup", NOW),  # set at the wrap-up, as it was
    ]


def test_history_details_in_words() -> None:
    entry = {"what": "dispatched", "details": {
        "department": "engineering", "assignee": "王师傅", "time_to_dispatch_s": 370.0,
        "on_time": False, "attachment_id": "ab" * 16}}
    assert view.history_details(zh, entry, SHANGHAI, lambda d: d) == [
        ("部门", "工程部"), ("处理人员", "王师傅"), ("派单用时", "6 分钟"), ("按时", "否")]
    escalated = {"what": "escalated", "details": {
        "to": "deputy_gm", "level": 2, "reason": "overdue", "clock": "deadline",
        "due": "2025-03-01T08:00:00+00:00"}}
    assert view.history_details(zh, escalated, SHANGHAI, lambda d: d) == [
        ("原因", "已超时"), ("发给", "副总经理"), ("级别", "2"), ("时限", "处理时限"),
        ("截止", "2025-03-01 16:00")]
    edited = {"what": "edited", "details": {"changes": {"category": ["engineering",
                                                                     "complaint"]}}}
    assert view.history_details(zh, edited, SHANGHAI, lambda d: d) == [
        ("更改", "类别：工程维修 → 投诉")]
    reopened = {"what": "reopened", "details": {"reason": "又漏了"}}
    assert view.history_details(zh, reopened, SHANGHAI, lambda d: d) == [("原因", "又漏了")]


def test_values_as_people_read_them() -> None:
    assert view.field_value(zh, "urgency", "P1") == "P1 人身安全"
    assert view.field_value(zh, "complaint_severity", None) == "无"
    assert view.field_value(zh, "repeat_complaint", True) == "是"
    assert view.field_value(zh, "vip", "elderly") == "独居老人"
    assert view.address("3", "", "501") == "3-501"
    assert view.local_time(NOW, SHANGHAI) == "2025-03-01 16:00"
    assert view.role_label(zh, "system") == "系统" and view.role_label(zh, "qa") == "质检"
