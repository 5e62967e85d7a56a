"""Whole calls through the real sandboxed Asterisk, the real service (FastAGI,
ARI routing, worker with Vosk) and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from callcenter.demo import place_scenario_call
from callcenter.qa.engine import RULE_IDS
from callcenter.sandbox.asterisk import AsteriskSandbox
from callcenter.sandbox.simulator import AriParams, menu_keys, place_call
from callcenter.settings import Settings
from callcenter.web.app import POOL, SETTINGS, STORE
from tests.e2e.conftest import eventually, free_port, running_service
from tests.web_support import signed_in_at

# Repair, then "other repairs", then "#" skips the description; SendDTMF pauses.
REPAIR_KEYS = menu_keys("1", pause="ww")

pytestmark = [pytest.mark.e2e, pytest.mark.asr]

SCENARIO = "d007"  # the shortest dev call (78 s), IVR key 1



@pytest.fixture
def service_settings(
    asterisk_sandbox: AsteriskSandbox, db_dsn: str, tmp_path: Path, shared_dir: Path
) -> Settings:
    return Settings(
        database_url=db_dsn, data_dir=tmp_path, recordings_dir=asterisk_sandbox.recordings_dir,
        shared_dir=shared_dir, web_port=free_port(), wrap_up_s=0, ring_timeout_s=6,
    )



@pytest.fixture
async def service(service_settings: Settings) -> AsyncIterator[web.Application]:
    async with running_service(service_settings) as app:
        yield app


async def _agent(app: web.Application, number: str) -> None:
    await app[STORE].upsert_agent(
        f"agent{number}", name=f"agent {number}", endpoint=f"Local/{number}@sim-agents/n",
        skills=["repair", "complaint", "consultation", "general"],
    )


async def _call_on(pool: asyncpg.Pool, channel_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM calls WHERE channel_id = $1", channel_id)


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_a_call_becomes_recordings_transcript_ticket_and_qa(
    service: web.Application, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    pool = service[POOL]
    await _agent(service, "1001")
    settings = service[SETTINGS]
    channel = await place_scenario_call(settings, SCENARIO)

    async def processed() -> asyncpg.Record | None:
        row = await _call_on(pool, channel)
        return row if row and row["status"] in ("processed", "failed") else None

    async def where() -> str:
        row = await _call_on(pool, channel)
        call = {k: row[k] for k in ("status", "stage", "error")} if row else None
        jobs = [{k: v for k, v in r.items() if k != "payload"}
                for r in await pool.fetch("SELECT * FROM pgqueuer")]
        return f"call {call}, jobs {jobs}"

    call = await eventually(processed, 420, "the call to be processed", explain=where)
    assert call["status"] == "processed", call["error"]
    assert (call["stage"], call["hangup_by"], call["queue"], call["ivr_digits"]) == (
        "conversation", "caller", "repair", "12")
    assert call["agent_id"] == "agent1001"

    recordings = await pool.fetch("SELECT * FROM recordings WHERE call_id = $1", call["id"])
    assert sorted(r["leg"] for r in recordings) == ["agent", "caller"]
    talk = (call["ended_at"] - call["answered_at"]).total_seconds()
    for rec in recordings:
        path = settings.recordings / rec["path"]
        seconds = _wav_seconds(path)
        assert path.stat().st_size > 100_000
        # Asterisk runs with umask 027: the recording and its call's folder are not
        # readable by other users.
        for made in (path, path.parent):
            assert made.stat().st_mode & 0o007 == 0, (made, oct(made.stat().st_mode))
        assert abs(seconds - talk) < 3.0, (rec["leg"], seconds, talk)
        assert abs(seconds - 78.47) < 6.0, (rec["leg"], seconds)

    legs = {r["leg"]: r["n"] for r in await pool.fetch(
        "SELECT leg, count(*) AS n FROM transcript_segments WHERE call_id = $1 GROUP BY leg",
        call["id"])}
    assert legs.get("caller", 0) > 0 and legs.get("agent", 0) > 0
    words = await pool.fetchval(
        "SELECT words FROM transcript_segments WHERE call_id = $1 AND leg = 'agent'"
        " ORDER BY start_s LIMIT 1", call["id"])
    assert words and all(w["start"] <= w["end"] for w in words)

    ticket = await pool.fetchrow("SELECT * FROM tickets WHERE call_id = $1", call["id"])
    assert ticket is not None and ticket["category"] == "engineering"
    assert ticket["phone"] == "18761450923"
    qa = await pool.fetchrow("SELECT * FROM qa_results WHERE call_id = $1", call["id"])
    assert qa is not None and 0 <= qa["score"] <= 100
    assert await pool.fetchval(
        "SELECT count(*) FROM qa_rule_results WHERE call_id = $1", call["id"]) == len(RULE_IDS)
    agent = await pool.fetchrow("SELECT state FROM agents WHERE id = 'agent1001'")
    assert agent["state"] == "available"

    base = f"http://127.0.0.1:{settings.web_port}"
    async with signed_in_at(base, pool) as http:
        async with http.get(f"{base}/api/calls/{call['id']}") as resp:
            doc = await resp.json()
            assert resp.status == 200 and doc["ticket"]["number"] == ticket["number"]
        async with http.get(f"{base}/api/stats?hours=1") as resp:
            stats = await resp.json()
            assert (stats["calls_for_agent"], stats["answered"], stats["answer_rate"]) == (
                1, 1, 100.0)
            assert stats["asa"] is not None and stats["aht"] > 60
        async with http.get(f"{base}/recordings/{call['id']}/agent.wav",
                            headers={"Range": "bytes=0-99"}) as resp:
            assert resp.status == 206 and len(await resp.read()) == 100
    _no_errors_logged(caplog)


@pytest.mark.parametrize("stage", ["greeting", "menu", "queue", "ringing", "conversation"])
async def test_caller_hanging_up_at_each_stage_is_recorded(
    service: web.Application, caplog: pytest.LogCaptureFixture, stage: str, shared_dir: Path
) -> None:
    caplog.set_level(logging.WARNING)
    pool = service[POOL]
    if stage == "ringing":
        await _agent(service, "9999")  # rings forever
    elif stage == "conversation":
        await _agent(service, "1001")
    folder = shared_dir / "scenarios" / "dev" / SCENARIO
    sim = await place_call(
        AriParams(), number="12345", caller_phone="13800000000",
        caller_audio=folder / "caller.wav", agent_audio=folder / "agent.wav",
        digits="" if stage in ("greeting", "menu") else REPAIR_KEYS, menu_wait_s=1.0,
        shared_dir=shared_dir,
    )
    channel = f"{sim}-pbx"

    async def reached() -> bool:
        row = await _call_on(pool, channel)
        return bool(row and row["stage"] == stage)

    await eventually(reached, 60, f"stage {stage}")
    if stage == "conversation":
        await asyncio.sleep(3)
    await _hang_up(sim)

    async def ended() -> asyncpg.Record | None:
        row = await _call_on(pool, channel)
        return row if row and row["status"] != "active" else None

    call = await eventually(ended, 30, "the call to end")
    assert call["stage"] == stage
    assert call["hangup_by"] == "caller"
    await asyncio.sleep(1)  # let late events (agent hang-up, recordings) settle
    assert not await pool.fetchval(
        "SELECT count(*) FROM agents WHERE state NOT IN ('available', 'wrap_up')")
    _no_errors_logged(caplog)


async def _hang_up(sim_channel: str) -> None:
    auth = {"Authorization": aiohttp.encode_basic_auth("callcenter", "callcenter")}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.delete(f"http://127.0.0.1:8088/ari/channels/{sim_channel}") as resp:
            assert resp.status in (204, 404)


async def test_a_waiting_caller_survives_a_restart_of_the_service(
    service_settings: Settings, shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Stop the service while a caller waits in the queue; the restarted service
    reconciles with Asterisk, re-queues the caller and connects an agent."""
    caplog.set_level(logging.WARNING)
    folder = shared_dir / "scenarios" / "dev" / SCENARIO
    async with running_service(service_settings) as first:
        sim = await place_call(
            AriParams(), number="12345", caller_phone="13800000001",
            caller_audio=folder / "caller.wav", agent_audio=folder / "agent.wav",
            digits=REPAIR_KEYS, menu_wait_s=1.0, shared_dir=shared_dir,
        )
        pool = first[POOL]

        async def queued() -> bool:
            row = await _call_on(pool, f"{sim}-pbx")
            return bool(row and row["stage"] == "queue")

        await eventually(queued, 60, "the caller to wait in the queue")

    async with running_service(service_settings) as second:
        await _agent(second, "1001")
        pool = second[POOL]

        async def talking() -> bool:
            row = await _call_on(pool, f"{sim}-pbx")
            return bool(row and row["stage"] == "conversation")

        await eventually(talking, 60, "the re-queued caller to reach an agent")
        await asyncio.sleep(4)
        await _hang_up(sim)

        async def processed() -> asyncpg.Record | None:
            row = await _call_on(pool, f"{sim}-pbx")
            return row if row and row["status"] in ("processed", "failed") else None

        call = await eventually(processed, 120, "the call to be processed")
        assert (call["status"], call["stage"], call["hangup_by"]) == (
            "processed", "conversation", "caller")
        assert await pool.fetchval(
            "SELECT count(*) FROM recordings WHERE call_id = $1", call["id"]) == 2
        assert await pool.fetchval(
            "SELECT count(*) FROM tickets WHERE call_id = $1", call["id"]) == 1
    _no_errors_logged(caplog)


