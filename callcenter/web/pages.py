"""The HTML pages: server-rendered Jinja2 templates (``templates/``), a little
JavaScript in ``static/`` (no inline scripts or handlers: the CSP forbids them),
every string through the translation tables (``i18n/``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web

from callcenter.auth import sessions
from callcenter.auth import store as users_store
from callcenter.auth.http import (
    LOGIN_COOKIE,
    TooManyAttempts,
    authenticate,
    check_login_form_token,
    login_form_token,
    maybe_principal,
    principal,
)
from callcenter.auth.model import Role, may_see_originals, own_agent
from callcenter.errors import Forbidden, Unauthorized
from callcenter.keys import POOL, TICKETS
from callcenter.qa import view as qa_view
from callcenter.web import i18n, queries, ticket_view
from callcenter.web.api import call_for, limit_of


def language_of(request: web.Request) -> str:
    user = maybe_principal(request)
    return i18n.pick(request.cookies.get(i18n.LANG_COOKIE), user.language if user else None,
                     request.headers.get("Accept-Language"))


async def context(request: web.Request) -> dict[str, Any]:
    """What every template gets: ``t``, the language, the user and the CSRF token."""
    lang = language_of(request)
    user, csrf = (None, None)
    if maybe_principal(request) is not None:
        user, csrf = await sessions.current(request)
    return {"t": i18n.translator(lang), "lang": lang, "user": user, "csrf": csrf,
            "here": request.rel_url.path_qs}


def safe_next(target: str | None, fallback: str = "/") -> str:
    """Only a path on this site (no scheme, no host, no //): no open redirect."""
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or any(ord(c) < 0x20 for c in target):
        return fallback
    return target


async def login_page(request: web.Request) -> web.Response:
    return await _login_form(request, status=200, message="", username="",
                             target=request.query.get("next"))


async def _login_form(request: web.Request, *, status: int, message: str, username: str,
                      target: str | None) -> web.Response:
    ctx = await context(request)
    response = web.Response(status=status, content_type="text/html")
    ctx.update(form_token=login_form_token(response, request), message=message,
               username=username, next=safe_next(target) if target else "")
    response.text = aiohttp_jinja2.render_string("login.html", request, ctx)
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", ""))[:64]
    target = _text(form.get("next"))
    t = i18n.translator(language_of(request))
    try:
        check_login_form_token(request, _text(form.get("csrf_token")))
    except Forbidden:
        return await _login_form(request, status=403, message=t("login.expired"),
                                 username=username, target=target)
    try:
        who = await authenticate(request, username, str(form.get("password", "")))
    except TooManyAttempts as exc:
        response = await _login_form(request, status=429, username=username, target=target,
                                     message=t("login.throttled", seconds=exc.retry_after_s))
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except Unauthorized:
        return await _login_form(request, status=401, message=t("login.failed"),
                                 username=username, target=target)
    await sessions.sign_in(request, who)
    home = "/console" if who.agent_id else "/"
    response = web.HTTPSeeOther(safe_next(target, home))
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


async def logout(request: web.Request) -> web.StreamResponse:
    await users_store.audit(request.app[POOL], action="sign_out", principal=principal(request),
                            ip=request.remote)
    await sessions.sign_out(request)
    raise web.HTTPSeeOther("/login")


async def language(request: web.Request) -> web.StreamResponse:
    """Switch the pages' language (a cookie of this browser)."""
    chosen = request.query.get("set", "")
    response = web.HTTPSeeOther(safe_next(request.query.get("next")))
    if chosen in ("zh-CN", "en"):
        response.set_cookie(i18n.LANG_COOKIE, chosen, max_age=365 * 86400, samesite="Lax",
                            httponly=True, path="/")
    raise response


async def calls_page(request: web.Request) -> web.Response:
    calls = await queries.list_calls(request.app[POOL], limit_of(request),
                                     agent_id=own_agent(principal(request)))
    ctx = await formatting_context(request)
    ctx["calls"] = calls
    return aiohttp_jinja2.render_template("calls.html", request, ctx)


async def call_page(request: web.Request) -> web.Response:
    doc = await call_for(request)
    ctx = await formatting_context(request)
    tickets = [doc["ticket"]] if doc["ticket"] else []
    ctx.update(call=doc["call"], recordings=doc["recordings"],
               tickets=[_ticket_row(x) for x in [*tickets, *doc["other_tickets"]]],
               qa=doc["qa"], transcript=doc["transcript"],
               originals=not doc["transcript_masked"],
               may_see_originals=may_see_originals(principal(request)),
               **qa_view.formatters(ctx["t"], ctx["lang"]))
    return aiohttp_jinja2.render_template("call.html", request, ctx)


async def formatting_context(request: web.Request) -> dict[str, Any]:
    """The common context and the helpers that show ids by name and times in the
    hotline's own zone (``ticket_view.formatters``): the call and QA pages'."""
    ctx = await context(request)
    service = request.app[TICKETS]
    ctx.update(ticket_view.formatters(ctx["t"], service.policy.zone, service.now()))
    return ctx


def _ticket_row(ticket: dict[str, Any]) -> dict[str, Any]:
    """A ticket of the call as its row on the call page: the deadline as a time (the
    countdown's), the values people set in place of the automatic ones."""
    due = ticket.get("deadline")
    return {**ticket, "deadline": datetime.fromisoformat(due) if isinstance(due, str) else due}


async def users_page(request: web.Request) -> web.Response:
    ctx = await context(request)
    table = i18n.table(ctx["lang"])
    ctx.update(users=await users_store.list_users(request.app[POOL]), roles=[r.value for r in Role],
               strings={k: v for k, v in table.items() if k.startswith("users.")})
    return aiohttp_jinja2.render_template("users.html", request, ctx)


async def error_page(request: web.Request, status: int, message_key: str) -> web.Response:
    ctx = await context(request)
    ctx["message"] = ctx["t"](message_key)
    response = aiohttp_jinja2.render_template("error.html", request, ctx)
    response.set_status(status)
    return response
