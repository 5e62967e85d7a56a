"""Who may do what in the web, route by route, over real HTTP on a real database:
anonymous, agent, qa, supervisor and admin against every route; an agent's own
calls and recordings only; CSRF, cross-site requests, throttled sign-in,
sessions that end, security headers, the Host check, and the audit log."""

from __future__ import annotations

import asyncio
import json
import re
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from callcenter.auth.http import ACCESS
from callcenter.core import QaResult, RuleResult, Ticket
from callcenter.db.store import PgStore
from callcenter.settings import Settings
from callcenter.tickets.service import AttachmentRules, TicketService
from callcenter.web.app import CSP_KEY, POOL, SECURITY_HEADERS, create_app
from tests.web_support import PASSWORD, add_user, browser, running, signed_in

MINE, THEIRS = "ca11000000000001", "ca11000000000002"  # answered by agents a1 and a2
ROLES = ("anonymous", "agent", "qa", "supervisor", "admin")
USERS = {"agent": "ag1", "qa": "qa1", "supervisor": "sup1", "admin": "adm1"}


@dataclass
class Site:
    server: TestServer
    pool: asyncpg.Pool
    ids: dict[str, int]  # user name -> id
    seeded: dict[str, str]  # the ticket of MINE, its attachment and alert


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(8000)
        wf.writeframes(b"\0\0" * 800)


async def _seed(pool: asyncpg.Pool, rec: Path) -> dict[str, int]:
    store = PgStore(pool)
    for agent in ("a1", "a2"):
        await store.upsert_agent(agent, name=agent, endpoint=f"Local/{agent}@sim-agents/n",
                                 skills=["repair"])
    for call, agent in ((MINE, "a1"), (THEIRS, "a2")):
        await store.open_call(call, caller_number="13800000000", channel_id=call)
        await store.update_call(call, stage="conversation", agent_id=agent)
        for leg in ("caller", "agent"):
            await store.add_leg(call, leg, channel_id=None, recording_name=f"{call}/{leg}.wav")
            _wav(rec / call / f"{leg}.wav")
        await store.finish_call(call, stage="conversation", hangup_by="caller")
        # Processed: searched for personal numbers, none found (served as recorded).
        await pool.execute("UPDATE recordings SET pii_findings = 0 WHERE call_id = $1", call)
    ids = {"ag1": await add_user(pool, "ag1", "agent", agent_id="a1"),
           "ag2": await add_user(pool, "ag2", "agent", agent_id="a2")}
    for role in ("qa", "supervisor", "admin"):
        ids[USERS[role]] = await add_user(pool, USERS[role], role)
    return ids


async def _seed_ticket(pool: asyncpg.Pool, attachments: Path) -> dict[str, str]:
    """A repeated complaint on MINE (so an alert to the supervisors) with a photo."""
    qa = QaResult(80.0, [RuleResult("greeting", True, weight=10),
                         RuleResult("polite_address", False, weight=10)], "test+1")
    number = await PgStore(pool).save_analysis(
        MINE, segments=[], qa=qa, qa_source="asr",
        ticket=Ticket("complaint", "P3", "又一次投诉噪音", phone="13800000000",
                      repeat_complaint=True))
    assert number is not None
    service = TicketService(pool, attachments=AttachmentRules(attachments, 1 << 20))

    async def png() -> AsyncIterator[bytes]:
        yield b"\x89PNG\r\n\x1a\n" + b"\0" * 32

    photo = await service.add_attachment(number, filename="p.png", content_type="image/png",
                                         chunks=png(), by="ag1", role="agent", viewer=None)
    alert = await pool.fetchval("SELECT id FROM ticket_alerts")
    return {"number": number, "attachment": photo["id"], "alert": str(alert)}


@pytest.fixture
async def site(db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Site]:
    rec = tmp_path / "rec"
    ids = await _seed(db_pool, rec)
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=rec)
    seeded = await _seed_ticket(db_pool, settings.attachments)
    async with running(create_app(settings, telephony=False, workers=0)) as server:
        yield Site(server, db_pool, ids, seeded)