async def test_a_restart_of_asterisk_mid_call_loses_no_call_or_ticket(
    service: web.Application, asterisk_sandbox: AsteriskSandbox, shared_dir: Path
) -> None:
    """Asterisk goes away mid-conversation: the routing app reconnects, reconciles,
    finishes the call it can no longer see, and the worker still opens its ticket."""
    pool = service[POOL]
    await _agent(service, "1001")
    folder = shared_dir / "scenarios" / "dev" / SCENARIO
    sim = await place_call(
        AriParams(), number="12345", caller_phone="13800000002",
        caller_audio=folder / "caller.wav", agent_audio=folder / "agent.wav",
        digits=REPAIR_KEYS, menu_wait_s=1.0, shared_dir=shared_dir,
    )

    async def talking() -> bool:
        row = await _call_on(pool, f"{sim}-pbx")
        return bool(row and row["stage"] == "conversation")

    await eventually(talking, 60, "the conversation")
    await asyncio.sleep(5)
    await asyncio.to_thread(asterisk_sandbox.stop)
    await asyncio.to_thread(asterisk_sandbox.start)

    async def settled() -> asyncpg.Record | None:
        row = await _call_on(pool, f"{sim}-pbx")
        return row if row and row["status"] in ("processed", "failed") else None

    call = await eventually(settled, 120, "the call to be settled after the restart")
    assert call["stage"] == "conversation"
    assert call["status"] == "processed", call["error"]
    assert await pool.fetchval(
        "SELECT count(*) FROM tickets WHERE call_id = $1", call["id"]) == 1
    agent = await pool.fetchval("SELECT state FROM agents WHERE id = 'agent1001'")
    assert agent in ("available", "wrap_up")

    # New calls are routed as before: the restarted Asterisk gets the next caller to 1001.
    speech = sorted((shared_dir / "realspeech" / "wav8k").glob("*.wav"))
    after = await place_call(
        AriParams(), number="12345", caller_phone="13800000003", caller_audio=speech[0],
        agent_audio=speech[1], digits=REPAIR_KEYS, menu_wait_s=1.0, shared_dir=shared_dir,
    )

    async def answered() -> bool:
        row = await _call_on(pool, f"{after}-pbx")
        return bool(row and row["answered_at"] and row["agent_id"] == "agent1001")

    await eventually(answered, 60, "a new call after the restart to be answered")
    await _hang_up(after)  # leave Asterisk without calls for the next test

    async def ended() -> bool:
        row = await _call_on(pool, f"{after}-pbx")
        return bool(row and row["status"] != "active")

    await eventually(ended, 30, "the new call to end")
