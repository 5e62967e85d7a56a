"""Long-running adapters of the service, as aiohttp cleanup contexts.

Each context starts one adapter after the database is up and stops it in
reverse order: the FastAGI server (IVR), the ARI consumer (routing), and the
stand-alone worker loop for ``callcenter worker``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from callcenter.agi.server import FastAgiServer
from callcenter.ari.client import AriClient
from callcenter.constants import STASIS_APP
from callcenter.ivr.handler import make_ivr_handler
from callcenter.routing.stasis import RoutingApp
from callcenter.settings import Settings

log = logging.getLogger("callcenter.service")


async def agi_context(app: web.Application) -> AsyncIterator[None]:
    from callcenter.web.app import SETTINGS, STORE

    settings = app[SETTINGS]
    server = FastAgiServer(
        settings.agi_host, settings.agi_port, {"ivr": make_ivr_handler(app[STORE])}
    )
    await server.start()
    yield
    await server.stop()


async def ari_context(app: web.Application) -> AsyncIterator[None]:
    from callcenter.web.app import LIVE, SETTINGS, STORE

    settings = app[SETTINGS]
    client = AriClient(settings.ari_url, settings.ari_user, settings.ari_password, STASIS_APP)
    routing = RoutingApp.from_settings(client, app[STORE], settings)
    app[LIVE]["routing"] = routing
    task = asyncio.create_task(routing.run(), name="ari-routing")
    yield
    await routing.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.close()


async def run_worker(settings: Settings) -> None:
    """``callcenter worker``: only the job consumer, until interrupted."""
    from callcenter.db.connect import create_pool
    from callcenter.db.migrate import prepare_database
    from callcenter.db.store import PgStore
    from callcenter.worker import model_transcribing, run_supervised

    dsn = await prepare_database(settings)
    pool = await create_pool(dsn)
    transcribing = await asyncio.to_thread(model_transcribing, settings)
    log.info("worker waiting for jobs")
    try:
        await run_supervised(dsn, PgStore(pool), settings, transcribing, asyncio.Event())
    finally:
        await pool.close()
