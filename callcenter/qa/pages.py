"""The QA pages: the review queue and the list of scored calls (``/qa``), one
call's review (``/qa/calls/{call_id}``: a player per leg, the timeline of both
legs with the violations on it, the transcript with the violating words marked,
each rule's automatic and human verdicts, appeals) and the scorecards
(``/qa/scorecards``). They read what the QA API shows the same person
(``qa/http.py``); every change goes through that API from ``static/qa.js``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from pydantic import ValidationError

from callcenter.auth.http import principal
from callcenter.auth.model import Role, own_agent
from callcenter.keys import POOL
from callcenter.qa import store, view
from callcenter.qa.engine import RULE_IDS
from callcenter.qa.http import CallListQuery, in_utc, read_review
from callcenter.qa.store import ResultFilter
from callcenter.web import i18n
from callcenter.web.openapi import invalid
from callcenter.web.pages import formatting_context
from callcenter.web.queries import call_document

REVIEWERS = frozenset({Role.QA, Role.SUPERVISOR})
SCRIPT_STRING_FAMILIES = ("qa.",)
_FILTERS = ("agent", "since", "until", "min_score", "max_score", "rule", "needs_review",
            "reviewed")


async def _context(request: web.Request) -> dict[str, Any]:
    ctx = await formatting_context(request)
    who = principal(request)
    ctx.update(rule_ids=RULE_IDS,
               may_review=who.role in REVIEWERS,
               is_agent=who.role is Role.AGENT,
               strings={k: v for k, v in i18n.table(ctx["lang"]).items()
                        if k.startswith(SCRIPT_STRING_FAMILIES)},
               **view.formatters(ctx["t"], ctx["lang"]))
    return ctx


def _day(text: str | None) -> datetime | None:
    """A date of the filter form (YYYY-MM-DD) as the start of that day, UTC."""
    if not text:
        return None
    return in_utc(datetime.fromisoformat(text))


async def qa_page(request: web.Request) -> web.Response:
    ctx = await _context(request)
    params = {k: v for k, v in request.query.items() if k in _FILTERS and v}
    mine = own_agent(principal(request))
    problem = None
    rows: list[dict[str, Any]] = []
    try:
        query = CallListQuery.model_validate({**params, "since": _day(params.get("since")),
                                              "until": _day(params.get("until"))})
        where = ResultFilter(agent_id=mine if mine is not None else query.agent,
                             since=query.since, until=query.until, min_score=query.min_score,
                             max_score=query.max_score, rule=query.rule,
                             needs_review=query.needs_review, reviewed=query.reviewed)
        rows = await store.list_results(request.app[POOL], where)
    except ValidationError as exc:
        problem = invalid(exc, root=False).message
    except ValueError:
        problem = ctx["t"]("qa.bad_date")
    queue = None
    if mine is None:
        queue = await store.review_queue(request.app[POOL],
                                         since=datetime.now(UTC) - timedelta(days=7))
    ctx.update(rows=rows, queue=queue, params=params, filter_problem=problem)
    response = aiohttp_jinja2.render_template("qa.html", request, ctx)
    response.set_status(400 if problem else 200)
    return response


async def qa_call_page(request: web.Request) -> web.Response:
    call_id = request.match_info["call_id"][:64]
    review = await read_review(request, call_id)  # NotFound for another agent's call
    call = await call_document(request.app[POOL], call_id)
    ctx = await _context(request)
    who = principal(request)
    duration = max([float(r.get("duration_s") or 0) for r in call["recordings"]] or [0.0])
    spans, markers = view.timeline(call["transcript"], review["rules"], duration)
    open_appeals = {a["rule_id"]: a for a in review["appeals"] if a["status"] == "open"}
    ctx.update(
        call=call["call"], recordings=call["recordings"], review=review,
        lines=view.marked_transcript(call["transcript"], review["rules"]),
        spans=spans, markers=markers, open_appeals=open_appeals,
        may_appeal=who.role is Role.AGENT and call["call"].get("agent_id") == who.agent_id,
        ticket=call["ticket"])
    return aiohttp_jinja2.render_template("qa_call.html", request, ctx)


async def scorecards_page(request: web.Request) -> web.Response:
    ctx = await _context(request)
    today = datetime.now(UTC).date()
    try:
        since = _day(request.query.get("since")) or datetime.combine(
            today - timedelta(days=30), datetime.min.time(), UTC)
        until = _day(request.query.get("until")) or datetime.combine(
            today + timedelta(days=1), datetime.min.time(), UTC)
        problem = None if since < until else ctx["t"]("qa.bad_period")
    except ValueError:
        since = until = datetime.now(UTC)
        problem = ctx["t"]("qa.bad_date")
    mine = own_agent(principal(request))
    cards = None if problem else await store.scorecards(
        request.app[POOL], since=since, until=until, agent_id=mine)
    # How often reviewers agreed with the machine: for QA staff and managers.
    agreement = None if problem or mine is not None else await store.agreement(
        request.app[POOL], since=since)
    ctx.update(cards=cards, agreement=agreement, since=since.date().isoformat(),
               until=(until - timedelta(days=1)).date().isoformat(), filter_problem=problem,
               list_url=lambda **kw: "/qa?" + urlencode({k: v for k, v in kw.items() if v}))
    response = aiohttp_jinja2.render_template("qa_scorecards.html", request, ctx)
    response.set_status(400 if problem else 200)
    return response
