"""The service as one aiohttp application.

The app factory wires the adapters around the pure core: the database pool,
the FastAGI server (IVR), the ARI consumer (routing), the transcription worker
and the web all live in ``cleanup_ctx`` so they start in order and stop in
reverse, also when start-up fails half-way.

Every route is declared below with who may use it (``callcenter/auth``); the
middleware turns every failure into a machine-readable error (status, error id,
details; 503 while the database is away) and every response gets the security
headers.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import AsyncIterator
from importlib.resources import files

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_session import session_middleware
from yarl import URL

from callcenter.acd.queues import QueueConfig, QueueConfigError, load_queues
from callcenter.auth import http as auth
from callcenter.auth.model import (
    MANAGERS,
    PUBLIC,
    SIGNED_IN,
    STAFF,
    Access,
    Role,
    allow,
)
from callcenter.auth.sessions import PgSessionStorage
from callcenter.auth.throttle import LoginThrottle
from callcenter.console import http as console
from callcenter.db.connect import create_pool
from callcenter.db.migrate import prepare_database
from callcenter.db.store import PgStore, is_transient
from callcenter.db.writer import OrderedWriter
from callcenter.errors import ServiceError, Unavailable
from callcenter.keys import DSN, LIVE, POOL, QUEUE_CONFIG, SETTINGS, STORE, TICKETS, WRITER
from callcenter.qa import http as qa_http
from callcenter.qa import pages as qa_pages
from callcenter.settings import Settings
from callcenter.tickets import http as tickets
from callcenter.tickets.lifecycle import make_policy
from callcenter.tickets.service import AttachmentRules, TicketService
from callcenter.web import api, openapi, pages, ticket_pages

log = logging.getLogger("callcenter.web")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
CSP_KEY = web.AppKey("csp", str)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # "no-referrer" would make browsers send "Origin: null" on our own form posts.
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), geolocation=(), microphone=(self)",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def create_app(
    settings: Settings, *, telephony: bool = True, workers: int | None = None
) -> web.Application:
    app = web.Application()
    app.middlewares.extend([_errors_middleware, _sessions(app, settings), auth.guard])
    app[SETTINGS] = settings
    app[LIVE] = {}
    app[QUEUE_CONFIG] = _queue_config(settings)
    app[auth.THROTTLE] = LoginThrottle()
    app[CSP_KEY] = _csp(settings)
    app.cleanup_ctx.append(_database)
    if telephony:
        from callcenter.service import agi_context, ari_context  # only with telephony

        app.cleanup_ctx.append(agi_context)
        app.cleanup_ctx.append(ari_context)
    calls_at_once = settings.workers if workers is None else workers
    if calls_at_once > 0:
        app.cleanup_ctx.append(functools.partial(_worker, calls_at_once=calls_at_once))
    aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("callcenter.web", "templates"),
                         autoescape=True, undefined=jinja2.StrictUndefined)
    app.on_response_prepare.append(_security_headers)
    app.cleanup_ctx.append(_settled)  # last: after everything above has started
    _routes(app)
    return app


async def _settled(app: web.Application) -> AsyncIterator[None]:
    """Once started, what exists now lives as long as the service: the garbage
    collector stops walking it (a full collection paused requests ~45 ms once a
    second under load: bench/web_load.py)."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def _sessions(app: web.Application, settings: Settings) -> Middleware:
    storage = PgSessionStorage(lambda: app[POOL],  # the pool exists once the app runs
                               lifetime_s=settings.session_hours * 3600,
                               idle_s=settings.session_idle_minutes * 60,
                               secure=settings.web_cookie_secure)
    return session_middleware(storage)


def _routes(app: web.Application) -> None:
    route = auth.add_route
    admin = allow(Role.ADMIN)
    metrics_access = Access(MANAGERS, loopback_anonymous=app[SETTINGS].metrics_from_loopback)
    # Signing in, and what needs no sign-in.
    route(app, "GET", "/healthz", api.healthz, PUBLIC)
    route(app, "GET", "/login", pages.login_page, PUBLIC)
    route(app, "POST", "/login", pages.login_submit, PUBLIC)
    route(app, "GET", "/language", pages.language, PUBLIC)
    route(app, "POST", "/api/session", auth.api_session_create, PUBLIC)
    route(app, "POST", "/logout", pages.logout, SIGNED_IN)
    route(app, "DELETE", "/api/session", auth.api_session_delete, SIGNED_IN)
    route(app, "GET", "/api/me", auth.api_me, SIGNED_IN)
    # Calls and tickets: everyone signed in; an agent sees their own calls only.
    route(app, "GET", "/", pages.calls_page, SIGNED_IN)
    route(app, "GET", "/calls/{call_id}", pages.call_page, SIGNED_IN)
    route(app, "GET", "/api/calls", api.api_calls, SIGNED_IN)
    route(app, "GET", "/api/calls/{call_id}", api.api_call, SIGNED_IN)
    route(app, "GET", "/recordings/{call_id}/{leg}.wav", api.recording, SIGNED_IN)
    # Agents and the distributor: agents change their own state only.
    route(app, "POST", "/api/agents/{agent_id}/state", api.api_agent_state, SIGNED_IN)
    route(app, "GET", "/api/agents", api.api_agents, Access(STAFF))
    route(app, "GET", "/api/stats", api.api_stats, Access(STAFF))
    route(app, "GET", "/api/queues", api.api_queues, Access(MANAGERS))
    route(app, "GET", "/api/live", api.api_live, Access(MANAGERS))
    route(app, "GET", "/api/ivr/stats", api.api_ivr_stats, Access(MANAGERS))
    route(app, "GET", "/api/transcription/stats", api.api_transcription_stats,
          Access(MANAGERS))
    route(app, "GET", "/metrics", api.metrics, metrics_access)
    # Tickets: everyone signed in reads (an agent: the tickets of their calls and
    # those they own); agents, supervisors and admins change them (QA reads only).
    # /api/tickets/alerts before /api/tickets/{number}: the first route that matches wins.
    # The ticket pages read the same (their forms change tickets through the API).
    writers = allow(Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
    route(app, "GET", "/tickets", ticket_pages.tickets_page, SIGNED_IN)
    route(app, "GET", "/tickets/{number}", ticket_pages.ticket_page, SIGNED_IN)
    route(app, "GET", "/api/tickets", tickets.list_tickets, SIGNED_IN)
    route(app, "POST", "/api/tickets", tickets.create_ticket, writers)
    route(app, "GET", "/api/tickets/alerts", tickets.list_alerts, SIGNED_IN)
    route(app, "POST", "/api/tickets/alerts/{alert_id}/acknowledge", tickets.acknowledge_alert,
          writers)
    route(app, "GET", "/api/tickets/{number}", tickets.get_ticket, SIGNED_IN)
    route(app, "PATCH", "/api/tickets/{number}", tickets.edit_ticket, writers)
    route(app, "POST", "/api/tickets/{number}/events", tickets.post_event, writers)
    route(app, "POST", "/api/tickets/{number}/attachments", tickets.upload_attachment, writers)
    route(app, "GET", "/api/tickets/{number}/attachments/{attachment_id}",
          tickets.download_attachment, SIGNED_IN)
    # QA: QA staff and supervisors review and rule on appeals; admins read; an
    # agent reads their own scored calls and appeals their own results.
    reviewers = allow(Role.QA, Role.SUPERVISOR)
    route(app, "GET", "/qa", qa_pages.qa_page, SIGNED_IN)
    route(app, "GET", "/qa/scorecards", qa_pages.scorecards_page, SIGNED_IN)
    route(app, "GET", "/qa/calls/{call_id}", qa_pages.qa_call_page, SIGNED_IN)
    route(app, "GET", "/api/qa/queue", qa_http.queue, Access(STAFF))
    route(app, "GET", "/api/qa/calls", qa_http.list_calls, SIGNED_IN)
    route(app, "GET", "/api/qa/calls/{call_id}", qa_http.get_call, SIGNED_IN)
    route(app, "POST", "/api/qa/calls/{call_id}/rules/{rule_id}/verdict", qa_http.post_verdict,
          reviewers)
    route(app, "POST", "/api/qa/calls/{call_id}/rules/{rule_id}/appeal", qa_http.post_appeal,
          allow(Role.AGENT))
    route(app, "POST", "/api/qa/appeals/{appeal_id}/decision", qa_http.post_decision,
          reviewers)
    route(app, "GET", "/api/qa/agreement", qa_http.agreement, Access(STAFF))
    route(app, "GET", "/api/qa/scorecards", qa_http.scorecards, SIGNED_IN)
    # The API's description: for those who may use the API (it names every route
    # and who may call it; nobody needs it before signing in).
    route(app, "GET", "/api/openapi.json", openapi.openapi_json, SIGNED_IN)
    # The agent console.
    agents_only = allow(Role.AGENT)
    route(app, "GET", "/console", console.console_page, agents_only)
    route(app, "GET", "/api/console/live", console.console_live, agents_only)
    route(app, "GET", "/api/console/today", console.today, agents_only)
    route(app, "GET", "/api/console/softphone", console.softphone, agents_only)
    route(app, "GET", "/api/console/calls/{call_id}", console.screen_pop, agents_only)
    route(app, "POST", "/api/console/calls/{call_id}/wrap-up", console.wrap_up, agents_only)
    # Administration.
    route(app, "GET", "/admin/users", pages.users_page, admin)
    route(app, "GET", "/api/users", auth.api_users, admin)
    route(app, "POST", "/api/users", auth.api_user_create, admin)
    route(app, "PATCH", "/api/users/{user_id}", auth.api_user_update, admin)
    route(app, "GET", "/api/audit", auth.api_audit, admin)
    static = app.router.add_static("/static", str(files("callcenter.web").joinpath("static")))
    for static_route in static:
        app[auth.ACCESS][static_route] = PUBLIC


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
    settings = app[SETTINGS]
    app[POOL] = await create_pool(dsn)
    policy = make_policy(settings.timezone)
    app[STORE] = PgStore(app[POOL], policy=policy)
    app[TICKETS] = TicketService(app[POOL], policy=policy, attachments=AttachmentRules(
        settings.attachments, settings.attachment_max_bytes))
    # Writes of the IVR and the ACD: in order per call, retried through an outage,
    # journaled at shutdown if the database is still away, replayed at start.
    app[WRITER] = OrderedWriter(app[STORE], journal=app[SETTINGS].data_dir / "pending-writes.jsonl")
    await app[WRITER].start()
    yield
    await app[WRITER].close()
    await app[POOL].close()


async def _worker(app: web.Application, *, calls_at_once: int) -> AsyncIterator[None]:
    from callcenter.worker import model_transcribing, run_supervised

    settings = app[SETTINGS]
    transcribing = await asyncio.to_thread(model_transcribing, settings)
    stopping = asyncio.Event()
    task = asyncio.create_task(
        run_supervised(app[DSN], app[STORE], settings, transcribing, stopping,
                       concurrency=calls_at_once), name="worker"
    )
    yield
    stopping.set()
    try:
        await asyncio.wait_for(task, timeout=30)
    except (TimeoutError, asyncio.CancelledError):
        task.cancel()


_PAGE_MESSAGES = {403: "error.forbidden", 404: "error.not_found", 503: "error.unavailable"}


@web.middleware
async def _errors_middleware(request: web.Request, handler: auth.Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ServiceError as exc:
        return await _error(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = ServiceError(exc.text or exc.reason, error=exc.reason.lower().replace(" ", "_"))
        error.status = exc.status
        return await _error(request, error)
    except Exception as exc:
        if is_transient(exc) or isinstance(exc, TimeoutError):
            response = await _error(request, Unavailable("the database is unavailable"))
            response.headers["Retry-After"] = "5"
            return response
        log.exception("unhandled error on %s %r", request.method, request.path)
        return await _error(request, ServiceError("internal error"))


async def _error(request: web.Request, exc: ServiceError) -> web.Response:
    if auth.wants_html(request) and exc.status in _PAGE_MESSAGES:
        try:
            return await pages.error_page(request, exc.status, _PAGE_MESSAGES[exc.status])
        except Exception:  # the page needs the database too: fall back to JSON
            log.debug("error page failed", exc_info=True)
    response = web.Response(text=api.dumps(exc.to_json()), status=exc.status,
                            content_type="application/json")
    if exc.status == 429 and "retry_after_s" in exc.details:
        response.headers["Retry-After"] = str(exc.details["retry_after_s"])
    return response


def _csp(settings: Settings) -> str:
    """The policy, with the softphone's websocket as the one other place to connect."""
    socket = URL(settings.softphone_ws_url)
    if socket.scheme not in ("ws", "wss") or not socket.host:
        return CSP
    return CSP.replace("connect-src 'self'", f"connect-src 'self' {socket.origin()}")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Content-Security-Policy"] = request.app[CSP_KEY]
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"  # personal data: never cached
    if request.secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"


__all__ = ["DSN", "LIVE", "POOL", "SETTINGS", "STORE", "TICKETS", "WRITER", "create_app"]