# (method, path, JSON body or None) -> expected status for anonymous, agent, qa,
# supervisor, admin. Requests come from this machine (loopback).
def _table(site: Site) -> list[tuple[str, str, Any, tuple[int, ...]]]:
    ids, number = site.ids, site.seeded["number"]
    attachment, alert = site.seeded["attachment"], site.seeded["alert"]
    rows = {
        ("GET", "/healthz", None): (200, 200, 200, 200, 200),
        ("GET", "/login", None): (200, 200, 200, 200, 200),
        ("POST", "/login", None): (403, 403, 403, 403, 403),  # no form token
        ("GET", "/language?set=en&next=/", None): (303, 303, 303, 303, 303),
        ("POST", "/api/session", None): (401,) * 5,
        ("GET", "/api/me", None): (401, 200, 200, 200, 200),
        ("GET", "/", None): (401, 200, 200, 200, 200),
        ("GET", f"/calls/{MINE}", None): (401, 200, 200, 200, 200),
        ("GET", "/api/calls", None): (401, 200, 200, 200, 200),
        ("GET", f"/api/calls/{MINE}", None): (401, 200, 200, 200, 200),
        # Tickets: QA reads only; the alert is the supervisors' (the agent's is "not found").
        ("GET", "/tickets", None): (401, 200, 200, 200, 200),
        ("GET", f"/tickets/{number}", None): (401, 200, 200, 200, 200),
        ("GET", "/api/tickets", None): (401, 200, 200, 200, 200),
        ("POST", "/api/tickets", None): (401, 400, 403, 400, 400),
        ("GET", "/api/tickets/alerts", None): (401, 200, 200, 200, 200),
        ("POST", f"/api/tickets/alerts/{alert}/acknowledge", None): (401, 404, 403, 200, 200),
        ("GET", f"/api/tickets/{number}", None): (401, 200, 200, 200, 200),
        ("PATCH", f"/api/tickets/{number}", None): (401, 200, 403, 200, 200),
        ("POST", f"/api/tickets/{number}/events", None): (401, 200, 403, 200, 200),
        ("POST", f"/api/tickets/{number}/attachments", None): (401, 400, 403, 400, 400),
        ("GET", f"/api/tickets/{number}/attachments/{attachment}", None):
            (401, 200, 200, 200, 200),
        ("GET", "/api/openapi.json", None): (401, 200, 200, 200, 200),
        ("GET", f"/recordings/{MINE}/agent.wav", None): (401, 200, 200, 200, 200),
        ("POST", "/api/agents/a1/state", None): (401, 202, 403, 202, 202),
        ("GET", "/api/agents", None): (401, 403, 200, 200, 200),
        ("GET", "/api/stats?hours=1", None): (401, 403, 200, 200, 200),
        ("GET", "/api/queues", None): (401, 403, 403, 200, 200),
        ("GET", "/api/live", None): (401, 403, 403, 503, 503),  # no ACD in this process
        ("GET", "/api/ivr/stats", None): (401, 403, 403, 200, 200),
        ("GET", "/api/transcription/stats", None): (401, 403, 403, 200, 200),
        ("GET", "/metrics", None): (200, 403, 403, 200, 200),  # open to loopback
        ("GET", "/admin/users", None): (401, 403, 403, 403, 200),
        ("GET", "/api/users", None): (401, 403, 403, 403, 200),
        ("POST", "/api/users", None): (401, 403, 403, 403, 400),
        ("PATCH", f"/api/users/{ids['qa1']}", None): (401, 403, 403, 403, 200),
        ("GET", "/api/audit", None): (401, 403, 403, 403, 200),
        ("GET", "/static/app.css", None): (200, 200, 200, 200, 200),
        ("GET", "/console", None): (401, 200, 403, 403, 403),
        ("GET", "/api/console/live", None): (401, 503, 403, 403, 403),  # no ACD here
        ("GET", "/api/console/today", None): (401, 200, 403, 403, 403),
        ("GET", "/api/console/softphone", None): (401, 404, 403, 403, 403),  # no SIP account
        ("GET", f"/api/console/calls/{MINE}", None): (401, 200, 403, 403, 403),
        ("POST", f"/api/console/calls/{MINE}/wrap-up", None): (401, 200, 403, 403, 403),
        # QA: QA staff and supervisors rule; admins read; an agent reads and appeals
        # their own (the bodies here are empty: 400 where the role may post).
        ("GET", "/qa", None): (401, 200, 200, 200, 200),
        ("GET", "/qa/scorecards", None): (401, 200, 200, 200, 200),
        ("GET", f"/qa/calls/{MINE}", None): (401, 200, 200, 200, 200),
        ("GET", "/api/qa/queue", None): (401, 403, 200, 200, 200),
        ("GET", "/api/qa/calls", None): (401, 200, 200, 200, 200),
        ("GET", f"/api/qa/calls/{MINE}", None): (401, 200, 200, 200, 200),
        ("POST", f"/api/qa/calls/{MINE}/rules/greeting/verdict", None):
            (401, 403, 400, 400, 403),
        ("POST", f"/api/qa/calls/{MINE}/rules/polite_address/appeal", None):
            (401, 400, 403, 403, 403),
        ("POST", "/api/qa/appeals/1/decision", None): (401, 403, 400, 400, 403),
        ("GET", "/api/qa/agreement", None): (401, 403, 200, 200, 200),
        ("GET", "/api/qa/scorecards", None): (401, 200, 200, 200, 200),
    }
    bodies = {("POST", "/api/session"): {"username": "x", "password": "y"},
              ("POST", "/api/agents/a1/state"): {"action": "login"},
              ("POST", "/api/users"): {}, ("PATCH", f"/api/users/{ids['qa1']}"): {},
              ("POST", f"/api/console/calls/{MINE}/wrap-up"): {"disposition": "resolved"},
              ("POST", "/api/tickets"): {},
              ("POST", f"/api/qa/calls/{MINE}/rules/greeting/verdict"): {},
              ("POST", f"/api/qa/calls/{MINE}/rules/polite_address/appeal"): {},
              ("POST", "/api/qa/appeals/1/decision"): {},
              ("PATCH", f"/api/tickets/{number}"): {"building": "5"},
              ("POST", f"/api/tickets/{number}/events"): {"type": "note", "text": "已回电"},
              ("POST", f"/api/tickets/{number}/attachments"): {}}
    return [(m, p, bodies.get((m, p)), expected) for (m, p, _), expected in rows.items()]


