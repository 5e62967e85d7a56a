"""A supervisor works an overdue ticket in the browser: the list marks it overdue,
the detail page corrects its urgency (P2 → P1) in the correct / confirm form,
dispatches it to a department, starts the work, shows the API's
refusal of empty notes in words, and resolves it with notes and an uploaded
photo; status and history are checked on the page after each step; then a
walk-in ticket is opened from the list. Headless Chromium through Playwright; a
screenshot of each step in var/test-artifacts/tickets/.

Only the web and PostgreSQL are needed (no Asterisk): the service runs without
telephony, and the ticket is seeded three hours in the past through the ticket
service with its clock set back, then ticked by the SLA ticker at the real time.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Page, expect

from callcenter.core import Ticket
from callcenter.settings import Settings
from callcenter.tickets.service import TicketService
from callcenter.tickets.ticker import SlaTicker
from callcenter.web.app import create_app
from tests.e2e.browser import artifacts, chromium
from tests.web_support import PASSWORD, add_user, running

pytestmark = [pytest.mark.e2e]

SUPERVISOR = "zhangban"
FIX = "已更换七号楼总阀，恢复供水"


@pytest.fixture(autouse=True)
def no_calls_left_over() -> None:
    """The e2e layer hangs up Asterisk's left-over calls before each test; this test
    has no Asterisk, so it needs no sandbox (and no root)."""


@pytest.fixture
async def base_url(db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path)
    async with running(create_app(settings, telephony=False, workers=0)) as server:
        yield str(server.make_url("")).rstrip("/")


async def _seed(pool: asyncpg.Pool, dsn: str) -> str:
    """A P2 walk-in received three hours ago (its 2 h deadline passed an hour ago),
    a P3 received now beside it, and the SLA ticker's pass at the real time."""
    await add_user(pool, SUPERVISOR, "supervisor")
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    number = await TicketService(pool, now=lambda: three_hours_ago).create(
        Ticket("engineering", "P2", "七号楼整栋停水，家里一滴水都没有", channel="walk_in",
               caller_name="刘女士", phone="13900000002", building="7", unit="2",
               room="1102"), by=SUPERVISOR, role="supervisor")
    await TicketService(pool).create(
        Ticket("cleaning", "P3", "三号楼电梯厅有垃圾没人清理", channel="online", building="3"),
        by=SUPERVISOR, role="supervisor")
    assert await SlaTicker(TicketService(pool), dsn).tick_due() >= 1
    return number


