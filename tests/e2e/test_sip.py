"""Real SIP through the sandboxed Asterisk: agent phones (SIPp) registering with
the accounts `callcenter agents add` creates, and a caller (SIPp) on the
loopback trunk reaching one of them.

Tested through behaviour only (ARI endpoints, database rows, recording files),
not through the routing code, which may change under these tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from callcenter.ari.client import AriClient
from callcenter.db.connect import create_pool
from callcenter.db.store import PgStore
from callcenter.sandbox.asterisk import AsteriskSandbox
from callcenter.sandbox.simulator import menu_keys
from callcenter.sandbox.sipp import SippLab
from callcenter.settings import Settings
from callcenter.sip.accounts import digest_ha1
from callcenter.sip.provision import add_agent, run_provisioner
from callcenter.web.app import POOL, STORE
from tests.e2e.conftest import (
    endpoint_state,
    eventually,
    provisioned,
    running_service,
)

pytestmark = [pytest.mark.e2e]

SKILLS = ["repair", "complaint", "consultation", "general"]
HOTLINE_NUMBER = "4008001234"
SCENARIO = "d007"  # caller keys 1 (repair)



@pytest.fixture
def settings(sandbox_settings: Callable[..., Settings]) -> Settings:
    return sandbox_settings(ring_timeout_s=10)


@pytest.fixture
async def ari(settings: Settings) -> AsyncIterator[AriClient]:
    async with AriClient.from_settings(settings) as client:
        yield client


@contextlib.asynccontextmanager
async def provisioner(pool: asyncpg.Pool, ari: AriClient) -> AsyncIterator[asyncio.Event]:
    """run_provisioner as the service runs it; yields its `synced` event."""
    synced = asyncio.Event()
    task = asyncio.create_task(run_provisioner(pool, ari, synced=synced))
    try:
        await eventually(_is_set(synced, task), 30, "the first account sync")
        yield synced
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _is_set(event: asyncio.Event, task: asyncio.Task[None]) -> Any:
    async def check() -> bool:
        if task.done():
            task.result()  # raise what ended it
        return event.is_set()

    return check


def _agent_id() -> str:
    return f"7{random.randrange(100, 1000)}"


async def test_an_added_agent_registers_with_the_printed_credentials(
    asterisk_sandbox: AsteriskSandbox, settings: Settings, db_dsn: str, ari: AriClient
) -> None:
    pool = await create_pool(db_dsn, max_size=4)
    store = PgStore(pool)
    try:
        async with provisioner(pool, ari), SippLab(asterisk_sandbox) as lab:
            agent_id = _agent_id()
            added = await add_agent(store, settings, agent_id, name="周 SIP", skills=SKILLS)
            sip = added.credentials
            assert sip is not None and added.endpoint == f"PJSIP/{agent_id}"
            assert (sip.username, sip.server) == (agent_id, "127.0.0.1:5060")
            row = await pool.fetchrow("SELECT * FROM sip_accounts WHERE agent_id = $1", agent_id)
            assert row["ha1"] == digest_ha1(sip.username, "callcenter", sip.password)
            assert sip.password not in {str(v) for v in row.values()}

            await eventually(lambda: provisioned(ari, agent_id), 15, "the endpoint in Asterisk")
            assert await lab.register_refused(agent_id, sip.password + "x")
            assert await endpoint_state(ari, agent_id) == "offline"

            phones = await lab.agents([(sip.username, sip.password)])

            async def online() -> bool:
                assert phones.running, phones.log_tail()
                return await endpoint_state(ari, agent_id) == "online"

            await eventually(online, 15, "the phone to register")

            assert await store.remove_agent(agent_id)

            async def gone() -> bool:
                return not await provisioned(ari, agent_id)

            await eventually(gone, 15, "the removed agent's endpoint to be deleted")
    finally:
        await pool.close()



def _wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


async def test_a_sip_caller_keys_1_and_talks_to_a_sip_agent(
    asterisk_sandbox: AsteriskSandbox, settings: Settings, ari: AriClient, shared_dir: Path
) -> None:
    folder = shared_dir / "scenarios" / "dev" / SCENARIO
    caller_number = f"139{random.randrange(10**8):08d}"
    hold_s = 25.0
    agent_id = _agent_id()
    # The agent exists before the service starts (as on a real morning shift).
    setup = await create_pool(settings.database_url or "", max_size=2)
    try:
        added = await add_agent(PgStore(setup), settings, agent_id, name="SIP", skills=SKILLS)
    finally:
        await setup.close()
    assert added.credentials is not None
    async with running_service(settings, workers=0) as app, \
            SippLab(asterisk_sandbox) as lab:
        pool = app[POOL]
        await eventually(lambda: provisioned(ari, agent_id), 15, "the endpoint in Asterisk")
        phones = await lab.agents([(added.credentials.username, added.credentials.password)],
                                  audio=folder / "agent.wav")

        async def online() -> bool:
            assert phones.running, phones.log_tail()
            return await endpoint_state(ari, agent_id) == "online"

        await eventually(online, 15, "the agent's phone to register")

        caller = await lab.call(HOTLINE_NUMBER, caller=caller_number, audio=folder / "caller.wav",
                                digits=menu_keys("1"), hold_s=hold_s)

        async def call_row() -> asyncpg.Record | None:
            return await pool.fetchrow(
                "SELECT * FROM calls WHERE caller_number = $1", caller_number)

        async def talking() -> bool:
            assert caller.running or caller.proc.returncode == 0, caller.log_tail()
            row = await call_row()
            return bool(row and row["stage"] == "conversation")

        await eventually(talking, 30, "the caller to reach the agent")
        assert await caller.wait(hold_s + 30) == 0, caller.log_tail()

        async def ended() -> asyncpg.Record | None:
            row = await call_row()
            return row if row and row["ended_at"] is not None else None

        call = await eventually(ended, 30, "the call to end")
        assert (call["stage"], call["hangup_by"], call["ivr_digits"], call["queue"]) == (
            "conversation", "caller", "12", "repair"), dict(call)
        assert call["agent_id"] == agent_id
        talk = (call["ended_at"] - call["answered_at"]).total_seconds()
        assert 10 < talk < hold_s, talk

        async def recorded() -> dict[str, float] | None:
            rows = await pool.fetch("SELECT leg, path FROM recordings WHERE call_id = $1",
                                    call["id"])
            seconds = {}
            for r in rows:
                path = settings.recordings / r["path"]
                if path.is_file() and path.stat().st_size > 44:
                    seconds[r["leg"]] = _wav_seconds(path)
            done = len(seconds) == 2 and all(abs(s - talk) < 3 for s in seconds.values())
            return seconds if done else None

        seconds = await eventually(recorded, 20, "both legs' recordings to be complete")
        assert set(seconds) == {"caller", "agent"}
        assert phones.running, phones.log_tail()

        assert await app[STORE].remove_agent(agent_id)  # leave Asterisk as it was

        async def gone() -> bool:
            return not await provisioned(ari, agent_id)

        await eventually(gone, 15, "the agent's endpoint to be deleted")
