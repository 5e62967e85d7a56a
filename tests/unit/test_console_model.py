"""The console's pure parts: the ticket a wrap-up starts from, checking what the
agent sends, human values beside automatic ones, and the residents file."""

from __future__ import annotations

import pytest

from callcenter.console.model import check_wrap_up, effective_ticket, prefill
from callcenter.residents import normalise_phone, parse_csv

ELDERLY = {"name": "赵阿姨", "building": "3", "unit": "2", "room": "501", "vip": "elderly"}


def test_prefill_follows_the_ivr_choice() -> None:
    repair = prefill(queue="repair", priority=0, resident=None, caller_number="139")
    assert (repair["category"], repair["urgency"], repair["phone"]) == ("engineering", "P3", "139")
    safety = prefill(queue="repair", priority=2, resident=None, caller_number="139")
    assert safety["urgency"] == "P1"
    consult = prefill(queue="consultation", priority=0, resident=None, caller_number="1")
    assert (consult["category"], consult["urgency"]) == ("consultation", "P4")
    unknown = prefill(queue="general", priority=0, resident=None, caller_number="1")
    assert unknown["category"] == ""  # the agent chooses


def test_prefill_uses_the_resident_and_raises_a_vip() -> None:
    form = prefill(queue="repair", priority=0, resident=ELDERLY, caller_number="1")
    assert (form["caller_name"], form["building"], form["unit"], form["room"]) == (
        "赵阿姨", "3", "2", "501")
    assert form["urgency"] == "P2" and form["vip"] == "elderly"
    question = prefill(queue="consultation", priority=0, resident=ELDERLY, caller_number="1")
    assert question["urgency"] == "P4"  # as the classifier: a VIP's question stays P4
    safety = prefill(queue="repair", priority=2, resident=ELDERLY, caller_number="1")
    assert safety["urgency"] == "P1"


def test_a_complete_wrap_up() -> None:
    wrap, problems = check_wrap_up({"disposition": "ticket", "ready": True, "ticket": {
        "category": "engineering", "urgency": "P2", "description": " 停水了 ", "room": "501"}})
    assert not problems and wrap is not None
    assert wrap.ticket == {"category": "engineering", "urgency": "P2", "description": "停水了",
                           "room": "501"}
    assert wrap.ready and wrap.disposition == "ticket"
    plain, _ = check_wrap_up({"disposition": "resolved"})
    assert plain is not None and plain.ticket is None and not plain.ready


@pytest.mark.parametrize(("body", "field"), [
    ([], "body"), ({"disposition": "gone"}, "disposition"),
    ({"disposition": "ticket"}, "ticket"),
    ({"disposition": "resolved", "ticket": {"category": "food", "urgency": "P1"}},
     "ticket.category"),
    ({"disposition": "resolved", "ticket": {"category": "cleaning", "urgency": "P9"}},
     "ticket.urgency"),
    ({"disposition": "resolved", "ticket": {"category": "cleaning", "urgency": "P3",
                                            "owner": "x"}}, "ticket.owner"),
    ({"disposition": "resolved", "ticket": {"category": "cleaning", "urgency": "P3",
                                            "room": 5}}, "ticket.room"),
    ({"disposition": "resolved", "ticket": {"category": "cleaning", "urgency": "P3",
                                            "description": "长" * 2001}}, "ticket.description"),
    ({"disposition": "resolved", "ready": "yes"}, "ready"),
])
def test_what_is_refused(body: object, field: str) -> None:
    wrap, problems = check_wrap_up(body)
    assert wrap is None and field in problems


def test_people_s_values_win_and_the_machine_s_stay_beside_them() -> None:
    row = {"number": "T1", "category": "cleaning", "urgency": "P3", "room": "",
           "human": {"category": "engineering", "room": "501"}, "human_by": "ag1"}
    shown = effective_ticket(row)
    assert (shown["category"], shown["room"], shown["urgency"]) == ("engineering", "501", "P3")
    assert shown["automatic"] == {"category": "cleaning", "room": ""}
    assert shown["human"] == {"category": "engineering", "room": "501"}


def test_phone_numbers_compare_without_country_prefix() -> None:
    assert normalise_phone("+86 139-1234-5678") == "13912345678"
    assert normalise_phone("008613912345678") == "13912345678"
    assert normalise_phone("021 5555 1234") == "02155551234"


def test_the_residents_file() -> None:
    text = ("\ufeffphone,name,building,unit,room,vip\n"
            "+86 139 1234 5678,赵阿姨,3,2,501,独居老人\n"
            "13800000000,钱先生,5,1,101,\n"
            "12,bad,,,,\n"
            "13800000000,twice,,,,\n"
            "13700000000,x,,,,royal\n")
    rows, problems = parse_csv(text)
    assert [(r.phone, r.vip) for r in rows] == [("13912345678", "elderly"),
                                                ("13800000000", "none")]
    assert [p.split(":")[0] for p in problems] == ["line 4", "line 5", "line 6"]
    assert parse_csv("name\nx\n")[1] == ["the header must name a 'phone' column"]
    assert "unknown columns" in parse_csv("phone,shoe\n1,2\n")[1][0]
