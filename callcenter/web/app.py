"""The service as one aiohttp application.

The app factory wires the adapters around the pure core: the database pool,
the FastAGI server (IVR), the ARI consumer (routing), the transcription worker
and the web API all live in ``cleanup_ctx`` so they start in order and stop
in reverse, also when start-up fails half-way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from callcenter.db.connect import create_pool
from callcenter.db.migrate import prepare_database
from callcenter.db.store import PgStore
from callcenter.errors import BadRequest, NotFound, ServiceError, Unavailable
from callcenter.settings import Settings
from callcenter.stats import CallTimes, period_figures
from callcenter.web import metrics as prom
from callcenter.web import pages, queries

log = logging.getLogger("callcenter.web")

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", PgStore)
DSN = web.AppKey("dsn", str)
LIVE = web.AppKey("live", dict)  # name -> object with snapshot() (routing app) etc.


def create_app(
    settings: Settings, *, telephony: bool = True, workers: int | None = None
) -> web.Application:
    app = web.Application(middlewares=[_errors_middleware])
    app[SETTINGS] = settings
    app[LIVE] = {}
    app.cleanup_ctx.append(_database)
    if telephony:
        from callcenter.service import agi_context, ari_context

        app.cleanup_ctx.append(agi_context)
        app.cleanup_ctx.append(ari_context)
    if (settings.workers if workers is None else workers) > 0:
        app.cleanup_ctx.append(_worker)
    _routes(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    dsn = await prepare_database(app[SETTINGS])
    app[DSN] = dsn
    app[POOL] = await create_pool(dsn)
    app[STORE] = PgStore(app[POOL])
    yield
    await app[POOL].close()


async def _worker(app: web.Application) -> AsyncIterator[None]:
    from callcenter.worker import model_transcribing, run_supervised

    settings = app[SETTINGS]
    transcribing = await asyncio.to_thread(model_transcribing, settings)
    stopping = asyncio.Event()
    task = asyncio.create_task(
        run_supervised(app[DSN], app[STORE], settings, transcribing, stopping), name="worker"
    )
    yield
    stopping.set()
    try:
        await asyncio.wait_for(task, timeout=30)
    except (TimeoutError, asyncio.CancelledError):
        task.cancel()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ServiceError as exc:
        return web.json_response(exc.to_json(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = {"status": exc.status, "error": exc.reason.lower().replace(" ", "_"),
                "message": exc.text or exc.reason, "details": {}}
        return web.json_response(body, status=exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        body = {"status": 500, "error": "internal_error", "message": "internal error",
                "details": {}}
        return web.json_response(body, status=500)


def _routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/calls/{call_id}", call_html)
    app.router.add_get("/api/calls", api_calls)
    app.router.add_get("/api/calls/{call_id}", api_call)
    app.router.add_get("/api/tickets", api_tickets)
    app.router.add_get("/api/agents", api_agents)
    app.router.add_get("/api/queues", api_queues)
    app.router.add_get("/api/stats", api_stats)
    app.router.add_get("/recordings/{call_id}/{leg}.wav", recording)
    app.router.add_get("/metrics", metrics)


def _limit(request: web.Request) -> int:
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError as exc:
        raise BadRequest("limit must be an integer", limit=request.query.get("limit")) from exc
    if not 1 <= limit <= 1000:
        raise BadRequest("limit must be between 1 and 1000", limit=limit)
    return limit


async def index(request: web.Request) -> web.Response:
    calls = await queries.list_calls(request.app[POOL], _limit(request))
    return web.Response(text=pages.calls_page(calls), content_type="text/html")


async def call_html(request: web.Request) -> web.Response:
    doc = await queries.call_document(request.app[POOL], request.match_info["call_id"])
    return web.Response(text=pages.call_page(doc), content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[POOL].fetchval("SELECT 1", timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # A health check answers "unavailable" (503), not a logged internal error (500).
        raise Unavailable("database unreachable", reason=str(exc)) from exc
    live = {name: _snapshot(obj).get("connected") for name, obj in request.app[LIVE].items()}
    return web.json_response({"status": "ok", "database": "ok", "live": live})


async def api_calls(request: web.Request) -> web.Response:
    return web.json_response(await queries.list_calls(request.app[POOL], _limit(request)))


async def api_call(request: web.Request) -> web.Response:
    doc = await queries.call_document(request.app[POOL], request.match_info["call_id"])
    return web.json_response(doc, dumps=_dumps)


async def api_tickets(request: web.Request) -> web.Response:
    return web.json_response(await queries.list_tickets(request.app[POOL], _limit(request)),
                             dumps=_dumps)


async def api_agents(request: web.Request) -> web.Response:
    return web.json_response(await queries.list_agents(request.app[POOL]), dumps=_dumps)


async def api_queues(request: web.Request) -> web.Response:
    routing = request.app[LIVE].get("routing")
    return web.json_response(_snapshot(routing) if routing else {"queues": {}}, dumps=_dumps)


async def metrics(request: web.Request) -> web.Response:
    routing = request.app[LIVE].get("routing")
    rows = await request.app[POOL].fetch(
        "SELECT stage, status, count(*) AS n FROM calls GROUP BY stage, status")
    body = prom.render(_snapshot(routing) if routing else {},
                       [(r["stage"], r["status"], r["n"]) for r in rows])
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def api_stats(request: web.Request) -> web.Response:
    """answer_rate, service_level, abandon_rate, asa, aht over the last ``hours``."""
    try:
        hours = float(request.query.get("hours", "24"))
        threshold = float(request.query.get("threshold_s", "20"))
    except ValueError as exc:
        raise BadRequest("hours and threshold_s must be numbers") from exc
    if not (0 < hours <= 24 * 366 and 0 < threshold <= 3600):
        raise BadRequest("hours must be in (0, 8784], threshold_s in (0, 3600]",
                         hours=hours, threshold_s=threshold)
    rows = await request.app[POOL].fetch(
        "SELECT queued_at, answered_at, ended_at FROM calls"
        " WHERE started_at >= now() - make_interval(secs => $1)", hours * 3600)
    figures = period_figures([CallTimes(**dict(r)) for r in rows], threshold_s=threshold)
    routing = request.app[LIVE].get("routing")
    live = _snapshot(routing) if routing else {}
    return web.json_response({"period_hours": hours, **figures, "live": live}, dumps=_dumps)


async def recording(request: web.Request) -> web.FileResponse:
    call_id, leg = request.match_info["call_id"], request.match_info["leg"]
    if leg not in ("caller", "agent"):
        raise NotFound(f"no leg {leg}", leg=leg)
    path = await request.app[POOL].fetchval(
        "SELECT path FROM recordings WHERE call_id = $1 AND leg = $2", call_id, leg
    )
    if path is None:
        raise NotFound(f"no {leg} recording for call {call_id}", call_id=call_id, leg=leg)
    base = request.app[SETTINGS].recordings.resolve()
    full = (base / path).resolve()
    if base not in full.parents or not full.is_file():
        raise NotFound("recording file missing", call_id=call_id, leg=leg)
    return web.FileResponse(Path(full))  # supports Range requests for seeking


def _snapshot(obj: Any) -> dict[str, Any]:
    try:
        return dict(obj.snapshot())
    except Exception:  # a live component must never break the health page
        log.exception("snapshot failed")
        return {}


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False, default=str)
