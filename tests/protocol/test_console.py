"""The agent console over real HTTP: the live stream pushes the agent's state and
the offered call (a fake Asterisk drives the real call distributor), the screen
pop shows the resident and their tickets, the wrap-up saves the disposition and
the ticket as the agent's values, which the analysis never overwrites."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from callcenter import residents
from callcenter.core import Ticket
from callcenter.db.store import PgStore
from callcenter.keys import LIVE
from callcenter.settings import Settings
from callcenter.web.app import create_app
from tests.protocol.fake_ari import FakeAri
from tests.protocol.test_acd_ari import NOW, Env, agents, start_env
from tests.web_support import Browser, add_user, running, signed_in

CALLER_NUMBER = "13912345678"


@pytest.fixture
async def env(fake: FakeAri) -> AsyncIterator[Env]:
    environment = await start_env(fake, wrap_up_s=30.0, clock=lambda: NOW)
    yield environment
    await environment.stop()


@pytest.fixture
async def site(env: Env, db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path
               ) -> AsyncIterator[Any]:
    store = PgStore(db_pool)
    for agent in agents():
        await store.upsert_agent(agent["id"], name=agent["name"], endpoint=agent["endpoint"],
                                 skills=agent["skills"])
    await add_user(db_pool, "wang", "agent", agent_id="1001")
    await add_user(db_pool, "li", "agent", agent_id="1002")
    await add_user(db_pool, "boss", "supervisor")
    rows, _ = residents.parse_csv(f"phone,name,building,unit,room,vip\n"
                                  f"{CALLER_NUMBER},赵阿姨,3,2,501,elderly\n")
    await residents.upsert(db_pool, rows, by="test")
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path)
    app = create_app(settings, telephony=False, workers=0)
    app[LIVE]["acd"] = env.acd  # the distributor of this process
    async with running(app) as server:
        yield server


async def _events(browser: Browser) -> AsyncIterator[dict[str, Any]]:
    resp = await browser.get("/api/console/live")
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    try:
        while True:
            line = (await asyncio.wait_for(resp.content.readline(), 5)).decode()
            if line.startswith("data: "):
                yield json.loads(line[len("data: "):])
    finally:
        resp.close()


async def _next(stream: AsyncIterator[dict[str, Any]], check: Any) -> dict[str, Any]:
    async for view in stream:
        if check(view):
            return view
    raise AssertionError("stream ended")


async def test_offer_screen_pop_and_wrap_up(site: Any, env: Env, db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    await store.open_call("c1", caller_number=CALLER_NUMBER, channel_id="caller-1")
    await store.update_call("c1", ivr_digits="1", ivr_intent="repair", queue="repair")
    old = "T-earlier"
    await db_pool.execute(
        "INSERT INTO tickets (number, category, urgency, phone, description, status)"
        " VALUES ($1, 'engineering', 'P3', $2, '水龙头漏水', 'new')", old, CALLER_NUMBER)
    async with signed_in(site, "wang") as wang:
        stream = _events(wang)
        first = await _next(stream, lambda v: True)
        assert (first["agent_id"], first["state"], first["call"]) == ("1001", "available", None)
        assert set(first["queues"]) >= {"repair", "complaint"}

        env.fake.add_caller("caller-1", "c1", queue="repair")  # 1001 is the longest idle
        offered = await _next(stream, lambda v: v["state"] == "ringing")
        assert offered["call"]["call_id"] == "c1" and offered["call"]["ringing"]
        assert offered["call"]["queue"] == "repair"

        pop = await (await wang.get("/api/console/calls/c1")).json()
        assert pop["resident"]["name"] == "赵阿姨" and pop["resident"]["vip"] == "elderly"
        assert pop["call"]["ivr_intent"] == "repair"
        assert [t["number"] for t in pop["tickets"]] == [old]
        assert pop["form"]["building"] == "3" and pop["form"]["urgency"] == "P2"  # VIP raised

        async with signed_in(site, "li") as li:  # not offered to Li
            assert (await li.get("/api/console/calls/c1")).status == 404

        agent_channel = env.fake.agent_channel()
        env.fake.answer(agent_channel)
        await _next(stream, lambda v: v["state"] == "on_call")
        env.fake.remove("caller-1")
        wrapping = await _next(stream, lambda v: v["state"] == "wrap_up")
        assert wrapping["wrap_up"]["call_id"] == "c1"
        assert wrapping["wrap_up"]["seconds_left"] == 30.0

        saved = await wang.post("/api/console/calls/c1/wrap-up", json={
            "disposition": "ticket", "ready": True,
            "ticket": {"category": "engineering", "urgency": "P2", "caller_name": "赵阿姨",
                       "building": "3", "unit": "2", "room": "501",
                       "description": "厨房水管漏水，需上门"}})
        assert saved.status == 200, await saved.text()
        number = (await saved.json())["ticket_number"]
        bad = await wang.post("/api/console/calls/c1/wrap-up", json={"disposition": "x"})
        assert bad.status == 400 and "disposition" in (await bad.json())["details"]["problems"]

    row = await db_pool.fetchrow("SELECT disposition, disposition_by FROM calls WHERE id='c1'")
    assert tuple(row) == ("ticket", "wang")
    pending = await store.pending_agent_requests()
    assert ("1001", "ready", "web:wang") in [(r["agent_id"], r["action"], r["requested_by"])
                                             for r in pending]
    # The analysis comes later with its own opinion: the agent's values stay shown.
    await store.save_analysis("c1", segments=[], qa=None, qa_source="asr", ticket=Ticket(
        category="cleaning", urgency="P3", description="漏水", phone=CALLER_NUMBER))
    async with signed_in(site, "boss") as boss:
        doc = await (await boss.get("/api/calls/c1")).json()
    ticket = doc["ticket"]
    assert ticket["number"] == number
    assert (ticket["category"], ticket["urgency"], ticket["description"]) == (
        "engineering", "P2", "厨房水管漏水，需上门")
    assert ticket["automatic"]["category"] == "cleaning"
    assert ticket["human"]["category"] == "engineering"
    audit = await db_pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'wrap_up_saved' AND target_id = 'c1'")
    assert audit == 1


async def test_the_console_is_for_agents(site: Any) -> None:
    async with signed_in(site, "boss") as boss:
        for path in ("/console", "/api/console/live", "/api/console/today"):
            assert (await boss.get(path)).status == 403, path
    async with signed_in(site, "wang") as wang:
        page = await wang.get("/console")
        html = await page.text()
        assert page.status == 200 and "坐席工作台" in html and 'data-agent="1001"' in html
        today = await (await wang.get("/api/console/today")).json()
        assert today["answered"] == 0 and "time_in_state_s" in today
        assert (await wang.get("/api/console/calls/nope")).status == 404


async def test_agents_land_on_their_console(site: Any) -> None:
    root = site.make_url("/")
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[str(root.origin())])
    async with aiohttp.ClientSession(base_url=root, cookie_jar=jar) as http:
        form = await (await http.get("/login")).text()
        token = form.split('name="csrf_token" value="')[1].split('"')[0]
        resp = await http.post("/login", allow_redirects=False, data={
            "username": "wang", "password": "correct horse battery", "csrf_token": token})
        assert resp.status == 303 and resp.headers["Location"] == "/console"


async def test_wrap_up_shows_what_the_analysis_was_unsure_of(site: Any,
                                                             db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    await store.open_call("c2", caller_number=CALLER_NUMBER, channel_id="caller-2")
    await store.update_call("c2", ivr_digits="2", queue="complaint", agent_id="1001")
    await store.save_analysis("c2", segments=[], qa=None, qa_source="asr", ticket=Ticket(
        category="complaint", urgency="P3", complaint_severity="minor", description="保安态度",
        phone=CALLER_NUMBER, needs_confirmation=["category", "severity"],
        evidence={"category": ["model complaint 0.41: 保安、态度"],
                  "severity": ["model minor 0.38: 昨天"]}))
    async with signed_in(site, "wang") as wang:
        pop = await (await wang.get("/api/console/calls/c2")).json()
        assert pop["form"]["category"] == "complaint"
        assert pop["form"]["complaint_severity"] == "minor"
        assert pop["confirm"] == {"category": ["model complaint 0.41: 保安、态度"],
                                  "complaint_severity": ["model minor 0.38: 昨天"]}
        wrong = await wang.post("/api/console/calls/c2/wrap-up", json={
            "disposition": "ticket", "ticket": {"category": "engineering", "urgency": "P3",
                                                "complaint_severity": "major"}})
        assert wrong.status == 400
        assert "ticket.complaint_severity" in (await wrong.json())["details"]["problems"]
        # The agent confirms the category and corrects the severity.
        saved = await wang.post("/api/console/calls/c2/wrap-up", json={
            "disposition": "ticket", "ticket": {"category": "complaint", "urgency": "P3",
                                                "complaint_severity": "important"}})
        assert saved.status == 200, await saved.text()
        pop = await (await wang.get("/api/console/calls/c2")).json()
        assert pop["confirm"] == {}
    row = await db_pool.fetchrow(
        "SELECT complaint_severity, human, human_by FROM tickets WHERE call_id = 'c2' AND auto")
    assert row["complaint_severity"] == "minor"  # the automatic value, kept beside
    human = row["human"] if isinstance(row["human"], dict) else json.loads(row["human"])
    assert (human["category"], human["complaint_severity"]) == ("complaint", "important")
    assert row["human_by"] == "wang"
