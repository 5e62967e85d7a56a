"""The ticket pages: the list (filters in the URL, paging, a form to open a
walk-in or online ticket) and one ticket (its values, the classifier's
judgement, clocks, history, notes, files, alerts, and the actions of its
status). Both read what the ticket API shows the same person
(``tickets/http.py``); every change goes through that API from the page's
script (``static/ticket.js``, ``static/tickets.js``) with the session's CSRF
token."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from pydantic import ValidationError

from callcenter.auth import store as users_store
from callcenter.auth.http import principal
from callcenter.auth.model import Principal, Role
from callcenter.core import CATEGORIES, COMPLAINT_SEVERITIES, URGENCIES, VIP_KINDS
from callcenter.errors import BadRequest
from callcenter.keys import POOL, TICKETS
from callcenter.tickets import lifecycle as lc
from callcenter.tickets.http import (
    TicketListQuery,
    TicketOut,
    alert_recipients,
    find_tickets,
    read_ticket,
)
from callcenter.web import i18n
from callcenter.web import ticket_view as view
from callcenter.web.openapi import invalid
from callcenter.web.pages import context

# The strings the pages' scripts need (countdowns, errors, what was done).
SCRIPT_STRING_FAMILIES = ("tickets.",)


async def tickets_page(request: web.Request) -> web.Response:
    params = view.list_params(request.query)
    ctx = await _context(request)
    try:
        query = TicketListQuery.model_validate(params)
    except ValidationError as exc:
        problem = _bad_filters(ctx, invalid(exc, root=False))
        ctx.update(rows=[], next_url=None, prev_url=None, filter_problem=problem)
        return _render("tickets.html", request, ctx, status=400, params=params)
    page = await find_tickets(request, query)
    paged = view.filters_only(params)
    ctx.update(rows=[_list_row(row) for row in page.rows], filter_problem=None,
               next_url=_list_url({**paged, "before": str(page.next_before)})
               if page.next_before else None,
               prev_url=_list_url({**paged, "after": str(page.prev_after)})
               if page.prev_after else None)
    return _render("tickets.html", request, ctx, params=params)


async def ticket_page(request: web.Request) -> web.Response:
    ticket = await read_ticket(request, request.match_info["number"][:64])
    ctx = await _context(request)
    who = principal(request)
    actions = view.allowed_actions(ticket.status, who.role)
    history = [entry.model_dump() for entry in ticket.history]
    ctx.update(
        ticket=ticket, actions=actions, may_change=view.may_change(who.role),
        may_edit=view.may_edit(ticket.status, who.role),
        history=history, notes=view.notes_of(history),
        corrections=view.corrections(ticket.automatic.model_dump(), ticket.human, history,
                                     ticket.human_by, ticket.human_at),
        to_confirm=view.to_confirm(ticket.judgement, ticket.human),
        evidence=view.evidence(ticket.judgement),
        complaint=ticket.judgement.get("complaint") or {},
        attachment_names={a.id: a.filename for a in ticket.attachments},
        acknowledgeable=_acknowledgeable(ticket, who),
        owners=await _owners(request) if "assign" in actions else [])
    return _render("ticket.html", request, ctx)


# ---- helpers ----------------------------------------------------------------------


async def _context(request: web.Request) -> dict[str, Any]:
    """What both pages get besides the common context: the vocabularies, the
    hotline's clock and zone, and the helpers the templates format with."""
    ctx = await context(request)
    t = ctx["t"]
    service = request.app[TICKETS]
    zone, now = service.policy.zone, service.now()
    departments = service.policy.departments
    ctx.update(
        now=now, statuses=lc.STATUSES, categories=CATEGORIES, urgencies=URGENCIES,
        severities=COMPLAINT_SEVERITIES, vip_kinds=VIP_KINDS,
        channels=view.CHANNELS_RECEIVED, departments=list(departments.names),
        may_create=view.may_change(principal(request).role), me=principal(request).username,
        department=lambda d: view.department_label(t, d, departments.name_of),
        role_label=lambda role: view.role_label(t, role),
        details=lambda entry: view.history_details(t, entry, zone, departments.name_of),
        strings=_script_strings(ctx["lang"]), **view.formatters(t, zone, now))
    return ctx


def _render(template: str, request: web.Request, ctx: dict[str, Any], *, status: int = 200,
            params: dict[str, str] | None = None) -> web.Response:
    if params is not None:
        ctx.update(params=params, first_url=_list_url(view.filters_only(params)))
    response = aiohttp_jinja2.render_template(template, request, ctx)
    response.set_status(status)
    return response


def _script_strings(language: str) -> dict[str, str]:
    table = i18n.table(language)
    return {k: v for k, v in table.items() if k.startswith(SCRIPT_STRING_FAMILIES)}


def _list_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "to_confirm": view.to_confirm(row.get("judgement") or {},
                                                 row.get("human") or {})}


def _list_url(params: dict[str, str]) -> str:
    return "/tickets" + (f"?{urlencode(params)}" if params else "")


def _bad_filters(ctx: dict[str, Any], error: BadRequest) -> str:
    t = ctx["t"]
    names = dict.fromkeys(str(f["field"]) for f in error.details.get("fields", []))
    return t("tickets.bad_filters", fields="、".join(t(f"tickets.field.{n}") for n in names))


def _acknowledgeable(ticket: TicketOut, who: Principal) -> set[int]:
    """The open alerts of the ticket this person handles (the API's own rule)."""
    if not view.may_change(who.role):
        return set()
    mine = alert_recipients(who)
    return {a.id for a in ticket.alerts
            if a.acknowledged_at is None and (mine is None or a.to in mine)}


async def _owners(request: web.Request) -> list[dict[str, Any]]:
    """Who a ticket may be assigned to: the enabled users who follow tickets up."""
    return [user for user in await users_store.list_users(request.app[POOL])
            if not user["disabled"] and view.may_change(Role(user["role"]))]


__all__ = ["ticket_page", "tickets_page"]
