"""The database stops for 60 s while calls arrive: callers are still answered by
the IVR, queued, connected and recorded; once it is back every call has its
complete record (times, legs, recordings, ticket)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pgserver
import pytest
from pgserver import pg_ctl
from pgserver.postgres_server import PostgresServer

from callcenter.db.connect import connect
from callcenter.db.migrate import migrate
from callcenter.sandbox.asterisk import AsteriskSandbox
from callcenter.sandbox.simulator import AriParams, menu_keys, place_call
from callcenter.settings import Settings
from callcenter.web.app import LIVE, POOL, STORE
from tests.e2e.conftest import eventually, free_port, running_service

# Repair, then "other repairs", then "#" skips the description; SendDTMF pauses.
REPAIR_KEYS = menu_keys("1", pause="ww")

pytestmark = [pytest.mark.e2e, pytest.mark.asr]

OUTAGE_S = 60.0
CALLS = 3


@pytest.fixture
def private_database() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test alone, so stopping it troubles nobody else."""
    folder = Path(tempfile.mkdtemp(prefix="cc-outage-"))
    folder.chmod(0o755)  # PostgreSQL runs as its own user when we are root
    server = pgserver.get_server(folder / "pg", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def _stop(server: PostgresServer) -> None:
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


def _start(server: PostgresServer) -> None:
    server.ensure_postgres_running()


async def _channels() -> set[str]:
    auth = {"Authorization": aiohttp.encode_basic_auth("callcenter", "callcenter")}
    async with aiohttp.ClientSession(headers=auth) as http, http.get(
            f"{AriParams.url}/ari/channels") as resp:
        return {str(c["id"]) for c in await resp.json()}


async def test_calls_are_routed_through_a_60_s_database_outage(
    asterisk_sandbox: AsteriskSandbox, private_database: PostgresServer, tmp_path: Path,
    shared_dir: Path,
) -> None:
    dsn = private_database.get_uri()
    conn = await connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    settings = Settings(
        database_url=dsn, data_dir=tmp_path, recordings_dir=asterisk_sandbox.recordings_dir,
        shared_dir=shared_dir, web_port=free_port(), wrap_up_s=0, ring_timeout_s=6,
    )
    speech = sorted((shared_dir / "realspeech" / "wav8k").glob("*.wav"))
    async with running_service(settings) as app:
        acd = app[LIVE]["acd"]
        for number in ("1001", "1002"):
            await app[STORE].upsert_agent(
                f"agent{number}", name=f"agent {number}", endpoint=f"Local/{number}@sim-agents/n",
                skills=["repair", "general"])

        async def agents_ready() -> bool:
            states = [a.state for a in acd.machine.agents.values()]
            return states.count("available") == 2

        await eventually(agents_ready, 30, "both agents logged in")
        await asyncio.to_thread(_stop, private_database)
        stopped = time.monotonic()
        sims = []
        for n in range(CALLS):
            sims.append(await place_call(
                AriParams(), number="12345", caller_phone=f"1390000000{n}",
                caller_audio=speech[n], agent_audio=speech[n + 3], digits=REPAIR_KEYS,
                menu_wait_s=1.0, shared_dir=shared_dir,
            ))
            await asyncio.sleep(2)  # arrivals spread over the outage

        async def all_answered() -> bool:
            return sum(a.calls_answered for a in acd.machine.agents.values()) == CALLS

        # Routed while the database is still down: the ACD needs no row to work.
        await eventually(all_answered, OUTAGE_S - 10, "every caller to reach an agent")

        async def all_gone() -> bool:
            return not (set(sims) | {f"{s}-pbx" for s in sims}) & await _channels()

        await eventually(all_gone, OUTAGE_S, "every simulated call to end")
        assert time.monotonic() - stopped < OUTAGE_S, "the calls outlasted the outage"
        await asyncio.sleep(OUTAGE_S - (time.monotonic() - stopped))  # the outage's length
        await asyncio.to_thread(_start, private_database)
        pool: asyncpg.Pool = app[POOL]

        async def all_processed() -> list[asyncpg.Record] | None:
            rows = await pool.fetch(
                "SELECT * FROM calls WHERE channel_id = ANY($1::text[])",
                [f"{s}-pbx" for s in sims])
            done = [r for r in rows if r["status"] in ("processed", "failed")]
            return done if len(done) == CALLS else None

        calls = await eventually(all_processed, 300, "every call to be processed")
        for call in calls:
            assert call["status"] == "processed", call["error"]
            assert (call["stage"], call["outcome"], call["queue"], call["ivr_digits"]) == (
                "conversation", "answered", "repair", "12")
            assert call["queued_at"] <= call["answered_at"] <= call["ended_at"]
            assert call["agent_id"] in ("agent1001", "agent1002")
            assert await pool.fetchval(
                "SELECT count(*) FROM recordings WHERE call_id = $1", call["id"]) == 2
            assert await pool.fetchval(
                "SELECT count(*) FROM tickets WHERE call_id = $1", call["id"]) == 1
        history = await pool.fetchval(
            "SELECT count(*) FROM agent_state_history WHERE to_state = 'on_call'")
        assert history == CALLS

        # And new calls are routed as before.
        sim = await place_call(
            AriParams(), number="12345", caller_phone="13900000009", caller_audio=speech[0],
            agent_audio=speech[1], digits=REPAIR_KEYS, menu_wait_s=1.0, shared_dir=shared_dir)

        async def answered() -> bool:
            row = await pool.fetchrow("SELECT answered_at FROM calls WHERE channel_id = $1",
                                      f"{sim}-pbx")
            return bool(row and row["answered_at"])

        await eventually(answered, 60, "a new call after the outage to be answered")
