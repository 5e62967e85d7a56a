"""The QA API: the review queue, scored calls, verdicts, appeals, agreement and
scorecards.

Who may do what is declared with the routes (``web/app.py``): QA staff and
supervisors review and decide appeals; admins read; an agent reads their own
scored calls and scorecard and appeals their own results. Another agent's call
is "not found" to an agent. Every verdict, appeal and decision is also written
to the audit log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from callcenter.auth.http import audit_request, principal
from callcenter.auth.model import Principal, Role, own_agent
from callcenter.errors import BadRequest, NotFound
from callcenter.keys import POOL
from callcenter.qa import store
from callcenter.qa.engine import RULE_IDS
from callcenter.qa.store import Person, ResultFilter
from callcenter.web.openapi import TEXT, Strict, endpoint, json_body, query_of

Comment = Annotated[str, StringConstraints(max_length=2000, pattern=TEXT)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000,
                                          pattern=TEXT)]
AgentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
RuleId = Literal[RULE_IDS]  # type: ignore[valid-type]


class VerdictBody(Strict):
    """``confirm``/``overturn`` the machine's verdict, or rule a rule it left
    undecided: ``pass``, ``fail``, ``not_applicable``. A verdict against the
    machine's needs a comment."""

    action: Literal["confirm", "overturn", "pass", "fail", "not_applicable"]
    comment: Comment = ""


class AppealBody(Strict):
    reason: Reason


class DecisionBody(Strict):
    upheld: bool
    comment: Reason


def in_utc(value: datetime | None) -> datetime | None:
    """A time given without a zone is UTC (2026-01-01 is that day's start)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


# A date or a time; without a zone, UTC.
When = Annotated[datetime, AfterValidator(in_utc)]


class CallListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: AgentId | None = None
    since: When | None = None
    until: When | None = None
    min_score: Annotated[float, Field(ge=0, le=100)] | None = None
    max_score: Annotated[float, Field(ge=0, le=100)] | None = None
    rule: RuleId | None = None
    needs_review: bool | None = None
    reviewed: bool | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 100


class PeriodQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: When | None = None
    until: When | None = None
    agent: AgentId | None = None


class QueueQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: Annotated[int, Field(ge=1, le=90)] = 7
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class ScoredCallOut(BaseModel):
    call_id: str
    agent_id: str | None
    started_at: datetime
    caller_number: str | None
    score: float
    final_score: float
    needs_review: int
    reviewed_rules: int
    rules_version: str
    open_appeals: int


class CallListOut(BaseModel):
    items: list[ScoredCallOut]


class QueueOut(BaseModel):
    appeals: list[dict[str, Any]]
    calls: list[dict[str, Any]]


class ReviewOut(BaseModel):
    """A call's QA: each rule's automatic verdict, the person's, the final one."""

    score: float
    final_score: float
    rules_version: str
    source: str
    needs_review: int
    reviewed_rules: int
    scored_at: datetime
    rules: list[dict[str, Any]]
    reviews: list[dict[str, Any]]
    appeals: list[dict[str, Any]]
    earlier_versions: list[dict[str, Any]]


class VerdictOut(BaseModel):
    call_id: str
    rule_id: str
    passed: bool | None
    final_score: float


class AppealOut(BaseModel):
    appeal: int
    status: str
    call_id: str | None = None
    final_score: float | None = None


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status,
                        content_type="application/json")


def _person(who: Principal) -> Person:
    return Person(who.username, who.role.value)


async def _visible_call(request: web.Request, call_id: str) -> dict[str, Any]:
    """The call, if this user may see its QA (an agent: their own calls only)."""
    row = await request.app[POOL].fetchrow("SELECT id, agent_id FROM calls WHERE id = $1",
                                           call_id[:64])
    mine = own_agent(principal(request))
    if row is None or (mine is not None and row["agent_id"] != mine):
        raise NotFound(f"no call {call_id}", call_id=call_id[:64])
    return dict(row)


def _rule(request: web.Request) -> str:
    rule_id = request.match_info["rule_id"]
    if rule_id not in RULE_IDS:
        raise NotFound(f"no rule {rule_id[:40]}", error="qa.unknown_rule")
    return rule_id


@endpoint("Review queue: open appeals, then calls the machine could not decide, low "
          "scores, and a random sample of each agent's calls", query=QueueQuery,
          response=QueueOut)
async def queue(request: web.Request) -> web.Response:
    q = query_of(request, QueueQuery)
    since = datetime.now(UTC) - timedelta(days=q.days)
    doc = await store.review_queue(request.app[POOL], since=since, limit=q.limit)
    return _json(QueueOut.model_validate(doc))