# Routes that end the session they are called with: tested on their own below.
SIGNING_OUT = {("POST", "/logout"), ("DELETE", "/api/session")}


async def test_every_route_answers_each_role_as_declared(site: Site) -> None:
    table = _table(site)
    declared = {(r.method, r.resource.canonical if r.resource else "")
                for r in site.server.app[ACCESS]}
    tested = {(m, _canonical(p)) for m, p, _, _ in table} | SIGNING_OUT
    assert declared - {("HEAD", "/static")} == tested  # every route, and only those
    seen: dict[tuple[str, str], list[int]] = {(m, p): [] for m, p, _, _ in table}
    for role in ROLES:
        async with _as(site, role) as who:
            for method, path, body, _expected in table:
                resp = await who.request(method, path, allow_redirects=False,
                                         **({"json": body} if body is not None else {}))
                seen[(method, path)].append(resp.status)
    wrong = {f"{m} {p}": {"seen": seen[(m, p)], "expected": list(expected)}
             for m, p, _, expected in table if tuple(seen[(m, p)]) != expected}
    assert not wrong, f"per role {ROLES}: {wrong}"


def _canonical(path: str) -> str:
    path = path.split("?")[0]
    for fixed, pattern in ((f"/calls/{MINE}", "/calls/{call_id}"),
                           (f"/api/calls/{MINE}", "/api/calls/{call_id}"),
                           (f"/recordings/{MINE}/agent.wav", "/recordings/{call_id}/{leg}.wav"),
                           ("/api/agents/a1/state", "/api/agents/{agent_id}/state"),
                           ("/static/app.css", "/static"),
                           (f"/api/console/calls/{MINE}", "/api/console/calls/{call_id}"),
                           (f"/api/console/calls/{MINE}/wrap-up",
                            "/api/console/calls/{call_id}/wrap-up")):
        if path == fixed:
            return pattern
    for prefix, pattern in (
            (r"^/api/qa/calls/[^/]+/rules/[^/]+/", "/api/qa/calls/{call_id}/rules/{rule_id}/"),
            (r"^/api/qa/calls/[^/]+$", "/api/qa/calls/{call_id}"),
            (r"^/qa/calls/[^/]+$", "/qa/calls/{call_id}"),
            (r"^/api/qa/appeals/\d+/", "/api/qa/appeals/{appeal_id}/")):
        if re.match(prefix, path):
            return re.sub(prefix, pattern, path)
    if path.startswith("/api/users/"):
        return "/api/users/{user_id}"
    for prefix, pattern in ((r"^/api/tickets/alerts/\d+/", "/api/tickets/alerts/{alert_id}/"),
                            (r"^/api/tickets/T[^/]+/attachments/[^/]+$",
                             "/api/tickets/{number}/attachments/{attachment_id}"),
                            (r"^/api/tickets/(?!alerts)[^/]+", "/api/tickets/{number}"),
                            (r"^/tickets/[^/]+$", "/tickets/{number}")):
        if re.match(prefix, path):
            return re.sub(prefix, pattern, path)
    return path