def _png(width: int = 48, height: int = 32) -> bytes:
    """A small, real PNG (a red square)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    rows = b"".join(b"\x00" + bytes((200, 40, 40)) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


async def _sign_in(page: Page, base_url: str, then: str) -> None:
    """Sign in as the supervisor through the form and land on ``then``."""
    await page.goto(f"{base_url}/login?next={then}")
    await page.fill("input[name=username]", SUPERVISOR)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base_url}{then}")


async def _shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def _expect_status(page: Page, status: str, text: str) -> None:
    ticket = page.locator("#ticket")
    await expect(ticket).to_have_attribute("data-status", status)
    await expect(ticket.locator(".headline .status")).to_have_text(text)


async def _expect_history(page: Page, what: str, change: str, *details: str) -> None:
    row = page.locator(f"#history tr[data-what={what}]").last
    await expect(row).to_contain_text(change)
    await expect(row).to_contain_text(SUPERVISOR)
    await expect(row).to_contain_text("班长")
    for detail in details:
        await expect(row).to_contain_text(detail)


async def test_a_supervisor_works_an_overdue_ticket_in_the_browser(
    base_url: str, db_pool: asyncpg.Pool, db_dsn: str
) -> None:
    shots = artifacts("tickets")
    number = await _seed(db_pool, db_dsn)
    async with chromium() as browser:
        page = await browser.new_page(locale="zh-CN", viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        # Sign in; the list marks the ticket overdue, in red, counting.
        await _sign_in(page, base_url, "/tickets")
        row = page.locator(f"tr[data-number='{number}']")
        await expect(row).to_have_attribute("data-overdue", "true")
        late = row.locator(".countdown.late")
        await expect(late).to_have_text(re.compile(r"^已超时 (5[89]|6[01]) 分钟$"))
        await expect(row.locator(".urgency-P2")).to_have_text("P2 影响基本生活")
        await expect(row.locator(".status")).to_have_text("新建")
        await expect(page.locator("tr[data-overdue=false] .countdown")).to_have_text(
            re.compile(r"^剩余 23 小时 5\d 分$"))
        assert await late.evaluate("n => getComputedStyle(n).color") == "rgb(176, 0, 32)"
        await _shot(page, shots, "01-list")

        # The overdue filter, kept in the URL (empty filters left out).
        await page.select_option("#filters select[name=overdue]", "true")
        await page.click("#filters button[type=submit]")
        await page.wait_for_url(f"{base_url}/tickets?overdue=true")
        await expect(page.locator("#ticket-list tbody tr")).to_have_count(1)
        await expect(row).to_be_visible()
        await _shot(page, shots, "02-list-overdue-only")

        # The ticket: new, overdue, its alerts from the SLA tick.
        await row.locator("a").click()
        await page.wait_for_url(f"{base_url}/tickets/{number}")
        await _expect_status(page, "new", "新建")
        await expect(page.locator(".headline .late-tag")).to_have_text("已超时")
        await expect(page.locator("#clocks tr[data-clock=deadline] .countdown.late")).to_have_text(
            re.compile(r"^已超时 \d+ 分钟$"))
        await expect(page.locator("#alerts")).to_contain_text("班长")
        await expect(page.locator("#history tr[data-what=opened]")).to_contain_text("新建")
        await _shot(page, shots, "03-detail-new")

        # Correct the urgency (P2 → P1) in the form: the person's value beside the
        # automatic one, theirs in effect.
        edit = page.locator("#edit-form")
        await expect(edit.locator("label[data-field=complaint_severity]")).to_be_hidden()
        await edit.locator("select[name=urgency]").select_option("P1")
        await edit.locator("button[value=edit]").click()
        await expect(page.locator("#notice")).to_have_text("已更正。")
        corrected = page.locator("#corrections tr[data-field=urgency]")
        await expect(corrected.locator(".automatic")).to_have_text("P2 影响基本生活")
        await expect(corrected.locator(".human")).to_have_text("P1 人身安全")
        await expect(corrected).to_contain_text(SUPERVISOR)
        await expect(page.locator(".headline .urgency-P1")).to_have_text("P1 人身安全")
        await expect(edit.locator("select[name=urgency]")).to_have_value("P1")
        await expect(page.locator("#history tr[data-what=edited]")).to_contain_text(
            "紧急程度：P2 影响基本生活 → P1 人身安全")
        await _shot(page, shots, "03b-detail-urgency-corrected")

        # Dispatch to the engineers, with a named assignee.
        dispatch = page.locator("form[data-action=dispatch]")
        await dispatch.locator("select[name=department]").select_option("engineering")
        await dispatch.locator("input[name=assignee]").fill("王师傅")
        await dispatch.locator("button[type=submit]").click()
        await _expect_status(page, "dispatched", "已派单")
        await expect(page.locator("#notice")).to_have_text("已派单。")
        await expect(page.locator("#department")).to_have_text("工程部")
        await _expect_history(page, "dispatched", "新建 → 已派单", "工程部", "王师傅")
        await _shot(page, shots, "04-detail-dispatched")

        # Start the work.
        await page.locator("form[data-action=start] button[type=submit]").click()
        await _expect_status(page, "in_progress", "处理中")
        await _expect_history(page, "started", "已派单 → 处理中")
        await _shot(page, shots, "05-detail-in-progress")

        # Notes of blanks only: the lifecycle refuses; the page says why, in words.
        resolve = page.locator("form[data-action=resolve]")
        await resolve.locator("textarea[name=notes]").fill("   ")
        await resolve.locator("button[type=submit]").click()
        problem = resolve.locator(".problem")
        await expect(problem).to_be_visible()
        await expect(problem).to_contain_text("办结需要填写处理说明。")
        await expect(problem).to_contain_text("错误代码：ticket.notes_required（HTTP 422）")
        await _expect_status(page, "in_progress", "处理中")
        await _shot(page, shots, "06-detail-resolve-refused")

        # Resolve with notes and a photo uploaded from the form.
        await resolve.locator("textarea[name=notes]").fill(FIX)
        await resolve.locator("input[name=photos]").set_input_files(
            {"name": "现场照片.png", "mimeType": "image/png", "buffer": _png()})
        await resolve.locator("button[type=submit]").click()
        await _expect_status(page, "resolved", "已办结")
        await expect(page.locator("#resolution-notes")).to_have_text(FIX)
        await expect(page.locator("#attachments")).to_contain_text("现场照片.png")
        await _expect_history(page, "resolved", "处理中 → 已办结", FIX, "照片：1 个")
        await expect(page.locator("#history tr[data-what=attached]")).to_contain_text(
            "现场照片.png")
        await expect(page.locator("form[data-action=callback]")).to_be_visible()
        await _shot(page, shots, "07-detail-resolved")

        # Back in the list: resolved, no longer overdue (the call-back clock runs).
        await page.goto(f"{base_url}/tickets")
        await expect(row.locator(".status")).to_have_text("已办结")
        await expect(row).to_have_attribute("data-overdue", "false")
        await _shot(page, shots, "08-list-after")

        # A walk-in ticket from the list's form.
        await page.locator("#new-ticket summary").click()
        form = page.locator("#new-ticket-form")
        await form.locator("select[name=category]").select_option("landscaping")
        await form.locator("input[name=building]").fill("5")
        await form.locator("textarea[name=description]").fill("五号楼前草坪的喷灌坏了")
        await _shot(page, shots, "09-new-ticket-form")
        await form.locator("button[type=submit]").click()
        await page.wait_for_url(re.compile(r"/tickets/T\d{8}-\d{6}$"))
        await _expect_status(page, "new", "新建")
        await expect(page.locator("#fields")).to_contain_text("五号楼前草坪的喷灌坏了")
        await _shot(page, shots, "10-new-ticket")
        refused = "the server responded with a status of 422"  # the blank notes, above
        assert [e for e in errors if refused not in e] == [], errors

    row_db = await db_pool.fetchrow("SELECT id, status, department, assignee, photos,"
                                    " resolution_notes FROM tickets WHERE number = $1", number)
    assert (row_db["status"], row_db["department"], row_db["assignee"]) == (
        "resolved", "engineering", "王师傅")
    assert row_db["resolution_notes"] == FIX and len(row_db["photos"]) == 1
    whats = [r["what"] for r in await db_pool.fetch(
        "SELECT what FROM ticket_history WHERE ticket_id = $1 ORDER BY id", row_db["id"])]
    assert whats[0] == "opened"
    assert [w for w in whats if w in ("edited", "dispatched", "started", "attached",
                                      "resolved")] == [
        "edited", "dispatched", "started", "attached", "resolved"]


async def test_an_unsure_judgement_is_confirmed_as_is_in_the_browser(
    base_url: str, db_pool: asyncpg.Pool
) -> None:
    """A ticket whose category and urgency the classifier was unsure of: the page
    asks for them; 确认无误 stores the same values as the person's, with who."""
    shots = artifacts("tickets")
    await add_user(db_pool, SUPERVISOR, "supervisor")
    number = await TicketService(db_pool).create(
        Ticket("security", "P3", "小区东门的道闸不抬杆，车堵在门口", channel="online",
               building="1", needs_confirmation=["category", "urgency"]),
        by=SUPERVISOR, role="supervisor")
    async with chromium() as browser:
        page = await browser.new_page(locale="zh-CN", viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await _sign_in(page, base_url, f"/tickets/{number}")
        edit = page.locator("#edit-form")
        await expect(edit.locator("label.to-confirm")).to_have_count(2)
        await expect(page.locator(".confirm-line")).to_contain_text("类别")
        await _shot(page, shots, "05-detail-to-confirm")

        await edit.locator("button[value=confirm]").click()
        await expect(page.locator("#notice")).to_have_text("已确认。")
        for field in ("category", "urgency"):
            row = page.locator(f"#corrections tr[data-field={field}]")
            await expect(row.locator(".human")).to_contain_text("确认无误")
            await expect(row).to_contain_text(SUPERVISOR)
            decoration = await row.locator(".automatic").evaluate(
                "n => getComputedStyle(n).textDecorationLine")
            assert decoration == "none"  # confirmed as it was: not struck through
        await expect(page.locator(".confirm-line")).to_have_count(0)
        await expect(page.locator("text=系统不确定的判断已由人工确认。")).to_be_visible()
        await _shot(page, shots, "06-detail-confirmed")
        assert not errors, errors