@endpoint("Scored calls, newest first, filtered", query=CallListQuery, response=CallListOut)
async def list_calls(request: web.Request) -> web.Response:
    q = query_of(request, CallListQuery)
    mine = own_agent(principal(request))
    if mine is not None and q.agent not in (None, mine):
        raise NotFound("no such agent among your calls", error="not_found")
    where = ResultFilter(agent_id=mine if mine is not None else q.agent, since=q.since,
                         until=q.until, min_score=q.min_score, max_score=q.max_score,
                         rule=q.rule, needs_review=q.needs_review, reviewed=q.reviewed,
                         limit=q.limit)
    rows = await store.list_results(request.app[POOL], where)
    return _json(CallListOut(items=[ScoredCallOut.model_validate(r) for r in rows]))


async def read_review(request: web.Request, call_id: str) -> dict[str, Any]:
    """A call's QA as the person asking may see it (for the API and the pages)."""
    await _visible_call(request, call_id)
    doc = await store.call_review(request.app[POOL], call_id)
    if doc is None:
        raise NotFound(f"call {call_id} has no QA result", error="qa.not_scored",
                       call_id=call_id)
    return doc


@endpoint("A call's QA: automatic and human verdicts per rule, history, appeals, "
          "earlier rule sets", response=ReviewOut, errors=(404,))
async def get_call(request: web.Request) -> web.Response:
    doc = await read_review(request, request.match_info["call_id"])
    return _json(ReviewOut.model_validate(doc))


@endpoint("Confirm or overturn one rule's result (QA, supervisors)", body=VerdictBody,
          response=VerdictOut, errors=(404, 422))
async def post_verdict(request: web.Request) -> web.Response:
    body = await json_body(request, VerdictBody)
    call_id, rule_id = request.match_info["call_id"][:64], _rule(request)
    await _visible_call(request, call_id)
    out = await store.record_verdict(request.app[POOL], call_id, rule_id, action=body.action,
                                     comment=body.comment, by=_person(principal(request)))
    await audit_request(request, "qa_verdict", "call", call_id,
                        {"rule": rule_id, "action": body.action})
    return _json(VerdictOut.model_validate(out))


@endpoint("Appeal one failed rule of your own call (agents)", body=AppealBody,
          response=AppealOut, status=201, errors=(404, 409, 422))
async def post_appeal(request: web.Request) -> web.Response:
    body = await json_body(request, AppealBody)
    who = principal(request)
    call_id, rule_id = request.match_info["call_id"][:64], _rule(request)
    call = await _visible_call(request, call_id)
    if who.role is not Role.AGENT or not who.agent_id or call["agent_id"] != who.agent_id:
        raise NotFound(f"no call {call_id} of yours", call_id=call_id)
    appeal = await store.open_appeal(request.app[POOL], call_id, rule_id, reason=body.reason,
                                     by=_person(who), agent_id=who.agent_id)
    await audit_request(request, "qa_appeal", "call", call_id, {"rule": rule_id,
                                                                "appeal": appeal})
    return _json(AppealOut(appeal=appeal, status="open", call_id=call_id), status=201)


@endpoint("Uphold or reject an appeal, with a comment (QA, supervisors)", body=DecisionBody,
          response=AppealOut, errors=(404, 409, 422))
async def post_decision(request: web.Request) -> web.Response:
    body = await json_body(request, DecisionBody)
    try:
        appeal_id = int(request.match_info["appeal_id"])
    except ValueError:
        raise NotFound("no such appeal", error="qa.no_appeal") from None
    if not 0 < appeal_id < 2**62:
        raise NotFound("no such appeal", error="qa.no_appeal")
    out = await store.decide_appeal(request.app[POOL], appeal_id, upheld=body.upheld,
                                    comment=body.comment, by=_person(principal(request)))
    await audit_request(request, "qa_appeal_decided", "call", out["call_id"],
                        {"appeal": appeal_id, "upheld": body.upheld})
    return _json(AppealOut.model_validate(out))


def _period(q: PeriodQuery) -> tuple[datetime, datetime]:
    until = q.until or datetime.now(UTC)
    since = q.since or until - timedelta(days=30)
    if since >= until:
        raise BadRequest("since must be before until", error="invalid_input",
                         fields=[{"field": "since", "problem": "not before until"}])
    return since, until


@endpoint("How often people agreed with the machine, per rule and per rule-set version",
          query=PeriodQuery, response=None)
async def agreement(request: web.Request) -> web.Response:
    q = query_of(request, PeriodQuery)
    since, _ = _period(q)
    return web.json_response(await store.agreement(request.app[POOL], since=since))


@endpoint("Scorecards per agent over a period (agents: their own) and the most frequent "
          "violations", query=PeriodQuery, response=None)
async def scorecards(request: web.Request) -> web.Response:
    q = query_of(request, PeriodQuery)
    since, until = _period(q)
    mine = own_agent(principal(request))
    agent = mine if mine is not None else q.agent
    doc = await store.scorecards(request.app[POOL], since=since, until=until, agent_id=agent)
    return web.json_response(doc)