def _as(site: Site, role: str) -> Any:
    return browser(site.server) if role == "anonymous" else signed_in(site.server, USERS[role])


async def test_an_agent_sees_only_their_own_calls_and_recordings(site: Site) -> None:
    async with signed_in(site.server, "ag1") as agent:
        calls = await (await agent.get("/api/calls")).json()
        assert [c["id"] for c in calls] == [MINE]
        assert (await agent.get(f"/api/calls/{THEIRS}")).status == 404
        assert (await agent.get(f"/calls/{THEIRS}")).status == 404
        assert (await agent.get(f"/recordings/{THEIRS}/agent.wav")).status == 404
        assert (await agent.get(f"/recordings/{THEIRS}/caller.wav")).status == 404
        assert (await agent.get(f"/recordings/{MINE}/caller.wav")).status == 200
        other = await agent.post("/api/agents/a2/state", json={"action": "logout"})
        assert other.status == 403
    async with signed_in(site.server, "qa1") as qa:
        assert (await qa.get(f"/recordings/{THEIRS}/agent.wav")).status == 200


async def test_recording_downloads_are_audited(site: Site) -> None:
    async with signed_in(site.server, "qa1") as qa:
        assert (await qa.get(f"/recordings/{MINE}/agent.wav")).status == 200
    rows = await site.pool.fetch("SELECT * FROM audit_log WHERE action = 'recording_downloaded'")
    assert len(rows) == 1
    row = rows[0]
    assert (row["username"], row["role"], row["target_kind"], row["target_id"]) == (
        "qa1", "qa", "call", MINE)
    assert row["details"]["leg"] == "agent"
    assert row["ip"] == "127.0.0.1" and row["at"] is not None


async def test_a_state_change_without_the_csrf_token_is_refused(site: Site) -> None:
    async with signed_in(site.server, "sup1") as boss:
        token, boss.csrf = boss.csrf, None
        resp = await boss.post("/api/agents/a1/state", json={"action": "login"})
        assert resp.status == 403 and (await resp.json())["error"] == "csrf"
        resp = await boss.post("/api/agents/a1/state", json={"action": "login"},
                               headers={"X-CSRF-Token": "not-the-token"})
        assert resp.status == 403 and (await resp.json())["error"] == "csrf"
        boss.csrf = token
        cross = await boss.post("/api/agents/a1/state", json={"action": "login"},
                                headers={"Origin": "http://evil.example"})
        assert cross.status == 403 and (await cross.json())["error"] == "cross_site"
        fetch = await boss.post("/api/agents/a1/state", json={"action": "login"},
                                headers={"Sec-Fetch-Site": "cross-site"})
        assert fetch.status == 403
        assert (await boss.post("/api/agents/a1/state", json={"action": "login"})).status == 202


async def test_repeated_wrong_passwords_are_throttled(site: Site) -> None:
    async with browser(site.server) as guesser:
        for _ in range(5):
            assert (await guesser.sign_in("sup1", "wrong password")).status == 401
        throttled = await guesser.sign_in("sup1", "wrong password")
        assert throttled.status == 429
        assert int(throttled.headers["Retry-After"]) > 0
        assert (await throttled.json())["error"] == "too_many_attempts"
        # Even the right password waits: guessing gains nothing from the answer.
        assert (await guesser.sign_in("sup1", PASSWORD)).status == 429
    actions = [r["action"] for r in await site.pool.fetch(
        "SELECT action FROM audit_log WHERE username = 'sup1' ORDER BY id")]
    assert actions == ["sign_in_failed"] * 5 + ["sign_in_throttled"] * 2


async def test_the_sign_in_form_and_its_redirects(site: Site) -> None:
    async with browser(site.server) as person:
        page = await person.get("/api/calls", headers={"Accept": "text/html"},
                                allow_redirects=False)
        assert page.status == 401  # the API never redirects
        page = await person.get("/", headers={"Accept": "text/html"}, allow_redirects=False)
        assert page.status == 303 and page.headers["Location"] == "/login?next=/"
        form = await person.get("/login?next=/admin/users")
        html = await form.text()
        assert "登录" in html and 'name="csrf_token"' in html
        token = html.split('name="csrf_token" value="')[1].split('"')[0]
        bad = await person.post("/login", data={"username": "adm1", "password": "nope",
                                                "csrf_token": token, "next": "/admin/users"})
        assert bad.status == 401 and "用户名或密码错误" in await bad.text()
        html = await bad.text()
        token = html.split('name="csrf_token" value="')[1].split('"')[0]
        ok = await person.post("/login", allow_redirects=False, data={
            "username": "adm1", "password": PASSWORD, "csrf_token": token,
            "next": "//evil.example/x"})
        assert ok.status == 303 and ok.headers["Location"] == "/"  # no open redirect
        users = await person.get("/admin/users")
        assert users.status == 200 and "用户管理" in await users.text()


async def test_sessions_end_on_sign_out_disable_and_role_change(site: Site) -> None:
    async with signed_in(site.server, "sup1") as boss:
        out = await boss.request("DELETE", "/api/session")
        assert out.status == 200
        assert (await boss.get("/api/me")).status == 401
    async with signed_in(site.server, "qa1") as qa, signed_in(site.server, "adm1") as admin:
        assert (await qa.get("/api/me")).status == 200
        changed = await admin.request("PATCH", f"/api/users/{site.ids['qa1']}",
                                      json={"role": "supervisor"})
        assert changed.status == 200
        assert (await qa.get("/api/me")).status == 401  # signed out everywhere
        changed = await admin.request("PATCH", f"/api/users/{site.ids['adm1']}",
                                      json={"disabled": True})
        assert changed.status == 409  # not themselves
    async with signed_in(site.server, "ag1") as agent, signed_in(site.server, "adm1") as admin:
        await admin.request("PATCH", f"/api/users/{site.ids['ag1']}", json={"disabled": True})
        assert (await agent.get("/api/me")).status == 401
        assert (await agent.sign_in("ag1")).status == 401  # disabled: cannot sign in
    async with signed_in(site.server, "sup1") as boss:
        out = await boss.post("/logout", allow_redirects=False)
        assert out.status == 303 and out.headers["Location"] == "/login"
        assert (await boss.get("/api/me")).status == 401


