"""The service as one aiohttp application.

The app factory wires the adapters around the pure core: the database pool,
the FastAGI server (IVR), the ARI consumer (routing), the transcription worker
and the web API all live in ``cleanup_ctx`` so they start in order and stop
in reverse, also when start-up fails half-way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from callcenter.acd.queues import QueueConfig, QueueConfigError, load_queues
from callcenter.db.connect import create_pool
from callcenter.db.migrate import prepare_database
from callcenter.db.store import PgStore, is_transient
from callcenter.db.writer import OrderedWriter
from callcenter.errors import BadRequest, NotFound, ServiceError, Unavailable
from callcenter.keys import DSN, LIVE, POOL, QUEUE_CONFIG, SETTINGS, STORE, WRITER
from callcenter.settings import Settings
from callcenter.stats import (
    CallTimes,
    StateChange,
    interval_figures,
    occupancy,
    period_figures,
    time_in_state,
)
from callcenter.web import metrics as prom
from callcenter.web import pages, queries

log = logging.getLogger("callcenter.web")

AGENT_ACTIONS = ("login", "logout", "pause", "unpause", "ready")


def create_app(
    settings: Settings, *, telephony: bool = True, workers: int | None = None
) -> web.Application:
    app = web.Application(middlewares=[_errors_middleware])
    app[SETTINGS] = settings
    app[LIVE] = {}
    app[QUEUE_CONFIG] = _queue_config(settings)
    app.cleanup_ctx.append(_database)
    if telephony:
        from callcenter.service import agi_context, ari_context  # only with telephony

        app.cleanup_ctx.append(agi_context)
        app.cleanup_ctx.append(ari_context)
    if (settings.workers if workers is None else workers) > 0:
        app.cleanup_ctx.append(_worker)
    _routes(app)
    return app


def _queue_config(settings: Settings) -> dict[str, QueueConfig]:
    """The queues (for each queue's own service-level X in the figures); a broken
    file is refused by ``serve`` before this, so here it only means no per-queue X."""
    try:
        return load_queues(settings.queues_file) if settings.queues_file else load_queues()
    except QueueConfigError as exc:
        log.warning("queues file not usable for figures: %s", exc)
        return {}


async def _database(app: web.Application) -> AsyncIterator[None]:
    dsn = await prepare_database(app[SETTINGS])
    app[DSN] = dsn
    app[POOL] = await create_pool(dsn)
    app[STORE] = PgStore(app[POOL])
    # Writes of the IVR and the ACD: in order per call, retried through an outage,
    # journaled at shutdown if the database is still away, replayed at start.
    app[WRITER] = OrderedWriter(app[STORE], journal=app[SETTINGS].data_dir / "pending-writes.jsonl")
    await app[WRITER].start()
    yield
    await app[WRITER].close()
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
    app.router.add_post("/api/agents/{agent_id}/state", api_agent_state)
    app.router.add_get("/api/queues", api_queues)
    app.router.add_get("/api/live", api_live)
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
    return web.json_response({"status": "ok", "database": "ok", "live": live,
                              "pending_writes": request.app[WRITER].pending()})


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


async def api_agent_state(request: web.Request) -> web.Response:
    """Ask the ACD to log an agent in or out, pause (with a reason), unpause, or end
    wrap-up: ``{"action": "pause", "reason": "lunch"}``. Applied in order, at once
    when the ACD runs (it owns agent states), else when it starts: 202 Accepted."""
    agent_id = request.match_info["agent_id"]
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest("body must be JSON") from exc
    if not isinstance(body, dict) or body.get("action") not in AGENT_ACTIONS:
        raise BadRequest(f"action must be one of {', '.join(AGENT_ACTIONS)}",
                         action=body.get("action") if isinstance(body, dict) else None)
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 100):
        raise BadRequest("reason must be a short string", reason=str(reason)[:100])
    try:
        request_id = await request.app[STORE].request_agent(
            agent_id, body["action"], reason, by="api")
    except KeyError as exc:
        raise NotFound(f"no agent {agent_id}", agent_id=agent_id) from exc
    return web.json_response({"request_id": request_id, "agent_id": agent_id,
                              "action": body["action"]}, status=202)


async def api_queues(request: web.Request) -> web.Response:
    acd = request.app[LIVE].get("acd")
    return web.json_response(_snapshot(acd) if acd else {"queues": {}}, dumps=_dumps)


async def api_live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the live snapshot now, then again after every change
    (changes within 0.2 s are sent as one)."""
    acd = request.app[LIVE].get("acd")
    if acd is None:
        raise Unavailable("the call distributor is not running in this process")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    changes = acd.subscribe()
    try:
        while True:
            data = json.dumps(_snapshot(acd), ensure_ascii=False, default=str)
            await response.write(f"event: snapshot\ndata: {data}\n\n".encode())
            await changes.get()
            await asyncio.sleep(0.2)  # coalesce a burst of changes into one push
            while not changes.empty():
                changes.get_nowait()
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        acd.unsubscribe(changes)
    return response


async def metrics(request: web.Request) -> web.Response:
    acd = request.app[LIVE].get("acd")
    calls: list[tuple[str, str, int]] | None
    try:
        rows = await request.app[POOL].fetch(
            "SELECT stage, status, count(*) AS n FROM calls GROUP BY stage, status", timeout=5)
        calls = [(r["stage"], r["status"], r["n"]) for r in rows]
    except Exception as exc:  # the live figures matter most while the database is away
        if not (is_transient(exc) or isinstance(exc, TimeoutError)):
            raise
        calls = None
    body = prom.render(_snapshot(acd) if acd else {}, calls, request.app[WRITER].pending())
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


def _queue_kwargs(request: web.Request, queue: str, kwargs: dict[str, float]
                  ) -> dict[str, float]:
    config = request.app[QUEUE_CONFIG].get(queue)
    if config is None:
        return kwargs
    own = dict(kwargs)
    if "threshold_s" not in request.query:
        own["threshold_s"] = config.service_level_s
    if "short_abandon_s" not in request.query:
        own["short_abandon_s"] = config.short_abandon_s
    return own


def _number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    try:
        value = float(request.query.get(name, str(default)))
    except ValueError as exc:
        raise BadRequest(f"{name} must be a number", **{name: request.query.get(name)}) from exc
    if not low < value <= high:
        raise BadRequest(f"{name} must be in ({low:g}, {high:g}]", **{name: value})
    return value


async def api_stats(request: web.Request) -> web.Response:
    """The spec's figures over the last ``hours``: for the whole period, per queue,
    per interval (``interval_min``, 15 by default) and per agent (occupancy, time
    in state). ``threshold_s`` is the X of service_level and sl2 (20 s by default);
    without it each queue's figures use that queue's own ``service_level_s`` and
    ``short_abandon_s`` from the queues file, reported with them."""
    hours = _number(request, "hours", 24, 0, 24 * 366)
    threshold = _number(request, "threshold_s", 20, 0, 3600)
    short = _number(request, "short_abandon_s", 5, -1, 600)
    interval = _number(request, "interval_min", 15, 0, 24 * 60)
    if hours * 60 / interval > 5000:
        raise BadRequest("too many intervals: raise interval_min or lower hours",
                         hours=hours, interval_min=interval)
    end = datetime.now(UTC)
    start = end - timedelta(hours=hours)
    pool = request.app[POOL]
    rows = await pool.fetch(
        "SELECT queued_at, answered_at, ended_at, queue, outcome FROM calls"
        " WHERE started_at >= $1", start)
    calls = [CallTimes(**dict(r)) for r in rows]
    history = await pool.fetch(
        "SELECT agent_id, to_state, at FROM agent_state_history WHERE at >= $1"
        " UNION ALL SELECT DISTINCT ON (agent_id) agent_id, to_state, at"
        " FROM agent_state_history WHERE at < $1 ORDER BY agent_id, at DESC", start)
    changes = [StateChange(**dict(r)) for r in history]
    kwargs = {"threshold_s": threshold, "short_abandon_s": short}
    queues = sorted({c.queue for c in calls if c.queue})
    spent = time_in_state(changes, start, end)

    acd = request.app[LIVE].get("acd")
    body = {
        "period_hours": hours,
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        **period_figures(calls, **kwargs),
        "queues": {q: period_figures([c for c in calls if c.queue == q],
                                     **_queue_kwargs(request, q, kwargs)) for q in queues},
        "intervals": [row for row in interval_figures(
            calls, changes, start, end, interval=timedelta(minutes=interval), **kwargs)
            if row["all"]["calls_for_agent"] or row["occupancy"] is not None],
        "agents": {a: {"occupancy": occupancy(s), "time_in_state_s": s}
                   for a, s in sorted(spent.items())},
        "live": _snapshot(acd) if acd else {},
    }
    return web.json_response(body, dumps=_dumps)


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


__all__ = ["DSN", "LIVE", "POOL", "SETTINGS", "STORE", "WRITER", "create_app"]
