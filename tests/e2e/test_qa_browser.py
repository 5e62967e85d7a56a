"""A QA reviewer's day in the browser, then the agent's appeal: the reviewer opens
a scored call from the review queue, plays a leg, clicks a piece of evidence and
the player's current time moves there, overturns a rule with a comment and sees
the score change; the agent signs in, sees the call among their own results and
appeals a failed rule; the reviewer upholds the appeal; the scorecards show it.
Headless Chromium through Playwright; a screenshot of each page in
var/test-artifacts/qa/.

Only the web and PostgreSQL are needed (no Asterisk): the call is stored as the
worker would store it (both legs' recordings, the transcript, the QA result).
"""

from __future__ import annotations

import math
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, Page, expect

from callcenter.core import CallFacts, Segment, Timeline
from callcenter.db.store import LegCheck, PgStore
from callcenter.qa.engine import score
from callcenter.settings import Settings
from callcenter.web.app import create_app
from tests.e2e.browser import artifacts, chromium
from tests.web_support import PASSWORD, add_user, running

pytestmark = [pytest.mark.e2e]

CALL = "qa0000000000000000000000000001"
REVIEWER, AGENT = "liqa", "wanggong"
LENGTH_S = 24.0
# The agent says 你 (polite_address), never reads the address back (confirmation).
TURNS = [
    ("agent", 0.5, 4.0, "您好，物业客服中心，我姓王，请问有什么可以帮您？"),
    ("caller", 4.5, 9.0, "你好，我家厨房水管漏水了，三号楼二单元502。"),
    ("agent", 9.5, 14.0, "好的，请你稍等，我们马上派师傅过去。"),
    ("caller", 14.5, 16.0, "好的谢谢。"),
    ("agent", 16.5, 19.0, "感谢您的来电，再见。"),
]


@pytest.fixture(autouse=True)
def no_calls_left_over() -> None:
    """No Asterisk here: the e2e layer's clean-up of left-over calls is not needed."""


def _leg_wav(path: Path, leg: str) -> None:
    """A leg as Asterisk records it (8 kHz mono PCM): a tone while that leg speaks."""
    rate = 8000
    samples = bytearray()
    for i in range(int(LENGTH_S * rate)):
        t = i / rate
        talking = any(who == leg and a <= t < b for who, a, b, _ in TURNS)
        value = int(6000 * math.sin(2 * math.pi * 440 * t)) if talking else 0
        samples += struct.pack("<h", value)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(bytes(samples))


async def _seed(pool: asyncpg.Pool, recordings: Path) -> None:
    store = PgStore(pool)
    await store.upsert_agent("a7", name="王工", endpoint="PJSIP/a7", skills=["repair"])
    await store.open_call(CALL, caller_number="13900000007", channel_id=CALL)
    await store.update_call(CALL, stage="conversation", agent_id="a7")
    for leg in ("caller", "agent"):
        await store.add_leg(CALL, leg, channel_id=None, recording_name=f"{CALL}/{leg}.wav")
        _leg_wav(recordings / CALL / f"{leg}.wav", leg)
        await store.save_recording_facts(CALL, leg, duration_s=LENGTH_S, sample_rate=8000,
                                         size_bytes=int(LENGTH_S * 16000))
    await store.finish_call(CALL, stage="conversation", hangup_by="caller")
    segments = [Segment(leg, a, b, text) for leg, a, b, text in TURNS]  # type: ignore[arg-type]
    qa = score(Timeline(segments, LENGTH_S), CallFacts(call_id=CALL, hangup_by="caller"),
               source="text", category="engineering")
    await store.save_analysis(CALL, segments=segments, ticket=None, qa=qa, qa_source="text",
                              legs_checked={"caller": LegCheck(0), "agent": LegCheck(0)})
    await add_user(pool, REVIEWER, "qa")
    await add_user(pool, AGENT, "agent", agent_id="a7")


@pytest.fixture
async def base_url(db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[str]:
    recordings = tmp_path / "rec"
    await _seed(db_pool, recordings)
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=recordings)
    async with running(create_app(settings, telephony=False, workers=0)) as server:
        yield str(server.make_url("")).rstrip("/")


async def _page_as(browser: Browser, base_url: str, user: str, then: str,
                   errors: list[str]) -> Page:
    context = await browser.new_context(locale="zh-CN",
                                        viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{base_url}/login?next={then}")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base_url}{then}")
    return page


