"""The ticket API over real HTTP on a real database, as each role: the whole life of
a ticket, what each role sees, files, alerts, the OpenAPI document, and bad input
of every kind answered with a 4xx and the failing fields, never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from callcenter.core import Ticket
from callcenter.db.store import PgStore
from callcenter.settings import Settings
from callcenter.tickets.http import TicketCreate, TicketEvent
from callcenter.web.app import create_app
from tests.web_support import Browser, add_user, answered_calls_and_staff, running, signed_in

MINE, THEIRS = "ca11000000000001", "ca11000000000002"  # answered by agents a1 and a2
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
WALK_IN = {"channel": "walk_in", "category": "engineering", "urgency": "P3",
           "description": "楼道灯不亮", "caller_name": "李先生", "phone": "13900000001",
           "building": "7", "unit": "1", "room": "302"}


@dataclass
class Site:
    server: TestServer
    pool: asyncpg.Pool
    mine: str  # the ticket of the call agent a1 (ag1) answered
    theirs: str  # the ticket of a2's call


@pytest.fixture
async def site(db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Site]:
    store = PgStore(db_pool)
    numbers = []
    await answered_calls_and_staff(db_pool, {MINE: "a1", THEIRS: "a2"})
    for call in (MINE, THEIRS):
        numbers.append(await store.save_analysis(
            call, segments=[], qa=None, qa_source="asr",
            ticket=Ticket("engineering", "P3", "厨房水管漏水", phone="13800000000",
                          building="3", needs_confirmation=["urgency"])))
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path,
                        attachment_max_bytes=4096)
    async with running(create_app(settings, telephony=False, workers=0)) as server:
        yield Site(server, db_pool, str(numbers[0]), str(numbers[1]))


async def _ok(resp: aiohttp.ClientResponse, status: int = 200) -> Any:
    body = await resp.json()
    assert resp.status == status, body
    return body


async def _refused(resp: aiohttp.ClientResponse, status: int, error: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"status", "error", "message", "details"}
    assert (body["status"], body["error"]) == (status, error), body
    return dict(body)


def _fields(body: dict[str, Any]) -> set[str]:
    return {f["field"] for f in body["details"]["fields"]}


async def _event(who: Browser, number: str, **body: Any) -> aiohttp.ClientResponse:
    return await who.post(f"/api/tickets/{number}/events", json=body)


async def test_the_whole_life_of_a_walk_in_ticket(site: Site) -> None:
    async with signed_in(site.server, "ag1") as agent, signed_in(site.server, "sup1") as boss:
        made = await _ok(await agent.post("/api/tickets", json=WALK_IN), 201)
        number = made["number"]
        assert (made["status"], made["owner"], made["channel"], made["call_id"]) == (
            "new", "ag1", "walk_in", None)
        assert [c["name"] for c in made["clocks"]] == ["dispatch", "deadline"]
        assert [h["what"] for h in made["history"]] == ["opened"]

        edited = await _ok(await agent.request("PATCH", f"/api/tickets/{number}",
                                               json={"urgency": "P2", "room": "303"}))
        assert (edited["urgency"], edited["automatic"]["urgency"]) == ("P2", "P3")
        assert edited["human"] == {"urgency": "P2", "room": "303"}
        assert edited["human_by"] == "ag1"

        sent = await _ok(await _event(agent, number, type="dispatch"))
        assert (sent["status"], sent["department"], sent["department_name"]) == (
            "dispatched", "engineering", "工程部")
        assert sent["time_to_dispatch_s"] is not None and sent["owner"] == "ag1"
        await _ok(await _event(agent, number, type="start"))
        upload = aiohttp.FormData()
        upload.add_field("file", PNG, filename="修好了.png", content_type="image/png")
        photo = await _ok(await agent.post(f"/api/tickets/{number}/attachments", data=upload),
                          201)
        resolved = await _ok(await _event(agent, number, type="resolve", notes="换了灯管",
                                          photos=[photo["id"]]))
        assert resolved["photos"] == [photo["id"]] and resolved["status"] == "resolved"
        await _ok(await _event(agent, number, type="callback", satisfaction=5, note="满意"))
        closed = await _ok(await _event(agent, number, type="close"))
        assert closed["status"] == "closed" and closed["clocks"] == []
        reopened = await _ok(await _event(boss, number, type="reopen", reason="灯又坏了"))
        assert (reopened["status"], reopened["reopen_count"]) == ("in_progress", 1)
        download = await agent.get(f"/api/tickets/{number}/attachments/{photo['id']}")
        assert download.status == 200 and await download.read() == PNG
        assert download.headers["Content-Type"] == "image/png"
        assert download.headers["Content-Disposition"].startswith("attachment;")
        assignee = await _ok(await _event(boss, number, type="assign", owner="ag2"))
        assert assignee["owner"] == "ag2"
        # No longer hers: the walk-in ticket is another agent's now.
        await _refused(await agent.get(f"/api/tickets/{number}"), 404, "not_found")
    whats = [h["what"] for h in reopened["history"]]
    assert whats == ["opened", "edited", "dispatched", "started", "attached", "resolved",
                     "callback", "closed", "reopened"]
    assert {h["role"] for h in reopened["history"]} == {"agent", "supervisor"}
    audited = [r["action"] for r in await site.pool.fetch(
        "SELECT action FROM audit_log WHERE target_kind = 'ticket' ORDER BY id")]
    assert audited == ["ticket_created", "ticket_edited", "ticket_event", "ticket_event",
                       "ticket_attachment_added", "ticket_event", "ticket_event",
                       "ticket_event", "ticket_event", "ticket_attachment_downloaded",
                       "ticket_event"]


async def test_illegal_and_refused_events_answer_with_the_lifecycles_error_id(
    site: Site,
) -> None:
    async with signed_in(site.server, "ag1") as agent:
        body = await _refused(await _event(agent, site.mine, type="resolve", notes="好了"),
                              409, "ticket.invalid_transition")
        assert body["details"]["status"] == "new"
        await _ok(await _event(agent, site.mine, type="dispatch"))
        await _refused(await _event(agent, site.mine, type="dispatch", department="plumbing"),
                       422, "ticket.unknown_department")
        await _ok(await _event(agent, site.mine, type="start"))
        await _refused(await _event(agent, site.mine, type="resolve", notes="  "), 422,
                       "ticket.notes_required")
        await _refused(await _event(agent, site.mine, type="resolve", notes="x",
                                    photos=["0" * 32]), 422, "ticket.unknown_photo")
        await _ok(await _event(agent, site.mine, type="resolve", notes="修好了"))
        await _refused(await _event(agent, site.mine, type="close"), 422,
                       "ticket.reason_required")
        await _refused(await _event(agent, site.mine, type="assign", owner="ag2"), 403,
                       "forbidden")
    async with signed_in(site.server, "sup1") as boss:
        body = await _refused(await _event(boss, site.mine, type="assign", owner="nobody"),
                              400, "invalid_input")
        assert _fields(body) == {"owner"}
    row = await site.pool.fetchrow("SELECT status, owner FROM tickets WHERE number = $1",
                                   site.mine)
    assert tuple(row) == ("resolved", "ag1")


async def test_agents_see_their_calls_tickets_and_those_they_own(site: Site) -> None:
    async with signed_in(site.server, "ag2") as other:
        walk_in = (await _ok(await other.post("/api/tickets", json=WALK_IN), 201))["number"]
    async with signed_in(site.server, "ag1") as agent:
        listed = await _ok(await agent.get("/api/tickets"))
        assert [t["number"] for t in listed["items"]] == [site.mine]
        for path in (f"/api/tickets/{site.theirs}", f"/api/tickets/{walk_in}"):
            await _refused(await agent.get(path), 404, "not_found")
        await _refused(await _event(agent, site.theirs, type="note", text="x"), 404,
                       "not_found")
        await _refused(await agent.request("PATCH", f"/api/tickets/{site.theirs}",
                                           json={"room": "1"}), 404, "not_found")
        foreign = await agent.post("/api/tickets", json={**WALK_IN, "call_id": THEIRS})
        assert _fields(await _refused(foreign, 400, "invalid_input")) == {"call_id"}
        second = await _ok(await agent.post("/api/tickets", json={**WALK_IN, "channel": "phone",
                                                                  "call_id": MINE}), 201)
        assert (second["call_id"], second["auto"]) == (MINE, False)
    async with signed_in(site.server, "sup1") as boss:
        await _ok(await _event(boss, walk_in, type="assign", owner="ag1"))
    async with signed_in(site.server, "ag1") as agent:
        listed = await _ok(await agent.get("/api/tickets"))
        assert {t["number"] for t in listed["items"]} == {site.mine, second["number"], walk_in}
    async with signed_in(site.server, "qa1") as qa:
        assert len((await _ok(await qa.get("/api/tickets")))["items"]) == 4
        await _ok(await qa.get(f"/api/tickets/{site.theirs}"))
    await add_user(site.pool, "ag9", "agent")  # an agent user linked to no agent
    async with signed_in(site.server, "ag9") as unlinked:
        assert (await _ok(await unlinked.get("/api/tickets")))["items"] == []
        await _refused(await unlinked.get(f"/api/tickets/{site.mine}"), 404, "not_found")
        mine = await _ok(await unlinked.post("/api/tickets", json=WALK_IN), 201)
        assert [t["number"] for t in (await _ok(await unlinked.get("/api/tickets")))["items"]
                ] == [mine["number"]]


async def test_list_filters_and_pages(site: Site) -> None:
    async with signed_in(site.server, "sup1") as boss:
        for i in range(3):
            await _ok(await boss.post("/api/tickets", json={
                **WALK_IN, "category": "cleaning", "description": f"垃圾没清 100%_{i}"}), 201)
        await _ok(await boss.request("PATCH", f"/api/tickets/{site.mine}",
                                     json={"category": "security"}))

        async def numbers(**query: Any) -> list[str]:
            page = await _ok(await boss.get("/api/tickets", params=query))
            return [t["number"] for t in page["items"]]

        assert len(await numbers()) == 5
        assert await numbers(category="security") == [site.mine]  # the human value counts
        assert len(await numbers(category="cleaning", status="new", owner="sup1")) == 3
        assert len(await numbers(q="100%_")) == 3 and await numbers(q="0%_x") == []
        assert await numbers(building="3", overdue="false") == [site.theirs, site.mine]
        assert await numbers(overdue="true") == []
        first = await _ok(await boss.get("/api/tickets", params={"limit": "2"}))
        rest = await _ok(await boss.get("/api/tickets", params={
            "limit": "3", "before": str(first["next_before"])}))
        assert len(first["items"]) == 2 and len(rest["items"]) == 3
        assert rest["next_before"] is None  # the last page: nothing older
        assert not {t["number"] for t in first["items"]} & {t["number"] for t in rest["items"]}
        assert first["prev_after"] is None and rest["prev_after"] is not None
        # Back from the second page: the first page again, newest first, no newer one.
        back = await _ok(await boss.get("/api/tickets", params={
            "limit": "2", "after": str(rest["prev_after"])}))
        assert [t["number"] for t in back["items"]] == [t["number"] for t in first["items"]]
        assert back["prev_after"] is None and back["next_before"] == first["next_before"]


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=abc", "limit"), ("limit=1e9", "limit"),
    ("status=open", "status"), ("urgency=P9", "urgency"), ("overdue=maybe", "overdue"),
    ("before=-1", "before"), ("before=99999999999999999999999", "before"),
    ("after=0", "after"), ("before=5&after=3", "after"),
    ("q=" + "x" * 101, "q"), ("colour=red", "colour"), ("limit=1&limit=2", "limit"),
    ("q=%01", "q"), ("owner=a%07b", "owner"), ("building=%1b[2J", "building"),
])
async def test_bad_list_queries_are_400_with_the_field(site: Site, query: str,
                                                       field: str) -> None:
    async with signed_in(site.server, "sup1") as boss:
        body = await _refused(await boss.get(f"/api/tickets?{query}"), 400, "invalid_input")
        assert _fields(body) == {field}


def _bad_bodies() -> list[tuple[str, Any, str, set[str]]]:
    """(route, body, error, failing fields) for the JSON routes."""
    create, patch, event = "POST /api/tickets", "PATCH", "POST events"
    huge = "长" * 100_000
    return [
        (create, b"{not json", "bad_json", set()),
        (create, b"", "bad_json", set()),
        (create, [WALK_IN], "invalid_input", {"body"}),
        (create, {**WALK_IN, "urgency": 2}, "invalid_input", {"urgency"}),
        (create, {**WALK_IN, "colour": "red"}, "invalid_input", {"colour"}),
        (create, {**WALK_IN, "description": huge}, "invalid_input", {"description"}),
        (create, {**WALK_IN, "description": "   "}, "invalid_input", {"description"}),
        (create, {**WALK_IN, "phone": "call me"}, "invalid_input", {"phone"}),
        (create, {**WALK_IN, "description": "漏水\u0000"}, "invalid_input", {"description"}),
        (create, {**WALK_IN, "caller_name": "\u001b[31m"}, "invalid_input", {"caller_name"}),
        (create, {**WALK_IN, "repeat_complaint": "yes"}, "invalid_input", {"repeat_complaint"}),
        (create, {**WALK_IN, "channel": "fax", "category": None}, "invalid_input",
         {"channel", "category"}),
        (create, {"channel": "online"}, "invalid_input", {"category", "urgency", "description"}),
        (patch, {}, "invalid_input", {"body"}),
        (patch, {"category": None}, "invalid_input", {"category"}),
        (patch, {"urgency": "P0"}, "invalid_input", {"urgency"}),
        (patch, {"status": "closed"}, "invalid_input", {"status"}),
        (patch, {"building": huge}, "invalid_input", {"building"}),
        (event, {"type": "teleport"}, "invalid_input", {"type"}),
        (event, {}, "invalid_input", {"type"}),
        (event, {"type": "callback", "satisfaction": 7}, "invalid_input", {"satisfaction"}),
        (event, {"type": "callback", "satisfaction": "5"}, "invalid_input", {"satisfaction"}),
        (event, {"type": "callback", "satisfaction": 4.5}, "invalid_input", {"satisfaction"}),
        (event, b'{"type": "callback", "satisfaction": 1e999}', "invalid_input",
         {"satisfaction"}),
        (event, {"type": "note", "text": huge}, "invalid_input", {"text"}),
        (event, {"type": "reopen", "reason": "\u0000"}, "invalid_input", {"reason"}),
        (event, {"type": "note", "text": "x", "by": "boss"}, "invalid_input", {"by"}),
        (event, {"type": "resolve", "notes": "x", "photos": ["../../etc/passwd"]},
         "invalid_input", {"photos.0"}),
        (event, {"type": "dispatch", "department": "DROP TABLE"}, "invalid_input",
         {"department"}),
        (event, b'{"type": "note", "text": "' + b'[' * 5000 + b'"}', "invalid_input", {"text"}),
        (event, b'[' * 100_000, "bad_json", set()),
    ]


@pytest.mark.parametrize(("route", "body", "error", "fields"), _bad_bodies())
async def test_bad_bodies_are_400_with_the_failing_fields(
    site: Site, route: str, body: Any, error: str, fields: set[str],
) -> None:
    method, path = {"POST /api/tickets": ("POST", "/api/tickets"),
                    "PATCH": ("PATCH", f"/api/tickets/{site.mine}"),
                    "POST events": ("POST", f"/api/tickets/{site.mine}/events")}[route]
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    async with signed_in(site.server, "sup1") as boss:
        resp = await boss.request(method, path, data=raw,
                                  headers={"Content-Type": "application/json"})
        answer = await _refused(resp, 400, error)
    if fields:
        assert _fields(answer) == fields
        assert "长长长" not in json.dumps(answer)  # input is never echoed back


async def test_not_json_and_unknown_things_are_4xx(site: Site) -> None:
    async with signed_in(site.server, "sup1") as boss:
        form = await boss.post("/api/tickets", data={"channel": "walk_in"})
        await _refused(form, 400, "bad_content_type")
        for path in ("/api/tickets/T-nope", "/api/tickets/" + "9" * 300,
                     f"/api/tickets/{site.mine}/attachments/{'0' * 32}",
                     f"/api/tickets/{site.mine}/attachments/..%2f..%2fetc"):
            assert (await boss.get(path)).status == 404, path
        await _refused(await _event(boss, "T-nope", type="note", text="x"), 404, "not_found")
        for alert in ("999999", "x", "-1", "9" * 40):
            resp = await boss.post(f"/api/tickets/alerts/{alert}/acknowledge")
            await _refused(resp, 404, "not_found")
        big = await boss.request("PATCH", f"/api/tickets/{site.mine}", data=b"x" * (3 << 20),
                                 headers={"Content-Type": "application/json"})
        assert big.status == 413


async def test_attachments_are_checked(site: Site) -> None:
    async def upload(who: Browser, data: bytes, content_type: str,
                     name: str = "a.png") -> aiohttp.ClientResponse:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name, content_type=content_type)
        return await who.post(f"/api/tickets/{site.mine}/attachments", data=form)

    async with signed_in(site.server, "ag1") as agent:
        ok = await _ok(await upload(agent, PNG, "image/png", "../../x/厨房.png"), 201)
        assert ok["filename"] == "厨房.png"
        await _refused(await upload(agent, b"<svg/>", "image/svg+xml"), 415,
                       "attachment.type_not_allowed")
        await _refused(await upload(agent, b"MZ\x90\x00" * 8, "image/png"), 415,
                       "attachment.content_mismatch")
        await _refused(await upload(agent, PNG * 100, "image/png"), 413, "attachment.too_large")
        await _refused(await upload(agent, b"", "application/pdf"), 400, "attachment.empty")
        other = aiohttp.FormData()
        other.add_field("photo", PNG, filename="a.png", content_type="image/png")
        await _refused(await agent.post(f"/api/tickets/{site.mine}/attachments", data=other),
                       400, "invalid_input")
        await _refused(await agent.post(f"/api/tickets/{site.mine}/attachments", data=b"--x",
                                        headers={"Content-Type": "multipart/form-data"}),
                       400, "bad_multipart")
    async with signed_in(site.server, "ag2") as other_agent:
        await _refused(await upload(other_agent, PNG, "image/png"), 404, "not_found")
        assert (await other_agent.get(
            f"/api/tickets/{site.mine}/attachments/{ok['id']}")).status == 404


async def test_alerts_reach_their_people(site: Site) -> None:
    async with signed_in(site.server, "ag1") as agent:
        complaint = {**WALK_IN, "category": "complaint", "repeat_complaint": True}
        made = await _ok(await agent.post("/api/tickets", json=complaint), 201)
        assert [(a["kind"], a["to"]) for a in made["alerts"]] == [("escalate", "supervisor")]
        assert (await _ok(await agent.get("/api/tickets/alerts")))["items"] == []
    async with signed_in(site.server, "sup1") as boss:
        (alert,) = (await _ok(await boss.get("/api/tickets/alerts")))["items"]
        assert (alert["number"], alert["reason"], alert["level"]) == (
            made["number"], "repeat_complaint", 1)
        seen = await _ok(await boss.post(f"/api/tickets/alerts/{alert['id']}/acknowledge"))
        assert seen["acknowledged_by"] == "sup1"
        assert (await _ok(await boss.get("/api/tickets/alerts")))["items"] == []
        await _refused(await boss.get("/api/tickets/alerts?limit=0"), 400, "invalid_input")
    async with signed_in(site.server, "adm1") as admin:
        again = await _ok(await admin.post(f"/api/tickets/alerts/{alert['id']}/acknowledge"))
        assert again["acknowledged_by"] == "sup1"  # the first acknowledgement stands


async def test_the_openapi_document_is_the_route_table_and_the_models(site: Site) -> None:
    async with signed_in(site.server, "qa1") as qa:
        doc = await _ok(await qa.get("/api/openapi.json"))
    assert doc["openapi"].startswith("3.1")
    tickets = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops
               if p.startswith("/api/tickets")}
    assert tickets == {
        ("GET", "/api/tickets"), ("POST", "/api/tickets"), ("GET", "/api/tickets/alerts"),
        ("POST", "/api/tickets/alerts/{alert_id}/acknowledge"),
        ("GET", "/api/tickets/{number}"), ("PATCH", "/api/tickets/{number}"),
        ("POST", "/api/tickets/{number}/events"), ("POST", "/api/tickets/{number}/attachments"),
        ("GET", "/api/tickets/{number}/attachments/{attachment_id}")}
    assert "/api/calls" in doc["paths"] and "/healthz" not in doc["paths"]
    schemas = doc["components"]["schemas"]
    create = doc["paths"]["/api/tickets"]["post"]
    assert create["x-roles"] == ["admin", "agent", "supervisor"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TicketCreate"}
    assert schemas["TicketCreate"]["properties"] == TicketCreate.model_json_schema()["properties"]
    assert schemas["TicketCreate"]["additionalProperties"] is False
    event_types = set(schemas["TicketEvent"]["discriminator"]["mapping"])
    assert event_types == {"dispatch", "start", "note", "resolve", "callback", "close",
                           "reopen", "contacted", "assign"}
    assert TicketEvent.model_json_schema()["discriminator"]["propertyName"] == "type"
    listing = {p["name"] for p in doc["paths"]["/api/tickets"]["get"]["parameters"]}
    assert listing >= {"status", "category", "urgency", "overdue", "owner", "building", "q",
                       "limit", "before", "after"}
    # Every reference resolves.
    refs = set(_refs(doc))
    assert refs and {r.rsplit("/", 1)[-1] for r in refs} <= set(schemas)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []
