"""The JSON API: calls, agents, queues, live figures, statistics and recordings
(tickets: ``tickets/http.py``). Who may call what is declared with the routes (``web/app.py``); an
agent sees only their own calls (``own_agent``)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from callcenter.acd.events import AGENT_ACTIONS
from callcenter.auth.http import audit_request, principal
from callcenter.auth.model import may_change_agent, may_hear, may_see_originals, own_agent
from callcenter.db.store import is_transient
from callcenter.errors import BadRequest, Conflict, Forbidden, NotFound, Unavailable
from callcenter.ivr.stats import node_figures
from callcenter.keys import LIVE, POOL, QUEUE_CONFIG, SETTINGS, STORE, WRITER
from callcenter.stats import (
    CallTimes,
    StateChange,
    interval_figures,
    occupancy,
    period_figures,
    time_in_state,
)
from callcenter.web import metrics as prom
from callcenter.web import queries
from callcenter.web.openapi import endpoint, query_of

log = logging.getLogger("callcenter.web")



def limit_of(request: web.Request) -> int:
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError as exc:
        raise BadRequest("limit must be an integer", limit=request.query.get("limit")) from exc
    if not 1 <= limit <= 1000:
        raise BadRequest("limit must be between 1 and 1000", limit=limit)
    return limit


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[POOL].fetchval("SELECT 1", timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # A health check answers "unavailable" (503), not a logged internal error (500).
        raise Unavailable("database unreachable", reason=str(exc)) from exc
    live = {name: snapshot(obj).get("connected") for name, obj in request.app[LIVE].items()}
    return web.json_response({"status": "ok", "database": "ok", "live": live,
                              "pending_writes": request.app[WRITER].pending()})


async def api_calls(request: web.Request) -> web.Response:
    calls = await queries.list_calls(request.app[POOL], limit_of(request),
                                     agent_id=own_agent(principal(request)))
    return web.json_response(calls, dumps=dumps)


async def call_for(request: web.Request) -> dict[str, Any]:
    """The call of the path, if this user may see it (an agent: their own calls; any
    other call is "not found", so its existence does not leak)."""
    call_id = request.match_info["call_id"]
    originals = wants_originals(request)
    doc = await queries.call_document(request.app[POOL], call_id, originals=originals)
    mine = own_agent(principal(request))
    if mine is not None and doc["call"].get("agent_id") != mine:
        raise NotFound(f"no call {call_id}", call_id=call_id)
    if originals:
        await audit_request(request, "transcript_originals_viewed", "call", call_id)
    return doc


class OriginalQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    original: bool = Field(False, description=(
        "personal numbers (mobile, identity and bank card numbers) as said: masked by"
        " default, for everyone; supervisors and admins may ask for them"))


def wants_originals(request: web.Request) -> bool:
    """``?original=true``: personal numbers as said (``may_see_originals``)."""
    wanted = query_of(request, OriginalQuery).original
    if wanted and not may_see_originals(principal(request)):
        raise Forbidden("personal numbers as said are for supervisors and admins",
                        role=str(principal(request).role))
    return wanted


@endpoint("A call: its facts, recordings, transcript, ticket, QA result and events",
          query=OriginalQuery, response=None)
async def api_call(request: web.Request) -> web.Response:
    return web.json_response(await call_for(request), dumps=dumps)


async def api_agents(request: web.Request) -> web.Response:
    return web.json_response(await queries.list_agents(request.app[POOL]), dumps=dumps)


async def api_agent_state(request: web.Request) -> web.Response:
    """Ask the ACD to log an agent in or out, pause (with a reason), unpause, end
    wrap-up, or join or leave one queue: ``{"action": "pause", "reason": "lunch"}``,
    ``{"action": "leave", "queue": "complaint"}``. Applied in order, at once
    when the ACD runs (it owns agent states), else when it starts: 202 Accepted.
    Agents change their own state only; supervisors and admins anyone's."""
    agent_id = request.match_info["agent_id"]
    who = principal(request)
    if not may_change_agent(who, agent_id):
        raise Forbidden("agents change their own state only", agent_id=agent_id)
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest("body must be JSON") from exc
    if not isinstance(body, dict) or body.get("action") not in AGENT_ACTIONS:
        raise BadRequest(f"action must be one of {', '.join(AGENT_ACTIONS)}",
                         action=body.get("action") if isinstance(body, dict) else None)
    reason = body.get("reason")
    if body["action"] in ("join", "leave"):  # one queue: {"action": "leave", "queue": ...}
        reason = body.get("queue")
        queues = sorted(request.app[QUEUE_CONFIG].keys())
        if reason not in queues:
            raise BadRequest("queue must be one of the queues", queue=str(reason)[:100],
                             queues=queues)
    if reason is not None and (not isinstance(reason, str) or len(reason) > 100):
        raise BadRequest("reason must be a short string", reason=str(reason)[:100])
    try:
        request_id = await request.app[STORE].request_agent(
            agent_id, body["action"], reason, by=f"web:{who.username}")
    except KeyError as exc:
        raise NotFound(f"no agent {agent_id}", agent_id=agent_id) from exc
    await audit_request(request, "agent_state_requested", "agent", agent_id,
                        {"action": body["action"], "reason": reason})
    return web.json_response({"request_id": request_id, "agent_id": agent_id,
                              "action": body["action"]}, status=202)


async def api_queues(request: web.Request) -> web.Response:
    acd = request.app[LIVE].get("acd")
    return web.json_response(snapshot(acd) if acd else {"queues": {}}, dumps=dumps)


async def api_live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the live snapshot now, then again after every change
    (changes within 0.2 s are sent as one)."""
    acd = request.app[LIVE].get("acd")
    if acd is None:
        raise Unavailable("the call distributor is not running in this process")
    return await push_changes(request, acd, "snapshot", lambda: snapshot(acd), grace_s=0.2)


async def push_changes(request: web.Request, acd: Any, event: str, render: Any, *,
                       grace_s: float) -> web.StreamResponse:
    """Server-sent events from the ACD: ``render()`` now, then again after each of
    its changes (a burst within ``grace_s`` is one push; an unchanged rendering is
    not sent again), until the client goes away."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    changes = acd.subscribe()
    last = None
    try:
        while True:
            data = dumps(render())
            if data != last:
                await response.write(f"event: {event}\ndata: {data}\n\n".encode())
                last = data
            await changes.get()
            await asyncio.sleep(grace_s)
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
    transcription: dict[str, Any] | None
    try:
        rows = await request.app[POOL].fetch(
            "SELECT stage, status, count(*) AS n FROM calls GROUP BY stage, status", timeout=5)
        calls = [(r["stage"], r["status"], r["n"]) for r in rows]
        until = datetime.now(UTC)
        transcription = await queries.transcription_figures(
            request.app[POOL], until - timedelta(hours=1), until)
    except Exception as exc:  # the live figures matter most while the database is away
        if not (is_transient(exc) or isinstance(exc, TimeoutError)):
            raise
        calls, transcription = None, None
    ivr = request.app[LIVE].get("ivr")
    body = prom.render(snapshot(acd) if acd else {}, calls, request.app[WRITER].pending(),
                       snapshot(ivr) if ivr else None, transcription)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def api_ivr_stats(request: web.Request) -> web.Response:
    """Per-node IVR figures over the last ``hours`` (default 24): entries, choices by
    key and speech, timeouts, invalid input, hang-ups and transfers at each node."""
    hours = _number(request, "hours", 24, 0, 24 * 366)
    until = datetime.now(UTC)
    since = until - timedelta(hours=hours)
    rows = await request.app[POOL].fetch(
        "SELECT node, kind, via, choice, count(*) AS n FROM ivr_events"
        " WHERE at >= $1 AND at < $2 GROUP BY node, kind, via, choice"
        " ORDER BY min(id)", since, until)
    nodes = node_figures((r["node"], r["kind"], r["via"], r["choice"], r["n"]) for r in rows)
    return web.json_response({"since": since, "until": until, "nodes": nodes}, dumps=dumps)


