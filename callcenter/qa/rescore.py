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


async def stored_timelines(pool: asyncpg.Pool, call_ids: Sequence[str]) -> dict[str, Timeline]:
    """The stored transcripts of these calls (two queries, whatever their number), as
    recognised: scored like the first time (personal numbers masked in storage are
    read from the originals kept beside them)."""
    segs = await pool.fetch(
        "SELECT call_id, leg, start_s, end_s, coalesce(original_text, text) AS text,"
        " coalesce(original_words, words) AS words FROM transcript_segments"
        " WHERE call_id = ANY($1::text[]) ORDER BY call_id, start_s, id", list(call_ids))
    lengths = {r["call_id"]: float(r["length"] or 0.0) for r in await pool.fetch(
        "SELECT call_id, max(duration_s) AS length FROM recordings"
        " WHERE call_id = ANY($1::text[]) GROUP BY call_id", list(call_ids))}
    segments: dict[str, list[Segment]] = {cid: [] for cid in call_ids}
    for s in segs:
        segments[s["call_id"]].append(Segment(
            s["leg"], s["start_s"], s["end_s"], s["text"],
            [Word(w["w"], w["start"], w["end"], w.get("conf", 1.0)) for w in (s["words"] or [])]))
    return {cid: Timeline(found, max([lengths.get(cid, 0.0), *(x.end for x in found)]))
            for cid, found in segments.items()}


async def score_stored(pool: asyncpg.Pool, row: asyncpg.Record, rules: QaRules) -> QaResult:
    timeline = (await stored_timelines(pool, [row["id"]]))[row["id"]]
    # CPU work: off the event loop.
    return await asyncio.to_thread(_score_row, row, timeline, rules)


def _score_row(row: asyncpg.Record, timeline: Timeline, rules: QaRules) -> QaResult:
    return score(timeline, call_facts(dict(row)), rules=rules, source=row["source"] or "asr",
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
                  call_ids: Sequence[str] = (), dry_run: bool = False,
                  batch: int = 200) -> RescoreReport:
    """Score the calls again in batches: each batch read in a few queries, scored in
    one trip to a worker thread, stored in one transaction (a failure loses at most
    the batch's new results, never an old one: the old stay until replaced)."""
    report = RescoreReport(rules.version)
    if not dry_run:
        await pool.execute("INSERT INTO qa_rule_sets (version, content) VALUES ($1, $2)"
                           " ON CONFLICT (version) DO NOTHING", rules.version, rules.text)
    rows = await store.calls_to_rescore(pool, since, call_ids)
    for first in range(0, len(rows), batch):
        chunk = rows[first:first + batch]
        ids = [r["id"] for r in chunk]
        timelines = await stored_timelines(pool, ids)
        before = await store.rule_verdicts(pool, ids)
        results = await asyncio.to_thread(
            lambda: [_score_row(row, timelines[row["id"]], rules) for row in chunk])  # noqa: B023
        for row, result in zip(chunk, results, strict=True):
            _compare(report, row, before.get(row["id"], {}), result, rules.version)
        if not dry_run:
            async with pool.acquire() as conn, conn.transaction():
                await store.save_results(conn, [(row["id"], result, row["source"])
                                                for row, result in zip(chunk, results,
                                                                       strict=True)])
        report.human_verdicts_kept += await store.reviewed_rules_of(pool, ids)
    return report


def _compare(report: RescoreReport, row: asyncpg.Record,
             before: dict[str, tuple[bool | None, bool]], result: QaResult,
             version: str) -> None:
    report.calls += 1
    after = {r.id: (r.passed, r.needs_review) for r in result.rules}
    moved = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if row["rules_version"] == version:
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


def _verdict(v: tuple[bool | None, bool] | None) -> str:
    if v is None:
        return "absent"
    passed, needs_review = v
    if needs_review:
        return "needs_review"
    return {True: "pass", False: "fail", None: "not_applicable"}[passed]
