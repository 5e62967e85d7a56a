"""The QA API over real HTTP on a real database: a reviewer's day (queue, verdicts,
the final score), an agent's appeal and its decision, what each role sees, and
bad input answered with a 4xx and an error id, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from callcenter.core import CallFacts, Segment, Timeline
from callcenter.db.store import PgStore
from callcenter.qa.engine import score
from callcenter.settings import Settings
from callcenter.web.app import create_app
from tests.db.test_qa_review import TURNS
from tests.web_support import answered_calls_and_staff, running, signed_in

MINE, THEIRS = "ca11000000000001", "ca11000000000002"  # answered by agents a1 and a2


@dataclass
class Site:
    server: TestServer
    pool: asyncpg.Pool


@pytest.fixture
async def site(db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Site]:
    await answered_calls_and_staff(db_pool, {MINE: "a1", THEIRS: "a2"})
    segments = [Segment(leg, a, b, text) for leg, a, b, text in TURNS]  # type: ignore[arg-type]
    for call in (MINE, THEIRS):
        qa = score(Timeline(segments, 16.0), CallFacts(call_id=call, hangup_by="caller"),
                   source="text", category="engineering")
        await PgStore(db_pool).save_analysis(call, segments=segments, ticket=None, qa=qa,
                                             qa_source="text")
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path)
    async with running(create_app(settings, telephony=False, workers=0)) as server:
        yield Site(server, db_pool)


async def _ok(resp: aiohttp.ClientResponse, status: int = 200) -> Any:
    body = await resp.json()
    assert resp.status == status, body
    return body


async def _refused(resp: aiohttp.ClientResponse, status: int, error: str) -> dict[str, Any]:
    body = await resp.json()
    assert (resp.status, body["error"]) == (status, error), body
    assert set(body) == {"status", "error", "message", "details"}
    return dict(body)


def _rule(doc: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in doc["rules"] if r["id"] == rule_id)


async def test_review_appeal_and_decision(site: Site) -> None:
    async with signed_in(site.server, "qa1") as qa, signed_in(site.server, "ag1") as agent:
        queue = await _ok(await qa.get("/api/qa/queue"))
        assert {c["call_id"] for c in queue["calls"]} == {MINE, THEIRS}
        doc = await _ok(await qa.get(f"/api/qa/calls/{MINE}"))
        assert _rule(doc, "polite_address")["passed"] is False
        before = doc["final_score"]
        overturned = await _ok(await qa.post(
            f"/api/qa/calls/{MINE}/rules/confirmation/verdict",
            json={"action": "overturn", "comment": "地址复述了"}))
        assert overturned["passed"] is True and overturned["final_score"] > before
        await _refused(await qa.post(f"/api/qa/calls/{MINE}/rules/greeting/verdict",
                                     json={"action": "overturn"}), 422, "qa.comment_required")
        queue = await _ok(await qa.get("/api/qa/queue"))
        assert [c["call_id"] for c in queue["calls"]] == [THEIRS]  # MINE is reviewed

        # The agent sees their own scored calls only, and appeals a failed rule.
        mine = await _ok(await agent.get("/api/qa/calls"))
        assert [c["call_id"] for c in mine["items"]] == [MINE]
        await _refused(await agent.get(f"/api/qa/calls/{THEIRS}"), 404, "not_found")
        await _refused(await agent.post(f"/api/qa/calls/{THEIRS}/rules/polite_address/appeal",
                                        json={"reason": "x"}), 404, "not_found")
        made = await _ok(await agent.post(f"/api/qa/calls/{MINE}/rules/polite_address/appeal",
                                          json={"reason": "我对同事说的你"}), 201)
        await _refused(await agent.post(f"/api/qa/calls/{MINE}/rules/polite_address/appeal",
                                        json={"reason": "again"}), 409, "qa.appeal_open")
        queue = await _ok(await qa.get("/api/qa/queue"))
        assert [a["id"] for a in queue["appeals"]] == [made["appeal"]]
        decided = await _ok(await qa.post(f"/api/qa/appeals/{made['appeal']}/decision",
                                          json={"upheld": True, "comment": "录音确认"}))
        assert decided["status"] == "upheld"
        doc = await _ok(await agent.get(f"/api/qa/calls/{MINE}"))
        line = _rule(doc, "polite_address")
        assert (line["passed"], line["final"], line["human"]["appeal_id"]) == (
            False, True, made["appeal"])
        agreement = await _ok(await qa.get("/api/qa/agreement"))
        assert agreement["by_rule"]["polite_address"]["overturned_to_pass"] == 1
        cards = await _ok(await agent.get("/api/qa/scorecards"))
        assert [a["agent_id"] for a in cards["agents"]] == ["a1"]  # their own only
    audited = {r["action"] for r in await site.pool.fetch("SELECT action FROM audit_log")}
    assert {"qa_verdict", "qa_appeal", "qa_appeal_decided"} <= audited


@pytest.mark.parametrize(("method", "path", "body", "status", "error"), [
    ("POST", f"/api/qa/calls/{MINE}/rules/greeting/verdict", {"action": "maybe"}, 400,
     "invalid_input"),
    ("POST", f"/api/qa/calls/{MINE}/rules/greeting/verdict", {"action": "confirm", "x": 1},
     400, "invalid_input"),
    ("POST", f"/api/qa/calls/{MINE}/rules/greeting/verdict", {"action": "confirm",
                                                              "comment": "a\x00b"},
     400, "invalid_input"),
    ("POST", f"/api/qa/calls/{MINE}/rules/no_rule/verdict", {"action": "confirm"}, 404,
     "qa.unknown_rule"),
    ("POST", "/api/qa/calls/nope/rules/greeting/verdict", {"action": "confirm"}, 404,
     "not_found"),
    ("POST", "/api/qa/appeals/99999/decision", {"upheld": True, "comment": "x"}, 404,
     "qa.no_appeal"),
    ("POST", "/api/qa/appeals/abc/decision", {"upheld": True, "comment": "x"}, 404,
     "qa.no_appeal"),
    ("POST", "/api/qa/appeals/1/decision", {"upheld": "yes", "comment": "x"}, 400,
     "invalid_input"),
    ("GET", "/api/qa/calls?min_score=101", None, 400, "invalid_input"),
    ("GET", "/api/qa/calls?rule=nothing", None, 400, "invalid_input"),
    ("GET", "/api/qa/calls?since=yesterday", None, 400, "invalid_input"),
    ("GET", "/api/qa/scorecards?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", None,
     400, "invalid_input"),
    ("GET", "/api/qa/queue?days=0", None, 400, "invalid_input"),
])
async def test_bad_input_is_a_clear_4xx(site: Site, method: str, path: str,
                                        body: Any, status: int, error: str) -> None:
    async with signed_in(site.server, "qa1") as qa:
        kwargs = {"json": body} if body is not None else {}
        await _refused(await qa.request(method, path, **kwargs), status, error)


async def test_dates_without_a_zone_are_utc(site: Site) -> None:
    async with signed_in(site.server, "qa1") as qa:
        listed = await _ok(await qa.get("/api/qa/calls?since=2000-01-01&until=2100-01-01"))
        assert len(listed["items"]) == 2
        cards = await _ok(await qa.get("/api/qa/scorecards?since=2000-01-01"))
        assert {a["agent_id"] for a in cards["agents"]} == {"a1", "a2"}
        await _ok(await qa.get("/api/qa/agreement?since=2000-01-01T08:00:00"))


@pytest.mark.parametrize(("path", "status"), [
    ("/qa/scorecards?since=2026-01-01T08:00&until=2026-12-01", 200),
    ("/qa?since=2026-01-01T08:00", 200),
    ("/qa/scorecards?since=x", 400),
    ("/qa?since=bad", 400),
    ("/qa?min_score=abc", 400),
    ("/qa/scorecards?since=2026-12-01&until=2026-01-01", 400),
])
async def test_the_pages_answer_bad_filters_with_a_400(site: Site, path: str, status: int) -> None:
    async with signed_in(site.server, "qa1") as qa:
        assert (await qa.get(path)).status == status


async def test_malformed_json_is_a_400(site: Site) -> None:
    async with signed_in(site.server, "qa1") as qa:
        resp = await qa.post(f"/api/qa/calls/{MINE}/rules/greeting/verdict", data=b"{no",
                             headers={"Content-Type": "application/json"})
        await _refused(resp, 400, "bad_json")


async def test_the_openapi_document_lists_the_qa_routes(site: Site) -> None:
    async with signed_in(site.server, "qa1") as qa:
        doc = await _ok(await qa.get("/api/openapi.json"))
    paths = doc["paths"]
    assert "/api/qa/calls/{call_id}/rules/{rule_id}/verdict" in paths
    assert "/api/qa/appeals/{appeal_id}/decision" in paths
