"""Long-running adapters of the service, as aiohttp cleanup contexts.

Each context starts one adapter after the database is up and stops it in
reverse order: the FastAGI server (IVR), the call distributor on ARI (with the
LISTEN connection that brings it agent changes, and the SIP account
provisioner), and the stand-alone worker loop for ``callcenter worker``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web

from callcenter.acd.queues import load_queues
from callcenter.acd.stasis import AcdApp
from callcenter.agi.server import FastAgiServer
from callcenter.ari.client import AriClient
from callcenter.constants import QUEUES, STASIS_APP
from callcenter.db.notify import listen
from callcenter.db.store import AGENT_REQUESTS_CHANNEL, AGENTS_CHANNEL, PgStore
from callcenter.db.writer import OrderedWriter
from callcenter.ivr.handler import Speech, make_ivr_handler
from callcenter.ivr.hours import is_open, parse_hours
from callcenter.ivr.menu import Menu, load_menu
from callcenter.ivr.oncall import make_oncall_ended_handler
from callcenter.ivr.speech import MenuRecognizer
from callcenter.ivr.stats import NodeCounts
from callcenter.ivr.survey import make_survey_handler
from callcenter.keys import DSN, LIVE, POOL, SETTINGS, STORE, WRITER
from callcenter.residents import RESIDENTS_CHANNEL, VipDirectory
from callcenter.settings import Settings
from callcenter.sip.provision import run_provisioner
from callcenter.tickets.lifecycle import make_policy

log = logging.getLogger("callcenter.service")


async def agi_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    menu = load_menu(settings.ivr_menu_file)
    recognizer = await _menu_recognizer(settings, menu)
    speech = Speech(recognizer=recognizer, recordings_dir=settings.recordings,
                    asterisk_dir=settings.asterisk_recordings_dir)
    # Known residents and VIP callers (elderly, disabled) are looked up by number,
    # in memory: the directory follows the table through LISTEN.
    directory, stopping = app[LIVE].setdefault("residents", VipDirectory()), asyncio.Event()
    following = await follow_directory(app[POOL], app[DSN], directory, stopping)
    handler = make_ivr_handler(
        app[STORE], writer=app[WRITER], menu=menu, lookup=directory.lookup,
        speech=speech, closed_queues=closed_queues_now(menu, ZoneInfo(settings.timezone)),
        oncall_dial=settings.oncall_dial, counts=app[LIVE].setdefault("ivr", NodeCounts()),
    )
    survey = make_survey_handler(app[STORE], writer=app[WRITER])
    oncall_ended = make_oncall_ended_handler(app[STORE], writer=app[WRITER])
    server = FastAgiServer(settings.agi_host, settings.agi_port,
                           {"ivr": handler, "survey": survey, "oncall-ended": oncall_ended})
    await server.start()
    yield
    await server.stop()
    stopping.set()
    await asyncio.gather(following, return_exceptions=True)
    if recognizer is not None:
        recognizer.close()


async def follow_directory(pool: asyncpg.Pool, dsn: str, directory: VipDirectory,
                           stopping: asyncio.Event) -> asyncio.Task[None]:
    """Load the residents' VIP kinds now (callers before the first load would be
    unknown), then keep them current from the table's notifications."""

    async def reload(_channel: str = "", _payload: str = "") -> None:
        await directory.reload(pool)
        log.info("residents directory: %d numbers in memory", len(directory))

    try:
        await reload()
    except Exception as exc:  # LISTEN loads it when it connects
        log.warning("residents directory not loaded yet: %s", exc)
    return asyncio.create_task(
        listen(dsn, (RESIDENTS_CHANNEL,), reload, reload, stopping),
        name="residents-directory")


def closed_queues_now(menu: Menu, zone: ZoneInfo) -> Callable[[], frozenset[str]]:
    """Which queues are outside their opening hours, asked at each call's start."""
    schedules = parse_hours(menu.hours, QUEUES)

    def closed() -> frozenset[str]:
        now = datetime.now(UTC)
        return frozenset(q for q, hours in schedules.items() if not is_open(hours, now, zone))

    return closed