async def api_transcription_stats(request: web.Request) -> web.Response:
    """Transcription jobs by state (queued, picked, failed) and, over the calls
    processed in the last ``hours`` (default 1): audio seconds, real-time factor,
    throughput and the lag from hang-up to result."""
    hours = _number(request, "hours", 1, 0, 24 * 366)
    until = datetime.now(UTC)
    since = until - timedelta(hours=hours)
    figures = await queries.transcription_figures(request.app[POOL], since, until)
    return web.json_response({"since": since, "until": until, **figures}, dumps=dumps)


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
    text = request.query.get(name, str(default))
    try:
        value = float(text)
    except ValueError as exc:
        raise BadRequest(f"{name} must be a number", **{name: text[:50]}) from exc
    if not math.isfinite(value) or not low < value <= high:
        raise BadRequest(f"{name} must be in ({low:g}, {high:g}]", **{name: text[:50]})
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
    # Each agent's changes in the period, and the one before it (the state the
    # period opens in): one index probe per agent, not a walk of all history.
    history = await pool.fetch(
        "SELECT agent_id, to_state, at FROM agent_state_history WHERE at >= $1"
        " UNION ALL SELECT a.id, h.to_state, h.at FROM agents a CROSS JOIN LATERAL"
        " (SELECT to_state, at FROM agent_state_history WHERE agent_id = a.id AND at < $1"
        "  ORDER BY at DESC LIMIT 1) h", start)
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
        "live": snapshot(acd) if acd else {},
    }
    return web.json_response(body, dumps=dumps)


@endpoint("A leg's recording (WAV, Range requests for seeking)", query=OriginalQuery,
          response=None)
async def recording(request: web.Request) -> web.FileResponse:
    """A leg's WAV, for QA, supervisors, admins and the agent of that call: the copy
    with personal numbers muted where the transcript held any, the original with
    ``?original=true`` (``may_see_originals``). A leg not yet checked is only
    heard as the original. Every download is written to the audit log."""
    call_id, leg = request.match_info["call_id"], request.match_info["leg"]
    if leg not in ("caller", "agent"):
        raise NotFound(f"no leg {leg}", leg=leg)
    originals = wants_originals(request)
    row = await request.app[POOL].fetchrow(
        "SELECT r.path, r.muted_path, r.pii_findings, c.agent_id FROM recordings r"
        " JOIN calls c ON c.id = r.call_id WHERE r.call_id = $1 AND r.leg = $2", call_id, leg)
    if row is None or not may_hear(principal(request), row["agent_id"]):
        raise NotFound(f"no {leg} recording for call {call_id}", call_id=call_id, leg=leg)
    if not originals and row["pii_findings"] is None:
        raise Conflict("this recording is not yet checked for personal numbers: only its"
                       " original exists (?original=true, for supervisors and admins)",
                       call_id=call_id, leg=leg)
    path = row["path"] if originals or not row["muted_path"] else row["muted_path"]
    base = request.app[SETTINGS].recordings.resolve()
    full = (base / path).resolve()
    if base not in full.parents or not full.is_file():
        raise NotFound("recording file missing", call_id=call_id, leg=leg)
    await audit_request(request, "recording_downloaded", "call", call_id,
                        {"leg": leg, "range": request.headers.get("Range"),
                         "original": originals, "muted": path != row["path"]})
    return web.FileResponse(Path(full))  # supports Range requests for seeking


def snapshot(obj: Any) -> dict[str, Any]:
    try:
        return dict(obj.snapshot())
    except Exception:  # a live component must never break the health page
        log.exception("snapshot failed")
        return {}


def _finite(value: Any) -> Any:
    """NaN and infinities are not JSON: they travel as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(obj: Any) -> str:
    """Strict JSON: non-ASCII as is, NaN/inf as null, other objects as strings."""
    try:
        return json.dumps(obj, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), ensure_ascii=False, default=str, allow_nan=False)
