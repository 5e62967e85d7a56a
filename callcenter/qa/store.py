"""QA results, people's verdicts and appeals in PostgreSQL.

The machine's side (``qa_results``, ``qa_rule_results``) is replaced when a call
is scored again; a result of another rule set is first kept whole in
``qa_result_versions``. People's side (``qa_reviews``, ``qa_appeals``) is only
ever appended to or decided, never touched by scoring. ``final_score`` on the
result row is kept equal to ``review.final_score`` of both sides, in the same
transaction as every change of either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg

from callcenter import pii
from callcenter.core import QaResult
from callcenter.errors import Conflict, NotFound
from callcenter.qa import review
from callcenter.qa.review import (
    DEFAULT_POLICY,
    Action,
    Candidate,
    QueuePolicy,
    ReviewFact,
    RuleLine,
    Verdict,
)


async def save_result(conn: asyncpg.Connection, call_id: str, qa: QaResult, *, source: str,
                      rules_text: str = "") -> None:
    """Make ``qa`` the call's current automatic result (inside the caller's
    transaction); see ``save_results``."""
    if rules_text:
        await conn.execute(
            "INSERT INTO qa_rule_sets (version, content) VALUES ($1, $2)"
            " ON CONFLICT (version) DO NOTHING", qa.rules_version or "unversioned", rules_text)
    await save_results(conn, [(call_id, qa, source)])


async def save_results(conn: asyncpg.Connection,
                       items: Sequence[tuple[str, QaResult, str]]) -> None:
    """Make each (call id, result, source) the call's current automatic result, in
    a few statements whatever the number (inside the caller's transaction). The
    same rule set scoring again replaces its own result (a retried job leaves
    one); another rule set's result is kept whole in ``qa_result_versions`` first.
    People's verdicts are read, never written: the final score is computed with
    them."""
    ids = [call_id for call_id, _, _ in items]
    versions = [qa.rules_version or "unversioned" for _, qa, _ in items]
    # The rows people's verdicts also lock: a verdict never races a re-score.
    await conn.execute("SELECT 1 FROM qa_results WHERE call_id = ANY($1::text[]) FOR UPDATE",
                       ids)
    await conn.execute(_ARCHIVE_SQL, ids, versions)
    await conn.execute("DELETE FROM qa_results WHERE call_id = ANY($1::text[])", ids)
    verdicts = await _verdicts_of(conn, ids)
    masking = await _masked_runs_of(conn, ids)
    heads, rules = [], []
    for (call_id, qa, source), version in zip(items, versions, strict=True):
        lines = [RuleLine(r.id, r.weight, r.passed, r.needs_review,
                          verdicts.get(call_id, {}).get(r.id)) for r in qa.rules]
        heads.append((call_id, qa.score, source, version, qa.needs_review,
                      review.final_score(lines), sum(1 for x in lines if x.reviewed)))
        # Quotes are stored with personal numbers masked as in the stored transcript
        # (pii.py), whatever was scored.
        runs = masking.get(call_id, [])
        rules += [(call_id, r.id, r.passed, r.weight, pii.mask_quotes(r.detail, runs),
                   [asdict(pii.masked_evidence(e, runs)) for e in r.evidence],
                   r.needs_review, r.coaching) for r in qa.rules]
    await conn.executemany(
        "INSERT INTO qa_results (call_id, score, source, rules_version, needs_review,"
        " final_score, reviewed_rules) VALUES ($1, $2, $3, $4, $5, $6, $7)", heads)
    await conn.executemany(
        "INSERT INTO qa_rule_results (call_id, rule_id, passed, weight, detail, evidence,"
        " needs_review, coaching) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", rules)


_ARCHIVE_SQL = """
INSERT INTO qa_result_versions (call_id, rules_version, score, source, needs_review, rules,
                                scored_at)
SELECT q.call_id, q.rules_version, q.score, q.source, q.needs_review,
       COALESCE((SELECT jsonb_agg(jsonb_build_object(
                   'id', r.rule_id, 'passed', r.passed, 'weight', r.weight,
                   'detail', r.detail, 'evidence', r.evidence,
                   'needs_review', r.needs_review, 'coaching', r.coaching) ORDER BY r.rule_id)
                 FROM qa_rule_results r WHERE r.call_id = q.call_id), '[]'::jsonb),
       q.created_at
FROM qa_results q JOIN unnest($1::text[], $2::text[]) AS n(call_id, version)
  ON n.call_id = q.call_id AND q.rules_version <> n.version
ON CONFLICT (call_id, rules_version) DO UPDATE SET score = EXCLUDED.score,
  source = EXCLUDED.source, needs_review = EXCLUDED.needs_review, rules = EXCLUDED.rules,
  scored_at = EXCLUDED.scored_at, replaced_at = now()
"""


async def _masked_runs_of(conn: asyncpg.Connection, ids: list[str]
                          ) -> dict[str, list[pii.MaskedRun]]:
    """What masking changed in each call's stored transcript."""
    pairs: dict[str, list[tuple[str, str]]] = {}
    for r in await conn.fetch(
            "SELECT call_id, original_text, text FROM transcript_segments"
            " WHERE call_id = ANY($1::text[]) AND original_text IS NOT NULL", ids):
        pairs.setdefault(r["call_id"], []).append((r["original_text"], r["text"]))
    return {call_id: pii.masked_runs(found) for call_id, found in pairs.items()}


async def _verdicts_of(conn: asyncpg.Connection, call_ids: Sequence[str]
                       ) -> dict[str, dict[str, Verdict]]:
    """The verdicts in force (the latest per rule) of these calls."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (call_id, rule_id) call_id, rule_id, passed, comment, reviewer,"
        " at, appeal_id FROM qa_reviews WHERE call_id = ANY($1::text[])"
        " ORDER BY call_id, rule_id, id DESC", list(call_ids))
    out: dict[str, dict[str, Verdict]] = {}
    for r in rows:
        out.setdefault(r["call_id"], {})[r["rule_id"]] = Verdict(
            rule_id=r["rule_id"], passed=r["passed"], comment=r["comment"],
            reviewer=r["reviewer"], at=r["at"], appeal_id=r["appeal_id"])
    return out


async def _lines(conn: asyncpg.Connection, call_id: str) -> list[RuleLine]:
    rules = await conn.fetch(
        "SELECT rule_id, passed, weight, needs_review FROM qa_rule_results"
        " WHERE call_id = $1 ORDER BY rule_id", call_id)
    verdicts = {v.rule_id: v for v in await _verdicts(conn, call_id)}
    return [RuleLine(id=r["rule_id"], weight=r["weight"], automatic=r["passed"],
                     needs_review=r["needs_review"], verdict=verdicts.get(r["rule_id"]))
            for r in rules]


async def _verdicts(conn: asyncpg.Connection, call_id: str) -> list[Verdict]:
    return list((await _verdicts_of(conn, [call_id])).get(call_id, {}).values())


async def refresh_final(conn: asyncpg.Connection, call_id: str) -> float:
    lines = await _lines(conn, call_id)
    final = review.final_score(lines)
    await conn.execute(
        "UPDATE qa_results SET final_score = $2, reviewed_rules = $3 WHERE call_id = $1",
        call_id, final, sum(1 for line in lines if line.reviewed))
    return final


async def _line(conn: asyncpg.Connection, call_id: str, rule_id: str) -> RuleLine:
    head = await conn.fetchrow(
        "SELECT rules_version FROM qa_results WHERE call_id = $1 FOR UPDATE", call_id)
    if head is None:
        raise NotFound(f"call {call_id} has no QA result", error="qa.not_scored",
                       call_id=call_id)
    line = next((x for x in await _lines(conn, call_id) if x.id == rule_id), None)
    if line is None:
        raise NotFound(f"call {call_id} has no result for rule {rule_id}",
                       error="qa.unknown_rule", call_id=call_id, rule=rule_id)
    return line


@dataclass(frozen=True, slots=True)
class Person:
    username: str
    role: str


async def record_verdict(pool: asyncpg.Pool, call_id: str, rule_id: str, *, action: Action,
                         comment: str, by: Person) -> dict[str, Any]:
    """A reviewer's ruling on one rule; returns the call's scores after it."""
    async with pool.acquire() as conn, conn.transaction():
        line = await _line(conn, call_id, rule_id)
        passed = review.verdict_value(line, action, comment)
        await _insert_review(conn, call_id, line, passed, comment, by, appeal_id=None)
        final = await refresh_final(conn, call_id)
        return {"call_id": call_id, "rule_id": rule_id, "passed": passed, "final_score": final}


async def _insert_review(conn: asyncpg.Connection, call_id: str, line: RuleLine,
                         passed: bool | None, comment: str, by: Person,
                         appeal_id: int | None) -> None:
    version = await conn.fetchval(
        "SELECT rules_version FROM qa_results WHERE call_id = $1", call_id)
    await conn.execute(
        "INSERT INTO qa_reviews (call_id, rule_id, passed, automatic, automatic_review,"
        " rules_version, comment, reviewer, role, appeal_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        call_id, line.id, passed, line.automatic, line.needs_review, version,
        comment.strip(), by.username, by.role, appeal_id)


async def open_appeal(pool: asyncpg.Pool, call_id: str, rule_id: str, *, reason: str,
                      by: Person, agent_id: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        line = await _line(conn, call_id, rule_id)
        pending = await conn.fetchval(
            "SELECT count(*) FROM qa_appeals WHERE call_id = $1 AND rule_id = $2"
            " AND status = 'open'", call_id, rule_id)
        review.check_appeal(line, reason, open_appeal=bool(pending))
        return int(await conn.fetchval(
            "INSERT INTO qa_appeals (call_id, rule_id, agent_id, appellant, reason)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            call_id, rule_id, agent_id, by.username, reason.strip()))


async def decide_appeal(pool: asyncpg.Pool, appeal_id: int, *, upheld: bool, comment: str,
                        by: Person) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        appeal = await conn.fetchrow(
            "SELECT * FROM qa_appeals WHERE id = $1 FOR UPDATE", appeal_id)
        if appeal is None:
            raise NotFound(f"no appeal {appeal_id}", error="qa.no_appeal", appeal=appeal_id)
        if appeal["status"] != "open":
            raise Conflict(f"appeal {appeal_id} is already {appeal['status']}",
                           error="qa.appeal_decided", appeal=appeal_id)
        passed = review.appeal_verdict(upheld, comment)
        line = await _line(conn, appeal["call_id"], appeal["rule_id"])
        await _insert_review(conn, appeal["call_id"], line, passed, comment, by,
                             appeal_id=appeal_id)
        await conn.execute(
            "UPDATE qa_appeals SET status = $2, decided_by = $3, decision_comment = $4,"
            " decided_at = now() WHERE id = $1",
            appeal_id, "upheld" if upheld else "rejected", by.username, comment.strip())
        final = await refresh_final(conn, appeal["call_id"])
        return {"appeal": appeal_id, "status": "upheld" if upheld else "rejected",
                "call_id": appeal["call_id"], "final_score": final}


# ---- reading ---------------------------------------------------------------------


def _plain(row: Any) -> dict[str, Any]:
    out = dict(row)
    for k, v in out.items():
        if isinstance(v, datetime):
            out[k] = v.isoformat()
        elif isinstance(v, str) and k in ("evidence", "rules"):
            out[k] = json.loads(v)
    return out


async def call_review(pool: asyncpg.Pool, call_id: str) -> dict[str, Any] | None:
    """A call's QA: the current result with each rule's automatic and human side,
    the review history, appeals and the results of earlier rule sets."""
    async with pool.acquire() as conn:
        head = await conn.fetchrow("SELECT * FROM qa_results WHERE call_id = $1", call_id)
        if head is None:
            return None
        rules = await conn.fetch(
            "SELECT rule_id AS id, passed, weight, detail, evidence, needs_review, coaching"
            " FROM qa_rule_results WHERE call_id = $1", call_id)
        verdicts = {v.rule_id: v for v in await _verdicts(conn, call_id)}
        history = await conn.fetch(
            "SELECT id, rule_id, passed, automatic, automatic_review, rules_version, comment,"
            " reviewer, role, appeal_id, at FROM qa_reviews WHERE call_id = $1 ORDER BY id",
            call_id)
        appeals = await conn.fetch(
            "SELECT * FROM qa_appeals WHERE call_id = $1 ORDER BY id", call_id)
        versions = await conn.fetch(
            "SELECT rules_version, score, source, needs_review, rules, scored_at, replaced_at"
            " FROM qa_result_versions WHERE call_id = $1 ORDER BY scored_at", call_id)
    order = {rid: i for i, rid in enumerate(review.RULE_IDS)}
    lines = []
    for r in sorted(rules, key=lambda r: order.get(r["id"], 99)):
        v = verdicts.get(r["id"])
        line = RuleLine(r["id"], r["weight"], r["passed"], r["needs_review"], v)
        lines.append({**_plain(r), "final": line.final,
                      "human": None if v is None else {
                          "passed": v.passed, "comment": v.comment, "by": v.reviewer,
                          "at": v.at.isoformat() if v.at else None,
                          "appeal_id": v.appeal_id}})
    return {
        "score": head["score"], "final_score": head["final_score"],
        "rules_version": head["rules_version"], "source": head["source"],
        "needs_review": head["needs_review"], "reviewed_rules": head["reviewed_rules"],
        "scored_at": head["created_at"].isoformat(),
        "rules": lines,
        "reviews": [_plain(h) for h in history],
        "appeals": [_plain(a) for a in appeals],
        "earlier_versions": [_plain(v) for v in versions],
    }


@dataclass(frozen=True, slots=True)
class ResultFilter:
    agent_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_score: float | None = None
    max_score: float | None = None
    rule: str | None = None          # calls whose final verdict fails this rule
    needs_review: bool | None = None
    reviewed: bool | None = None
    limit: int = 100


_LIST_SQL = """
SELECT q.call_id, c.agent_id, c.started_at, c.caller_number, q.score, q.final_score,
       q.needs_review, q.reviewed_rules, q.rules_version,
       (SELECT count(*) FROM qa_appeals a WHERE a.call_id = q.call_id AND a.status = 'open')
         AS open_appeals
FROM qa_results q JOIN calls c ON c.id = q.call_id
WHERE ($1::text IS NULL OR c.agent_id = $1)
  AND ($2::timestamptz IS NULL OR c.started_at >= $2)
  AND ($3::timestamptz IS NULL OR c.started_at < $3)
  AND ($4::float8 IS NULL OR q.final_score >= $4)
  AND ($5::float8 IS NULL OR q.final_score <= $5)
  AND ($6::text IS NULL OR EXISTS (
        SELECT 1 FROM qa_rule_results r
        LEFT JOIN LATERAL (SELECT v.passed FROM qa_reviews v WHERE v.call_id = r.call_id
                           AND v.rule_id = r.rule_id ORDER BY v.id DESC LIMIT 1) h ON true
        WHERE r.call_id = q.call_id AND r.rule_id = $6
          AND CASE WHEN h IS NULL THEN r.passed = false AND NOT r.needs_review
                   ELSE h.passed = false END))
  AND ($7::bool IS NULL OR (q.needs_review > 0) = $7)
  AND ($8::bool IS NULL OR (q.reviewed_rules > 0) = $8)
ORDER BY c.started_at DESC, q.call_id
LIMIT $9
"""


async def list_results(pool: asyncpg.Pool, f: ResultFilter) -> list[dict[str, Any]]:
    rows = await pool.fetch(_LIST_SQL, f.agent_id, f.since, f.until, f.min_score,
                            f.max_score, f.rule, f.needs_review, f.reviewed, f.limit)
    return [_plain(r) for r in rows]


async def review_queue(pool: asyncpg.Pool, *, since: datetime, limit: int = 50,
                       policy: QueuePolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """Open appeals first (an agent is waiting), then the calls to review."""
    rows = await pool.fetch(
        "SELECT q.call_id, c.agent_id, q.score, q.needs_review, c.started_at"
        " FROM qa_results q JOIN calls c ON c.id = q.call_id"
        " WHERE q.reviewed_rules = 0 AND c.started_at >= $1", since)
    candidates = [Candidate(r["call_id"], r["agent_id"], r["score"], r["needs_review"],
                            r["started_at"]) for r in rows]
    ordered = review.review_queue(candidates, policy, salt=since.date().isoformat())[:limit]
    appeals = await pool.fetch(
        "SELECT a.id, a.call_id, a.rule_id, a.agent_id, a.appellant, a.reason, a.created_at"
        " FROM qa_appeals a WHERE a.status = 'open' ORDER BY a.created_at")
    return {
        "appeals": [_plain(a) for a in appeals],
        "calls": [{"call_id": c.call_id, "agent_id": c.agent_id, "score": c.score,
                   "needs_review": c.needs_review, "started_at": c.started_at.isoformat(),
                   "reason": why} for c, why in ordered],
    }


async def agreement(pool: asyncpg.Pool, *, since: datetime | None = None) -> dict[str, Any]:
    """How often people agreed with the machine, per rule and per rule set, over
    the verdicts in force (the latest per call and rule)."""
    rows = await pool.fetch(
        "SELECT DISTINCT ON (call_id, rule_id) rule_id, rules_version, automatic,"
        " automatic_review, passed FROM qa_reviews"
        " WHERE $1::timestamptz IS NULL OR at >= $1 ORDER BY call_id, rule_id, id DESC", since)
    facts = [ReviewFact(r["rule_id"], r["rules_version"], r["automatic"],
                        r["automatic_review"], r["passed"]) for r in rows]
    return review.agreement(facts).as_dict()


async def scorecards(pool: asyncpg.Pool, *, since: datetime, until: datetime,
                     agent_id: str | None = None) -> dict[str, Any]:
    """Per agent over a period: calls scored, average final and automatic score,
    calls reviewed and waiting, and the most frequent violations (final verdicts)."""
    agents = await pool.fetch(
        "SELECT c.agent_id, count(*) AS calls, round(avg(q.final_score)::numeric, 1)::float8"
        " AS average, round(avg(q.score)::numeric, 1)::float8 AS automatic_average,"
        " count(*) FILTER (WHERE q.reviewed_rules > 0) AS reviewed,"
        " count(*) FILTER (WHERE q.needs_review > 0) AS needs_review"
        " FROM qa_results q JOIN calls c ON c.id = q.call_id"
        " WHERE c.started_at >= $1 AND c.started_at < $2 AND c.agent_id IS NOT NULL"
        " AND ($3::text IS NULL OR c.agent_id = $3)"
        " GROUP BY c.agent_id ORDER BY c.agent_id", since, until, agent_id)
    fails = await pool.fetch(
        "SELECT c.agent_id, r.rule_id, count(*) AS n"
        " FROM qa_rule_results r JOIN calls c ON c.id = r.call_id"
        " LEFT JOIN LATERAL (SELECT v.passed FROM qa_reviews v WHERE v.call_id = r.call_id"
        "   AND v.rule_id = r.rule_id ORDER BY v.id DESC LIMIT 1) h ON true"
        " WHERE c.started_at >= $1 AND c.started_at < $2 AND c.agent_id IS NOT NULL"
        " AND ($3::text IS NULL OR c.agent_id = $3)"
        " AND CASE WHEN h IS NULL THEN r.passed = false AND NOT r.needs_review"
        "          ELSE h.passed = false END"
        " GROUP BY c.agent_id, r.rule_id", since, until, agent_id)
    per_agent: dict[str, dict[str, int]] = {}
    overall: dict[str, int] = {}
    for f in fails:
        per_agent.setdefault(f["agent_id"], {})[f["rule_id"]] = f["n"]
        overall[f["rule_id"]] = overall.get(f["rule_id"], 0) + f["n"]
    return {
        "since": since.isoformat(), "until": until.isoformat(),
        "agents": [{**dict(a), "violations": _ranked(per_agent.get(a["agent_id"], {}))}
                   for a in agents],
        "violations": _ranked(overall),
    }


def _ranked(counts: dict[str, int]) -> list[dict[str, Any]]:
    return [{"rule_id": r, "count": n}
            for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


async def calls_to_rescore(pool: asyncpg.Pool, since: datetime,
                           call_ids: Sequence[str] = ()) -> list[asyncpg.Record]:
    """Scored calls started since ``since``, with what scoring them needs."""
    return await pool.fetch(
        "SELECT c.id, c.caller_number, c.ivr_digits, c.started_at, c.answered_at,"
        " c.queued_at, c.ringing_at, c.hangup_by, q.source, q.score, q.rules_version,"
        " COALESCE(t.human->>'category', t.category) AS category,"
        " r.speech_dbfs AS caller_speech_dbfs, r.snr_db AS caller_snr_db"
        " FROM qa_results q JOIN calls c ON c.id = q.call_id"
        " LEFT JOIN tickets t ON t.call_id = c.id AND t.auto"
        " LEFT JOIN recordings r ON r.call_id = c.id AND r.leg = 'caller'"
        " WHERE c.started_at >= $1 AND (cardinality($2::text[]) = 0 OR c.id = ANY($2))"
        " ORDER BY c.started_at, c.id", since, list(call_ids))


async def rule_verdicts(pool: asyncpg.Pool, call_ids: Sequence[str]
                        ) -> dict[str, dict[str, tuple[bool | None, bool]]]:
    """The machine's current (passed, needs_review) per rule of these calls."""
    out: dict[str, dict[str, tuple[bool | None, bool]]] = {}
    for r in await pool.fetch(
            "SELECT call_id, rule_id, passed, needs_review FROM qa_rule_results"
            " WHERE call_id = ANY($1::text[])", list(call_ids)):
        out.setdefault(r["call_id"], {})[r["rule_id"]] = (r["passed"], r["needs_review"])
    return out


async def reviewed_rules_of(pool: asyncpg.Pool, call_ids: Sequence[str]) -> int:
    """How many (call, rule) of these calls carry a person's verdict."""
    return int(await pool.fetchval(
        "SELECT count(*) FROM (SELECT DISTINCT call_id, rule_id FROM qa_reviews"
        " WHERE call_id = ANY($1::text[])) AS ruled", list(call_ids)))
