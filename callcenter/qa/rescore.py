"""Scoring stored calls again: with a new rule set (``callcenter qa rescore``) or
to look at one call (``callcenter qa score``).

Reads what the analysis stored (transcript with word times and confidences, the
call's facts, the ticket's category as people left it), scores with the given
rule set and, for a re-score, stores the result as the call's current one: the
result of the version before is kept, and every human verdict stays in force.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from callcenter.core import QaResult, Segment, Timeline, Word
from callcenter.pipeline import call_facts
from callcenter.qa import store
from callcenter.qa.engine import QaRules, score


async def stored_timeline(pool: asyncpg.Pool, call_id: str) -> Timeline:
    segs = await pool.fetch(
        "SELECT leg, start_s, end_s, text, words FROM transcript_segments"
        " WHERE call_id = $1 ORDER BY start_s, id", call_id)
    length = await pool.fetchval(
        "SELECT max(duration_s) FROM recordings WHERE call_id = $1", call_id)
    segments = [
        Segment(s["leg"], s["start_s"], s["end_s"], s["text"],
                [Word(w["w"], w["start"], w["end"], w.get("conf", 1.0))
                 for w in (s["words"] or [])])
        for s in segs
    ]
    end = max((s.end for s in segments), default=0.0)
    return Timeline(segments, max(end, float(length or 0.0)))


async def score_stored(pool: asyncpg.Pool, row: asyncpg.Record, rules: QaRules) -> QaResult:
    timeline = await stored_timeline(pool, row["id"])
    # CPU work: off the event loop.
    return await asyncio.to_thread(
        score, timeline, call_facts(dict(row)), rules=rules, source=row["source"] or "asr",
        category=row["category"])


@dataclass(slots=True)
class RescoreReport:
    rules_version: str
    calls: int = 0
    changed: int = 0
    already_current: int = 0
    rule_changes: Counter[str] = field(default_factory=Counter)
    human_verdicts_kept: int = 0
    details: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rules_version": self.rules_version, "calls": self.calls, "changed": self.changed,
            "unchanged": self.calls - self.changed, "already_current": self.already_current,
            "rule_changes": dict(sorted(self.rule_changes.items())),
            "human_verdicts_kept": self.human_verdicts_kept, "details": self.details,
        }


async def rescore(pool: asyncpg.Pool, rules: QaRules, *, since: datetime,
                  call_ids: Sequence[str] = (), dry_run: bool = False) -> RescoreReport:
    report = RescoreReport(rules.version)
    for row in await store.calls_to_rescore(pool, since, call_ids):
        report.calls += 1
        before = {r["rule_id"]: (r["passed"], r["needs_review"]) for r in await pool.fetch(
            "SELECT rule_id, passed, needs_review FROM qa_rule_results WHERE call_id = $1",
            row["id"])}
        result = await score_stored(pool, row, rules)
        after = {r.id: (r.passed, r.needs_review) for r in result.rules}
        moved = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        if row["rules_version"] == rules.version:
            report.already_current += 1
        if moved or result.score != row["score"]:
            report.changed += 1
            report.rule_changes.update(moved)
            report.details.append({
                "call_id": row["id"], "from_version": row["rules_version"],
                "score_before": row["score"], "score_after": result.score,
                "rules": [{"rule_id": k, "before": _verdict(before.get(k)),
                           "after": _verdict(after.get(k))} for k in moved],
            })
        if not dry_run:
            async with pool.acquire() as conn, conn.transaction():
                await store.save_result(conn, row["id"], result, source=row["source"],
                                        rules_text=rules.text)
        report.human_verdicts_kept += int(await pool.fetchval(
            "SELECT count(DISTINCT rule_id) FROM qa_reviews WHERE call_id = $1", row["id"]))
    return report


def _verdict(v: tuple[bool | None, bool] | None) -> str:
    if v is None:
        return "absent"
    passed, needs_review = v
    if needs_review:
        return "needs_review"
    return {True: "pass", False: "fail", None: "not_applicable"}[passed]
