"""The agent console's routes: the page, the live stream of the agent's own state
and offered call (server-sent events from the call distributor), the screen pop,
the figures of the day, and the wrap-up."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from callcenter import residents
from callcenter.auth.http import audit_request, principal
from callcenter.auth.model import Principal
from callcenter.console import store
from callcenter.console.model import (
    CATEGORIES,
    DISPOSITIONS,
    SEVERITIES,
    URGENCIES,
    check_wrap_up,
    prefill,
    to_confirm,
)
from callcenter.errors import BadRequest, Forbidden, NotFound, Unavailable
from callcenter.keys import LIVE, POOL, SETTINGS, STORE, TICKETS
from callcenter.sip.accounts import web_name
from callcenter.stats import StateChange, occupancy, time_in_state
from callcenter.web import i18n
from callcenter.web.api import dumps, push_changes
from callcenter.web.pages import context

PUSH_GRACE_S = 0.05  # a burst of changes is one push; a screen pop must not wait


def _agent_of(request: web.Request) -> tuple[Principal, str]:
    who = principal(request)
    if who.agent_id is None:
        raise Forbidden("the console is for agent users linked to an agent")
    return who, who.agent_id


async def console_page(request: web.Request) -> web.Response:
    who, _agent_id = _agent_of(request)
    ctx = await context(request)
    table = i18n.table(ctx["lang"])
    ctx.update(agent_id=who.agent_id, categories=CATEGORIES, urgencies=URGENCIES,
               severities=SEVERITIES,
               dispositions=DISPOSITIONS,
               strings={k: v for k, v in table.items()
                        if k.startswith(("console.", "role.", "category.", "queue."))})
    return aiohttp_jinja2.render_template("console.html", request, ctx)


async def console_live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``agent`` with the agent's live view (state, the call
    offered or on the line, wrap-up time left, their queues' waiting calls), now
    and after every change of it."""
    _who, agent_id = _agent_of(request)
    acd = request.app[LIVE].get("acd")
    if acd is None:
        raise Unavailable("the call distributor is not running in this process")
    return await push_changes(request, acd, "agent", lambda: acd.agent_view(agent_id),
                              grace_s=PUSH_GRACE_S)


async def _my_call(request: web.Request, agent_id: str) -> dict[str, Any]:
    """The call of the path if it is this agent's: offered to them now, on their
    line, in their wrap-up, or answered by them before."""
    call_id = request.match_info["call_id"]
    call = await store.call_context(request.app[POOL], call_id)
    if call is None:
        raise NotFound(f"no call {call_id}", call_id=call_id)
    if call["agent_id"] == agent_id:
        return call
    acd = request.app[LIVE].get("acd")
    view = acd.agent_view(agent_id) if acd else None
    offered = (view or {}).get("call") or {}
    wrapping = (view or {}).get("wrap_up") or {}
    if call_id in (offered.get("call_id"), wrapping.get("call_id")):
        return call
    raise NotFound(f"no call {call_id}", call_id=call_id)


async def _suggested(pool: Any, call: dict[str, Any]
                     ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The caller's directory entry, and the ticket a wrap-up starts from."""
    resident = await residents.find(pool, call["caller_number"])
    return resident, prefill(queue=call["queue"], priority=call["priority"],
                             resident=resident, caller_number=call["caller_number"])


async def screen_pop(request: web.Request) -> web.Response:
    """Who is calling: the number, the resident's name, address and VIP kind when
    known, the IVR choice, the caller's open and recent tickets, and the ticket
    the wrap-up form starts from."""
    _who, agent_id = _agent_of(request)
    call = await _my_call(request, agent_id)
    pool = request.app[POOL]
    resident, suggested = await _suggested(pool, call)
    ticket = await store.call_ticket(pool, call["id"])
    body = {
        "call": call,
        "resident": resident,
        "tickets": await store.caller_tickets(pool, call["caller_number"],
                                              exclude_call=call["id"]),
        "ticket": ticket,
        "form": {k: (ticket or {}).get(k) or suggested.get(k, "") for k in suggested},
        "confirm": to_confirm(ticket),
    }
    return web.json_response(body, dumps=dumps)


async def wrap_up(request: web.Request) -> web.Response:
    """``{"disposition", "ticket": {category, urgency, caller_name, building, unit,
    room, description}, "ready": bool}``: saved as the agent's values (the
    analysis never overwrites them); ``ready`` ends the wrap-up at once."""
    who, agent_id = _agent_of(request)
    call = await _my_call(request, agent_id)
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest("body must be JSON") from exc
    wrap, problems = check_wrap_up(body)
    if wrap is None:
        raise BadRequest("the wrap-up is not complete", problems=problems)
    pool = request.app[POOL]
    _resident, suggested = await _suggested(pool, call)
    number = await store.save_wrap_up(
        pool, call["id"], by=who.username, disposition=wrap.disposition, fields=wrap.ticket,
        suggested=suggested, phone=call["caller_number"], tickets=request.app[TICKETS],
        role=who.role.value)
    await audit_request(request, "wrap_up_saved", "call", call["id"],
                        {"disposition": wrap.disposition, "ticket": number,
                         "fields": sorted(wrap.ticket or {})})
    if wrap.ready:
        await request.app[STORE].request_agent(agent_id, "ready", None,
                                               by=f"web:{who.username}")
    return web.json_response({"call_id": call["id"], "ticket_number": number,
                              "disposition": wrap.disposition, "ready": wrap.ready})


async def softphone(request: web.Request) -> web.Response:
    """What the browser softphone registers with: the agent's WebRTC endpoint
    (``<user>-web``) and the account's digest HA1 (no password exists to give)."""
    _who, agent_id = _agent_of(request)
    account = await store.sip_account(request.app[POOL], agent_id)
    if account is None:
        raise NotFound("this agent has no SIP account (callcenter agents add)",
                       agent_id=agent_id)
    settings = request.app[SETTINGS]
    return web.json_response({
        "ws_url": settings.softphone_ws_url,
        "uri": f"sip:{web_name(account['username'])}@{settings.sip_host}",
        "authorization_user": account["username"], "ha1": account["ha1"],
        "realm": account["realm"], "display_name": account["name"]})


async def today(request: web.Request) -> web.Response:
    """The agent's figures since local midnight: calls answered, AHT, ASA, time in
    each state and occupancy."""
    _who, agent_id = _agent_of(request)
    zone = ZoneInfo(request.app[SETTINGS].timezone)
    now = datetime.now(zone)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    figures = await store.today(request.app[POOL], agent_id, midnight)
    changes = [StateChange(**row) for row in figures.pop("history")]
    spent = time_in_state(changes, midnight, now).get(agent_id, {})
    return web.json_response({**figures, "since": midnight.isoformat(),
                              "time_in_state_s": spent, "occupancy": occupancy(spent)},
                             dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))