async def _menu_recognizer(settings: Settings, menu: Menu) -> MenuRecognizer | None:
    """The spoken-choice recognizer, its model loaded now (not on the first caller);
    None (keys only) when speech is off or no model can be found."""
    if not settings.ivr_speech:
        return None
    try:
        recognizer = MenuRecognizer(settings=settings, menu=menu, allow_network=False)
        await asyncio.to_thread(recognizer.warm_up)
    except Exception as exc:  # the IVR still works with keys
        log.warning("IVR speech off: %s", exc)
        return None
    return recognizer


class AgentRequests:
    """Brings people's agent requests (CLI, web) to the ACD, each once, in order."""

    def __init__(self, acd: AcdApp, store: PgStore, writer: OrderedWriter) -> None:
        self.acd, self.store, self.writer = acd, store, writer
        self._applied: set[int] = set()  # marked applied, maybe not yet written

    async def catch_up(self) -> None:
        """Agent definitions and every pending request (after LISTEN connected)."""
        await self.acd.load_agents()
        await self.apply_pending()

    async def on_notify(self, channel: str, _payload: str) -> None:
        if channel == AGENTS_CHANNEL:
            await self.acd.load_agents()
        else:
            await self.apply_pending()

    async def apply_pending(self) -> None:
        rows = await self.store.pending_agent_requests()
        # Ids marked applied in the store are no longer pending: forget them, so
        # the set holds only writes still under way (it never grows with uptime).
        self._applied &= {int(r["id"]) for r in rows}
        if any(str(r["agent_id"]) not in self.acd.machine.agents for r in rows):
            await self.acd.load_agents()  # an agent added with the request in one go
        for row in rows:
            request_id = int(row["id"])
            if request_id in self._applied:
                continue
            self._applied.add(request_id)
            self.acd.request(str(row["agent_id"]), str(row["action"]), row.get("reason"),
                             by=str(row.get("requested_by") or "system"))
            self.writer.submit("agent-requests", "mark_agent_request_applied", request_id,
                               self.acd.clock())


async def ari_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = AriClient(settings.ari_url, settings.ari_user, settings.ari_password, STASIS_APP)
    writer = app[WRITER]
    resync_accounts = asyncio.Event()  # a (re)connected Asterisk gets every SIP account again
    queues = load_queues(settings.queues_file) if settings.queues_file else load_queues()
    acd = AcdApp(client, app[STORE], writer, queues,
                 ring_timeout_s=settings.ring_timeout_s, wrap_up_s=settings.wrap_up_s,
                 flush=writer.flush, on_connect=resync_accounts.set)
    app[LIVE]["acd"] = acd
    stopping = asyncio.Event()
    requests = AgentRequests(acd, app[STORE], writer)
    tasks = [
        asyncio.create_task(acd.run(), name="acd"),
        asyncio.create_task(listen(app[DSN], (AGENTS_CHANNEL, AGENT_REQUESTS_CHANNEL),
                                   requests.on_notify, requests.catch_up, stopping),
                            name="acd-agent-changes"),
    ]
    tasks.append(asyncio.create_task(
        run_provisioner(app[POOL], client, resync=resync_accounts), name="sip-provisioner"))
    yield
    stopping.set()
    await acd.stop()
    await asyncio.wait_for(asyncio.gather(tasks[0], return_exceptions=True), 15)
    for task in tasks[1:]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.close()


async def run_worker(settings: Settings) -> None:
    """``callcenter worker``: only the job consumer, until interrupted."""
    from callcenter.db.connect import create_pool
    from callcenter.db.migrate import prepare_database
    from callcenter.worker import model_transcribing, run_supervised

    dsn = await prepare_database(settings)
    pool = await create_pool(dsn)
    transcribing = await asyncio.to_thread(model_transcribing, settings)
    log.info("worker waiting for jobs")
    try:
        store = PgStore(pool, policy=make_policy(settings.timezone))
        await run_supervised(dsn, store, settings, transcribing, asyncio.Event(),
                             concurrency=settings.worker_concurrency or None)
    finally:
        await pool.close()
