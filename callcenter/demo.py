"""``callcenter demo``: scenario calls through the sandboxed Asterisk.

Starts the sandbox and the whole service in this process (embedded
PostgreSQL, FastAGI, ARI routing, worker, web), logs in simulated agents,
places calls from ../shared/scenarios/dev and waits until each has its ticket
and QA result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from callcenter.settings import Settings

log = logging.getLogger("callcenter.demo")

# Simulated agents: Local channels in the sandbox's sim-agents context.
DEMO_AGENTS = (
    ("1001", "周", ("repair", "complaint", "consultation", "general")),
    ("1002", "王", ("repair", "complaint", "consultation", "general")),
)
DEFAULT_SCENARIOS = ("d007", "d006", "d012")


def scenario_ids(shared: Path, wanted: list[str], count: int) -> list[str]:
    dev = shared / "scenarios" / "dev"
    if not dev.is_dir():
        raise FileNotFoundError(f"no scenarios at {dev}")
    if wanted:
        missing = [s for s in wanted if not (dev / s / "meta.json").is_file()]
        if missing:
            raise FileNotFoundError(f"unknown scenarios: {', '.join(missing)}")
        return wanted
    return list(DEFAULT_SCENARIOS[:count]) + sorted(
        p.name for p in dev.iterdir() if p.name not in DEFAULT_SCENARIOS
    )[: max(0, count - len(DEFAULT_SCENARIOS))]


async def seed_demo_agents(store: Any) -> None:
    for number, surname, skills in DEMO_AGENTS:
        await store.upsert_agent(
            f"agent{number}", name=f"客服{surname}", endpoint=f"Local/{number}@sim-agents/n",
            skills=skills,
        )


async def place_scenario_call(settings: Settings, scenario: str) -> str:
    """Dial the hotline as the scenario's caller; return the PBX-side channel id."""
    from callcenter.sandbox.simulator import (
        AriParams,
        menu_keys,
        pbx_channel_id,
        place_call,
        scenario_audio,
    )

    audio = scenario_audio(settings.shared_dir, scenario)
    sim_id = await place_call(
        AriParams(settings.ari_url, settings.ari_user, settings.ari_password),
        number="12345", caller_phone=str(audio.meta["caller"]["phone"]),
        caller_audio=audio.caller,
        digits=menu_keys(str(audio.meta.get("ivr_digits") or ""), pause="ww"),
        agent_audio=audio.agent, shared_dir=settings.shared_dir,
    )
    return pbx_channel_id(sim_id)


async def wait_processed(pool: Any, channel_ids: list[str], timeout_s: float) -> dict[str, Any]:
    """Poll until every call placed on these channels is processed (or failed)."""
    deadline = time.monotonic() + timeout_s
    rows: list[Any] = []
    while time.monotonic() < deadline:
        rows = await pool.fetch(
            "SELECT c.id, c.channel_id, c.stage, c.status, c.hangup_by, t.number AS ticket,"
            " t.category, t.urgency, q.score AS qa_score"
            " FROM calls c LEFT JOIN tickets t ON t.call_id = c.id AND t.auto"
            " LEFT JOIN qa_results q ON q.call_id = c.id WHERE c.channel_id = ANY($1::text[])",
            channel_ids,
        )
        if len(rows) == len(channel_ids) and all(
            r["status"] in ("processed", "failed") for r in rows
        ):
            break
        await asyncio.sleep(1.0)
    return {r["channel_id"]: dict(r) for r in rows}


async def run_demo(
    settings: Settings, *, calls: int, scenarios: list[str], keep_running: bool
) -> dict[str, Any]:
    """Place scenario calls; attach to a running ``callcenter serve`` if there is one,
    else run the whole service in this process for the demo's duration."""
    from callcenter.errors import CliError
    from callcenter.sandbox.asterisk import sandbox_from_settings

    try:
        ids = scenario_ids(settings.shared_dir, scenarios, calls)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from exc
    box = sandbox_from_settings(settings)
    started_asterisk = not await asyncio.to_thread(box.is_running)
    await asyncio.to_thread(box.start)
    try:
        async with _service(settings) as (store, pool):
            await seed_demo_agents(store)
            await _first_admin(pool)
            summary = await _place_and_wait(settings, ids, pool)
            if keep_running:
                print(json.dumps(summary, ensure_ascii=False, default=str), flush=True)
                print("serving until Ctrl-C", flush=True)
                await _until_terminated()
            return summary
    finally:
        if started_asterisk:
            await asyncio.to_thread(box.stop)


async def _first_admin(pool: Any) -> None:
    """With nobody to sign in yet, an admin with a new password, printed once."""
    from callcenter.auth import store as users
    from callcenter.auth.model import Role
    from callcenter.auth.passwords import hash_password, new_password

    if await pool.fetchval("SELECT count(*) FROM users"):
        return
    password = new_password()
    await users.create_user(pool, username="admin", role=Role.ADMIN, created_by="demo",
                            password_hash=hash_password(password), display_name="admin")
    print(json.dumps({"web_sign_in": {"username": "admin", "password": password,
                                      "note": "shown once; `callcenter users set admin "
                                              "--new-password` makes another"}}), flush=True)


async def _until_terminated() -> None:
    """Wait for SIGTERM (Ctrl-C arrives as a cancellation), so cleanup runs either way."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


@contextlib.asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[tuple[Any, Any]]:
    """The database store and pool of the running service, or of one started here."""
    from callcenter.db.connect import create_pool
    from callcenter.db.migrate import prepare_database
    from callcenter.db.store import PgStore
    from callcenter.settings import listening
    from callcenter.web.app import POOL, STORE, create_app

    if await _service_answers(settings):
        log.info("attaching to the service already running on port %d", settings.web_port)
        pool = await create_pool(await prepare_database(settings), max_size=2)
        try:
            yield PgStore(pool), pool
        finally:
            await pool.close()
        return
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.web_host, settings.web_port).start()
        print(listening(settings, telephony=True), flush=True)
        yield app[STORE], app[POOL]
    finally:
        await runner.cleanup()


async def _service_answers(settings: Settings) -> bool:
    url = f"http://{settings.web_host}:{settings.web_port}/healthz"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            async with http.get(url) as response:
                return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _place_and_wait(settings: Settings, ids: list[str], pool: Any) -> dict[str, Any]:
    channels = {}
    for scenario in ids:
        channels[await place_scenario_call(settings, scenario)] = scenario
        print(json.dumps({"placed": scenario}), flush=True)
        await asyncio.sleep(1.0)
    results = await wait_processed(pool, list(channels), timeout_s=900)
    for channel, row in results.items():
        row["scenario"] = channels[channel]
    ok = len(results) == len(channels) and all(
        r.get("status") == "processed" for r in results.values()
    )
    return {"ok": ok, "calls": list(results.values()),
            "web": f"http://{settings.web_host}:{settings.web_port}/"}
