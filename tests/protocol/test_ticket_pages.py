"""The ticket pages over real HTTP on a real database, as each role: the list
(filters in the URL, paging, overdue marks, the new-ticket form for those who
may open tickets) and one ticket (its values, corrections beside the automatic
values, judgement, clocks, history, and only the actions of its status and the
person's role); a ticket someone may not see is "not found"."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from callcenter.core import Ticket
from callcenter.db.store import PgStore
from callcenter.settings import Settings
from callcenter.tickets.service import TicketService
from callcenter.web.app import create_app
from tests.web_support import (
    Browser,
    answered_calls_and_staff,
    browser,
    running,
    signed_in,
)

MINE, THEIRS = "ca11000000000001", "ca11000000000002"  # answered by agents a1 and a2
USERS = {"agent": "ag1", "qa": "qa1", "supervisor": "sup1", "admin": "adm1"}
HTML = {"Accept": "text/html"}


@dataclass
class Site:
    server: TestServer
    pool: asyncpg.Pool
    mine: str  # the ticket of the call agent a1 (ag1) answered: a complaint
    theirs: str  # the ticket of a2's call
    late: str  # a P2 walk-in opened three hours ago by sup1


@pytest.fixture
async def site(db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Site]:
    store = PgStore(db_pool)
    await answered_calls_and_staff(db_pool, {MINE: "a1", THEIRS: "a2"})
    mine = await store.save_analysis(MINE, segments=[], qa=None, qa_source="asr", ticket=Ticket(
        "complaint", "P3", "保安态度很差 <b>x</b>", phone="13800000000", building="3",
        complaint_severity="important", repeat_complaint=True, needs_confirmation=["urgency"],
        evidence={"urgency": ["态度", "IVR key 3"]}, complaint={"whom": "保安"}))
    theirs = await store.save_analysis(THEIRS, segments=[], qa=None, qa_source="asr",
                                       ticket=Ticket("engineering", "P3", "厨房水管漏水"))
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    late = await TicketService(db_pool, now=lambda: three_hours_ago).create(
        Ticket("engineering", "P2", "整栋楼停水", channel="walk_in", building="7"),
        by="sup1", role="supervisor")
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path)
    async with running(create_app(settings, telephony=False, workers=0)) as server:
        yield Site(server, db_pool, str(mine), str(theirs), late)


async def _page(who: Browser, path: str, status: int = 200) -> str:
    resp = await who.get(path, headers=HTML, allow_redirects=False)
    text = await resp.text()
    assert resp.status == status, (path, resp.status, text[:500])
    return text


def _actions(html: str) -> set[str]:
    return set(re.findall(r'<form class="action[^"]*" data-action="([a-z]+)"', html))


def _assert_no_inline_code(html: str) -> None:
    """The CSP forbids inline scripts, styles and handlers: the pages have none."""
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\sstyle=|\son[a-z]+=|<style", html)


async def test_the_pages_render_for_each_role(site: Site) -> None:
    for role, username in USERS.items():
        async with signed_in(site.server, username) as who:
            listed = await _page(who, "/tickets")
            assert "<h1>工单</h1>" in listed and 'href="/tickets"' in listed  # the nav link
            assert site.mine in listed
            assert (site.theirs in listed) is (role != "agent")  # an agent: their own only
            assert ('id="new-ticket-form"' in listed) is (role != "qa")
            _assert_no_inline_code(listed)
            detail = await _page(who, f"/tickets/{site.mine}")
            assert f"工单 {site.mine}" in detail
            _assert_no_inline_code(detail)
            actions = _actions(detail)
            if role == "qa":
                assert not actions and "您的角色只能查看工单" in detail
                assert 'id="edit-form"' not in detail
            else:
                expected = {"dispatch", "note", "contacted", "upload", "edit"}
                if role != "agent":  # supervisors and admins: assign, and the alert to
                    expected |= {"assign", "acknowledge"}  # the supervisors is theirs
                assert actions == expected, (role, actions)


async def test_a_ticket_nobody_may_see_is_not_found(site: Site) -> None:
    async with signed_in(site.server, "ag1") as agent:
        page = await _page(agent, f"/tickets/{site.theirs}", 404)
        assert "没有找到" in page
        await _page(agent, f"/tickets/{site.late}", 404)  # sup1's walk-in
    async with signed_in(site.server, "sup1") as boss:
        await _page(boss, "/tickets/T20990101-000001", 404)
    async with browser(site.server) as anonymous:
        resp = await anonymous.get(f"/tickets/{site.mine}", headers=HTML, allow_redirects=False)
        assert resp.status == 303
        assert resp.headers["Location"] == f"/login?next=/tickets/{site.mine}"
        assert (await anonymous.get("/tickets")).status == 401


async def test_the_list_marks_overdue_tickets_and_keeps_filters_in_the_url(site: Site) -> None:
    async with signed_in(site.server, "sup1") as boss:
        listed = await _page(boss, "/tickets")
        row = _row(listed, site.late)
        assert 'data-overdue="true"' in row and 'class="late"' in row
        assert re.search(r'class="countdown late"[^>]*>已超时 (5[89]|60|61) 分钟<', row), row
        assert "urgency-P2" in row and "P2 影响基本生活" in row and "新建" in row
        assert "剩余" in _row(listed, site.mine)  # 24 h to go
        assert "紧急程度" in _row(listed, site.mine)  # to confirm
        overdue = await _page(boss, "/tickets?overdue=true&status=&q=")
        assert site.late in overdue and site.mine not in overdue
        assert '<option value="true" selected>' in overdue
        found = await _page(boss, "/tickets?q=%E5%81%9C%E6%B0%B4")  # 停水
        assert site.late in found and site.mine not in found
        assert 'value="停水"' in found
        assert site.theirs in await _page(boss, "/tickets?category=engineering&building=")
        bad = await _page(boss, "/tickets?urgency=P9&overdue=maybe", 400)
        assert "筛选条件无效：紧急程度、超时" in bad


async def test_the_list_pages_through_all_tickets(site: Site) -> None:
    async with signed_in(site.server, "sup1") as boss:
        seen: list[str] = []
        path: str | None = "/tickets?limit=1&category=engineering"
        while path:
            page = await _page(boss, path.replace("&amp;", "&"))
            seen += re.findall(r'<tr data-number="([^"]+)"', page)
            link = re.search(r'id="next-page" href="([^"]+)"', page)
            path = link.group(1) if link else None
            if path:
                assert "category=engineering" in path and "limit=1" in path
        assert seen == [site.late, site.theirs]
        # And back from the last page: the one before it, the same filters, no further.
        back = re.search(r'id="prev-page" href="([^"]+)"', page)
        assert back and "category=engineering" in back.group(1)
        first = await _page(boss, back.group(1).replace("&amp;", "&"))
        assert re.findall(r'<tr data-number="([^"]+)"', first) == [site.late]
        assert 'id="prev-page"' not in first and 'id="next-page"' in first


async def test_the_detail_shows_corrections_judgement_clocks_and_history(site: Site) -> None:
    async with signed_in(site.server, "sup1") as boss:
        resp = await boss.request("PATCH", f"/api/tickets/{site.mine}",
                                  json={"building": "5", "urgency": "P3"})
        assert resp.status == 200, await resp.text()
        page = await _page(boss, f"/tickets/{site.mine}")
    corrections = page.split('id="corrections"')[1].split("</table>")[0]
    assert re.search(r'data-field="building"><th>楼栋</th>\s*<td class="automatic">3</td>\s*'
                     r'<td class="human">5</td>\s*<td>sup1</td>', corrections), corrections
    assert "确认无误" in corrections  # urgency P3 confirmed as it was
    assert "需要人工确认" not in page and "系统不确定的判断已由人工确认" in page
    assert "<li>IVR key 3</li>" in page and "涉及人员" in page and "保安" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page  # escaped
    assert 'data-clock="contact"' in page and 'data-clock="closure"' in page
    assert "首次联系" in page and "剩余" in page
    history = page.split('id="history"')[1].split("</table>")[0]
    assert '<tr data-what="opened">' in history and "系统" in history
    assert re.search(r'sup1</td><td class="nowrap">班长</td>\s*<td class="nowrap">更正</td>',
                     history), history
    assert "更改：楼栋：3 → 5" in history
    assert "班长" in page.split('id="alerts"')[1]  # the complaint's alerts


async def test_the_actions_follow_the_status(site: Site) -> None:
    async with signed_in(site.server, "sup1") as boss:
        number = site.late
        for event, expected in (
                ({"type": "dispatch", "department": "engineering"},
                 {"dispatch", "start", "note", "contacted", "assign"}),
                ({"type": "start"}, {"dispatch", "resolve", "note", "contacted", "assign"}),
                ({"type": "resolve", "notes": "已恢复供水"},
                 {"callback", "close", "reopen", "note", "contacted", "assign"}),
                ({"type": "callback", "satisfaction": 5}, {"close", "reopen", "note",
                                                           "contacted", "assign"}),
                ({"type": "close"}, {"reopen", "note"})):
            resp = await boss.post(f"/api/tickets/{number}/events", json=event)
            assert resp.status == 200, await resp.text()
            page = await _page(boss, f"/tickets/{number}")
            assert _actions(page) - {"upload", "acknowledge", "edit"} == expected, event
            assert ("edit" in _actions(page)) is (event["type"] != "close")  # open only
        assert "已关闭" in page and "已恢复供水" in page and "工程部" in page


async def test_the_correct_or_confirm_form(site: Site) -> None:
    """Who may PATCH gets the form, pre-filled with the effective values, the
    fields to confirm marked, a "确认无误" button; QA does not."""
    for username in ("sup1", "ag1"):  # ag1: the agent who answered the call
        async with signed_in(site.server, username) as who:
            page = await _page(who, f"/tickets/{site.mine}")
        form = page.split('data-action="edit"')[1].split("</form>")[0]
        assert form.startswith(' data-confirm="urgency" id="edit-form"')
        assert re.search(r'<label data-field="urgency" class="to-confirm">\s*<span>紧急程度 '
                         r'<span class="confirm">待确认</span>', form), form
        assert '<label data-field="category">' in form  # sure of it: not marked
        assert '<option value="P3" selected>' in form and 'data-value="P3"' in form
        assert '<option value="complaint" selected>' in form
        assert '<option value="important" selected>' in form  # a complaint's severity
        assert 'name="building" maxlength="20" value="3" data-value="3"' in form
        assert "&lt;b&gt;x&lt;/b&gt;</textarea>" in form
        assert 'value="confirm"' in form and "确认无误" in form and "保存更正" in form
    async with signed_in(site.server, "sup1") as boss:
        resp = await boss.request("PATCH", f"/api/tickets/{site.mine}", json={"urgency": "P3"})
        assert resp.status == 200, await resp.text()
        form = (await _page(boss, f"/tickets/{site.mine}")).split('data-action="edit"')[1]
        form = form.split("</form>")[0]
        assert form.startswith(' data-confirm="" ') and "to-confirm" not in form  # confirmed
        assert 'value="confirm"' not in form
        late = (await _page(boss, f"/tickets/{site.late}")).split('data-action="edit"')[1]
        assert '<label data-field="complaint_severity" hidden>' in late  # no complaint
    async with signed_in(site.server, "qa1") as qa:
        assert 'id="edit-form"' not in await _page(qa, f"/tickets/{site.mine}")


def _row(html: str, number: str) -> str:
    return html.split(f'<tr data-number="{number}"')[1].split("</tr>")[0]


async def test_the_pages_in_english(site: Site) -> None:
    async with signed_in(site.server, "sup1") as boss:
        boss.session.cookie_jar.update_cookies({"cc_lang": "en"})
        listed = await _page(boss, "/tickets")
        assert "<h1>Tickets</h1>" in listed and "Overdue by" in _row(listed, site.late)
        detail = await _page(boss, f"/tickets/{site.late}")
        assert "Dispatch" in detail and "Deadlines" in detail and "Opened" in detail