async def _shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def test_review_evidence_playback_overturn_and_appeal(base_url: str) -> None:
    shots = artifacts("qa")
    errors: list[str] = []
    async with chromium("--autoplay-policy=no-user-gesture-required") as browser:
        # The review queue lists the scored call, with why.
        qa = await _page_as(browser, base_url, REVIEWER, "/qa", errors)
        row = qa.locator("#queue-calls tr", has_text=CALL[:12])
        await expect(row).to_contain_text("a7")
        await expect(row).to_contain_text("低分")
        await _shot(qa, shots, "01-review-queue")

        # The call: both players, the timeline, the rules, the transcript marked.
        await row.locator("a").click()
        await qa.wait_for_url(f"{base_url}/qa/calls/{CALL}")
        before = float(await qa.locator("#score-final").inner_text())
        polite = qa.locator("#rule-polite_address")
        await expect(polite.locator("td.final")).to_have_text("未通过")
        await expect(qa.locator("#transcript mark.violation[title*=称呼]")).to_have_text("你")
        await expect(qa.locator("#timeline .marker-fail").first).to_be_attached()
        agent_audio = qa.locator("#audio-agent")
        await expect(agent_audio).to_have_attribute("src", f"/recordings/{CALL}/agent.wav")
        await qa.wait_for_function(
            "() => document.getElementById('audio-agent').readyState >= 1")
        await _shot(qa, shots, "02-call")

        # Evidence: the player jumps to the word and plays it.
        evidence = polite.locator("button.ev").first
        start = float(await evidence.get_attribute("data-start") or "nan")
        assert 9.5 <= start < 14.0
        await evidence.click()
        await qa.wait_for_function(
            "start => { const a = document.getElementById('audio-agent');"
            " return a.currentTime >= start - 0.05 && a.currentTime < start + 3; }",
            arg=start)
        await _shot(qa, shots, "03-evidence-played")

        # Overturn with a comment: the final score changes, the machine's stays.
        form = polite.locator("form.verdict-form")
        await form.locator("select[name=action]").select_option("overturn")
        await form.locator("input[name=comment]").fill("你是对同事说的，不是对业主")
        async with qa.expect_navigation():
            await form.locator("button[type=submit]").click()
        polite = qa.locator("#rule-polite_address")
        await expect(polite.locator("td.final")).to_have_text("通过")
        await expect(polite).to_contain_text("你是对同事说的")
        after = float(await qa.locator("#score-final").inner_text())
        assert after > before
        assert float(await qa.locator("#score-auto").inner_text()) == before
        await expect(qa.locator("#history")).to_contain_text(REVIEWER)
        await _shot(qa, shots, "04-overturned")

        # The agent sees the call among their own results and appeals a failed rule.
        agent = await _page_as(browser, base_url, AGENT, "/qa", errors)
        await expect(agent.locator("#review-queue")).to_have_count(0)
        await agent.locator("#scored a", has_text=CALL[:12]).click()
        await agent.wait_for_url(f"{base_url}/qa/calls/{CALL}")
        confirmation = agent.locator("#rule-confirmation")
        await expect(confirmation.locator("td.final")).to_have_text("未通过")
        appeal = confirmation.locator("form.appeal-form")
        await appeal.locator("input[name=reason]").fill("地址我在派单时复述过，录音第15秒")
        async with agent.expect_navigation():
            await appeal.locator("button[type=submit]").click()
        await expect(agent.locator("#rule-confirmation")).to_contain_text("申诉处理中")
        await expect(agent.locator("#appeals")).to_contain_text("待处理")
        await _shot(agent, shots, "05-agent-appealed")

        # The reviewer upholds the appeal from the call page.
        await qa.goto(f"{base_url}/qa")
        await expect(qa.locator("#queue-appeals")).to_contain_text("地址我在派单时复述过")
        await _shot(qa, shots, "06-queue-with-appeal")
        await qa.goto(f"{base_url}/qa/calls/{CALL}")
        decision = qa.locator("form.decision-form")
        await decision.locator("input[name=comment]").fill("听录音确认已复述")
        async with qa.expect_navigation():
            await decision.locator("button[value=true]").click()
        await expect(qa.locator("#appeals")).to_contain_text("申诉成立")
        await expect(qa.locator("#rule-confirmation td.final")).to_have_text("通过")
        assert float(await qa.locator("#score-final").inner_text()) > after
        await _shot(qa, shots, "07-appeal-upheld")

        await qa.goto(f"{base_url}/qa/scorecards")
        await expect(qa.locator("#scorecards")).to_contain_text("a7")
        polite_row = qa.locator("#agreement tr", has_text="称呼")
        await expect(polite_row).to_contain_text("0%")  # overturned: no agreement
        await _shot(qa, shots, "08-scorecards")
    assert not errors, errors