async def test_admins_add_users_with_a_password_shown_once(site: Site) -> None:
    async with signed_in(site.server, "adm1") as admin:
        made = await admin.post("/api/users", json={"username": "wang", "role": "qa",
                                                    "display_name": "王"})
        assert made.status == 201
        body = await made.json()
        password = body["password"]
        assert "password_hash" not in json.dumps(body)
        again = await admin.post("/api/users", json={"username": "wang", "role": "qa"})
        assert again.status == 409
        no_agent = await admin.post("/api/users", json={"username": "li", "role": "agent"})
        assert no_agent.status == 400
    async with browser(site.server) as wang:
        assert (await wang.sign_in("wang", password)).status == 200
        assert (await (await wang.get("/api/me")).json())["user"]["role"] == "qa"
    stored = await site.pool.fetchval("SELECT password_hash FROM users WHERE username='wang'")
    assert stored.startswith("$argon2id$") and password not in stored


async def test_security_headers_on_every_kind_of_response(site: Site) -> None:
    async with signed_in(site.server, "sup1") as boss:
        for path in ("/api/calls", "/", "/no-such-page", "/static/app.css",
                     f"/recordings/{MINE}/agent.wav", "/language?set=en"):
            resp = await boss.get(path, allow_redirects=False)
            for name, value in SECURITY_HEADERS.items():
                if name != "Content-Security-Policy":
                    assert resp.headers.get(name) == value, (path, name)
            assert resp.headers["Content-Security-Policy"] == site.server.app[CSP_KEY]
            if not path.startswith("/static/"):
                assert resp.headers["Cache-Control"] == "no-store", path
        csp = site.server.app[CSP_KEY]
        assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
        assert "connect-src 'self' wss://127.0.0.1:8089;" in csp  # the softphone's socket


async def test_a_foreign_host_header_is_refused(site: Site) -> None:
    async with browser(site.server) as rebinder:
        resp = await rebinder.get("/healthz", headers={"Host": "evil.example:8080"})
        assert resp.status == 400 and (await resp.json())["error"] == "bad_host"
        assert (await rebinder.get("/healthz", headers={"Host": "localhost"})).status == 200


async def _raw(server: TestServer, path: str) -> tuple[int, bytes]:
    url = server.make_url("/")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                     .encode("latin-1"))
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("path", ["/api/calls/%00", "/api/calls/a%00b", "/calls/%0d%0aFAKE",
                                  "/api/calls/%0aX"])
async def test_control_characters_in_the_path_are_400(site: Site, path: str) -> None:
    status, body = await _raw(site.server, path)
    assert status == 400
    assert json.loads(body)["error"] == "bad_path"


async def test_the_database_away_is_503_not_500(site: Site) -> None:
    async with signed_in(site.server, "sup1") as boss:
        await site.server.app[POOL].close()
        for path in ("/api/calls", "/api/tickets", f"/api/calls/{MINE}", "/api/stats"):
            resp = await boss.get(path)
            assert resp.status == 503, path
            body = await resp.json()
            assert body["error"] == "unavailable" and resp.headers["Retry-After"] == "5"


@pytest.mark.parametrize("query", ["hours=nan", "hours=inf", "threshold_s=-inf",
                                   "interval_min=NaN"])
async def test_error_bodies_are_strict_json(site: Site, query: str) -> None:
    async with signed_in(site.server, "sup1") as boss:
        resp = await boss.get(f"/api/stats?{query}")
        assert resp.status == 400
        text = await resp.text()
        json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text}"))
