"""An agent works a real SIP call in the browser: signs in, logs in to the queues,
gets the screen pop while the browser softphone rings, answers in the browser,
talks (Chromium's fake microphone plays the scenario's agent WAV), hangs up in
the browser, wraps up and saves the pre-filled ticket; both legs are
recorded and transcribed. Headless Chromium through Playwright; a screenshot of
each step in var/test-artifacts/console/. No desk phone: the distributor rings
the agent's WebRTC endpoint (<user>-web, over wss) because it is registered.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Page, expect

from callcenter import residents
from callcenter.ari.client import AriClient
from callcenter.db.connect import create_pool
from callcenter.db.store import PgStore
from callcenter.sandbox.asterisk import AsteriskSandbox
from callcenter.sandbox.simulator import menu_keys
from callcenter.sandbox.sipp import SippLab
from callcenter.settings import Settings
from callcenter.sip.provision import add_agent
from callcenter.web.app import POOL, STORE
from tests.e2e.browser import artifacts, chromium
from tests.e2e.conftest import endpoint_state, eventually, provisioned, running_service
from tests.web_support import PASSWORD, add_user

pytestmark = [pytest.mark.e2e]

HOTLINE_NUMBER = "4008001234"
SCENARIO = "d007"  # the caller keys 1 (repair)
SKILLS = ["repair", "complaint", "consultation", "general"]


@pytest.fixture
def settings(sandbox_settings: Callable[..., Settings]) -> Settings:
    return sandbox_settings(wrap_up_s=120, ring_timeout_s=15)


@pytest.fixture
async def ari(settings: Settings) -> AsyncIterator[AriClient]:
    async with AriClient.from_settings(settings) as client:
        yield client


async def _prepare(settings: Settings, agent_id: str, username: str,
                   caller_number: str) -> tuple[str, str]:
    """The agent with a SIP account and a web user, the caller in the directory."""
    pool = await create_pool(settings.database_url or "", max_size=2)
    try:
        added = await add_agent(PgStore(pool), settings, agent_id, name="周", skills=SKILLS)
        await add_user(pool, username, "agent", agent_id=agent_id)
        rows, _ = residents.parse_csv("phone,name,building,unit,room,vip\n"
                                      f"{caller_number},赵阿姨,3,2,501,elderly\n")
        await residents.upsert(pool, rows, by="test")
    finally:
        await pool.close()
    assert added.credentials is not None
    return added.credentials.username, added.credentials.password


async def _shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def test_an_agent_works_a_call_in_the_console(
    asterisk_sandbox: AsteriskSandbox, settings: Settings, ari: AriClient, shared_dir: Path
) -> None:
    shots = artifacts("console")
    scenario = shared_dir / "scenarios" / "dev" / SCENARIO
    caller_number = f"139{random.randrange(10**8):08d}"
    agent_id = f"web{random.randrange(10**6):06d}"
    username = f"zhou{agent_id[3:]}"
    sip_user, _password = await _prepare(settings, agent_id, username, caller_number)
    base = f"http://127.0.0.1:{settings.web_port}"
    hold_s = 90.0  # the caller would stay this long: the agent ends the call first
    microphone = scenario / "agent.wav"  # 16-bit PCM: Chromium loops it as the microphone
    async with running_service(settings, workers=1) as app, SippLab(asterisk_sandbox) as lab, \
            chromium("--ignore-certificate-errors",  # Asterisk's self-signed wss
                     "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={microphone}",
                     "--autoplay-policy=no-user-gesture-required") as browser:
        pool: asyncpg.Pool = app[POOL]
        await eventually(lambda: provisioned(ari, sip_user), 15, "the SIP account in Asterisk")
        page = await browser.new_page(locale="zh-CN", viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        # Sign in: an agent lands on the console.
        await page.goto(f"{base}/login")
        await _shot(page, shots, "01-sign-in")
        await page.fill("input[name=username]", username)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/console")
        await expect(page.locator("#state")).to_have_attribute("data-state", "available")
        # The browser softphone registers the agent's WebRTC endpoint.
        await expect(page.locator("#phone-state")).to_have_attribute(
            "data-phone", "registered", timeout=15_000)
        # Asterisk answers the REGISTER before it updates the endpoint's state (the
        # contact is added, then the state changes on the endpoint's serializer): the
        # browser can say "registered" while ARI still reads "offline" for a moment.
        async def web_endpoint_online() -> bool:
            return await endpoint_state(ari, f"{sip_user}-web") == "online"

        await eventually(web_endpoint_online, 10, "the WebRTC endpoint online in Asterisk")
        await _shot(page, shots, "02-console")  # `agents add` logged the agent in

        # Out of the queues, and in again.
        await page.click("button[data-action=logout]")
        await expect(page.locator("#state")).to_have_attribute("data-state", "logged_out")
        await expect(page.locator("#state")).to_have_text("已签出")
        # Live updates change the queue rows in place: a button replaced while the agent
        # clicks it would swallow the click (the state change below re-renders them).
        repair = page.locator("tr[data-queue=repair]")
        await repair.locator("button").evaluate("button => { button.dataset.kept = 'yes'; }")
        await page.click("button[data-action=login]")
        await expect(page.locator("#state")).to_have_attribute("data-state", "available")
        await expect(repair.locator("button")).to_have_attribute("data-kept", "yes")
        # Out of the repair queue, and into it again (a queue of their own choosing).
        await repair.locator("button[data-queue-action=leave]").click()
        await expect(repair).to_have_attribute("data-in", "false")
        await repair.locator("button[data-queue-action=join]").click()
        await expect(repair).to_have_attribute("data-in", "true")
        await expect(page.locator("#state")).to_have_attribute("data-state", "available")
        await expect(page.locator("#state")).to_have_text("空闲")
        await _shot(page, shots, "03-available")

        # A real SIP caller keys 1: the screen pop comes while the softphone rings.
        caller = await lab.call(HOTLINE_NUMBER, caller=caller_number,
                                audio=scenario / "caller.wav", digits=menu_keys("1"), hold_s=hold_s)
        await expect(page.locator("#state")).to_have_attribute("data-state", "ringing",
                                                               timeout=30_000)
        await expect(page.locator("#pop-number")).to_have_text(caller_number)
        shown_at = time.time()
        await expect(page.locator("#pop-resident")).to_contain_text("赵阿姨")
        await expect(page.locator("#pop-vip")).to_have_text("独居老人")
        await expect(page.locator("#pop-choice")).to_contain_text("报修")
        await expect(page.locator("#phone-state")).to_have_attribute("data-phone", "incoming")
        await _shot(page, shots, "04-screen-pop-ringing")
        call = await pool.fetchrow("SELECT * FROM calls WHERE caller_number = $1", caller_number)
        assert call is not None and call["ringing_at"] is not None
        print(f"screen pop shown {shown_at - call['ringing_at'].timestamp():.2f} s after "
              "the ACD rang the phone")

        # The agent answers in the browser; they talk; the caller hangs up.
        await page.click("#phone-answer")
        await expect(page.locator("#state")).to_have_attribute("data-state", "on_call",
                                                               timeout=15_000)
        await expect(page.locator("#phone-state")).to_have_attribute("data-phone", "connected")
        await _shot(page, shots, "05-talking")
        agent_leg = settings.recordings / call["id"] / "agent.wav"

        async def talked() -> bool:  # ten seconds of the agent's voice (8 kHz, 16 bit)
            return agent_leg.is_file() and agent_leg.stat().st_size > 44 + 10 * 8000 * 2

        await eventually(talked, 40, "ten seconds of the conversation on the recording")
        await page.click("#phone-hangup")  # the agent hangs up in the browser
        assert await caller.wait(60) == 0, caller.log_tail()

        # Wrap-up: the form starts from the IVR choice and the directory.
        await expect(page.locator("#state")).to_have_attribute("data-state", "wrap_up",
                                                               timeout=15_000)
        await expect(page.locator("#phone-state")).to_have_attribute("data-phone", "registered")
        form = page.locator("#wrap-form")
        await expect(page.locator("#wrap")).to_be_visible()
        await expect(form.locator("input[name=building]")).to_have_value("3")
        await expect(form.locator("input[name=caller_name]")).to_have_value("赵阿姨")
        await expect(form.locator("select[name=category]")).to_have_value("engineering")
        await expect(form.locator("select[name=urgency]")).to_have_value("P2")  # VIP raised
        await expect(page.locator("#wrap-left")).to_contain_text("剩余")
        await form.locator("select[name=disposition]").select_option("ticket")
        await form.locator("textarea[name=description]").fill("厨房水管漏水，已安排维修")
        await _shot(page, shots, "06-wrap-up")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#wrap-result")).to_contain_text("已保存")
        await expect(page.locator("#state")).to_have_attribute("data-state", "available")
        await _shot(page, shots, "07-saved-and-available")
        assert not errors, errors

        row = await pool.fetchrow(
            "SELECT c.id, c.disposition, c.hangup_by, t.number, t.human FROM calls c"
            " JOIN tickets t ON t.call_id = c.id WHERE c.caller_number = $1", caller_number)
        assert row is not None and row["disposition"] == "ticket"
        assert row["hangup_by"] == "agent"
        assert row["human"]["description"] == "厨房水管漏水，已安排维修"

        # Both legs recorded and transcribed; the analysis leaves the agent's values.
        async def processed() -> bool:
            status = await pool.fetchval("SELECT status FROM calls WHERE id = $1", row["id"])
            assert status != "failed"
            return status == "processed"

        await eventually(processed, 180, "the call to be transcribed and analysed")
        words = {r["leg"]: r["n"] for r in await pool.fetch(
            "SELECT leg, sum(length(text)) AS n FROM transcript_segments WHERE call_id = $1"
            " GROUP BY leg", row["id"])}
        assert set(words) == {"caller", "agent"}, words  # the browser's microphone was heard
        print(f"transcribed characters per leg: {words}")
        ticket = await pool.fetchrow("SELECT human FROM tickets WHERE call_id = $1", row["id"])
        assert ticket["human"]["description"] == "厨房水管漏水，已安排维修"
        await page.goto(f"{base}/")
        await _shot(page, shots, "08-my-calls")
        assert await app[STORE].remove_agent(agent_id)
