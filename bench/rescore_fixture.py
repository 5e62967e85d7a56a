"""Many stored, scored calls in a throw-away embedded PostgreSQL, and the time
``callcenter.qa.rescore.rescore`` takes over them with a changed rule file (for
``bench/qa_accuracy.py``)."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pgserver
from text_accuracy import allowed_input, facts_of, to_timeline

from callcenter.db.connect import connect, create_pool
from callcenter.db.migrate import migrate
from callcenter.qa.engine import load_rules, score
from callcenter.qa.rescore import rescore
from callcenter.qa.store import save_results

START = datetime(2026, 1, 1, tzinfo=UTC)


async def time_rescore(calls: list[dict[str, Any]], n: int) -> tuple[float, dict[str, Any]]:
    folder = Path(tempfile.mkdtemp(prefix="cc-bench-pg-"))
    folder.chmod(0o755)
    server = pgserver.get_server(folder / "pg", cleanup_mode="delete")
    try:
        dsn = str(server.get_uri())
        conn = await connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        pool = await create_pool(dsn, max_size=4)
        try:
            await _store(pool, calls, n)
            changed = folder / "rules.yaml"
            changed.write_text(load_rules().text.replace("min_overlap_s: 1.0",
                                                         "min_overlap_s: 0.8"), "utf-8")
            started = time.perf_counter()
            report = await rescore(pool, load_rules(changed), since=START)
            return time.perf_counter() - started, report.as_dict()
        finally:
            await pool.close()
    finally:
        server.cleanup()


async def _store(pool: Any, calls: list[dict[str, Any]], n: int) -> None:
    prepared = []
    for meta in calls:
        given = allowed_input(meta)
        timeline, facts = to_timeline(given), facts_of(given)
        prepared.append((timeline, score(timeline, facts, source="text",
                                         category="engineering")))
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO calls (id, caller_number, started_at, ended_at, status, hangup_by)"
            " VALUES ($1, '13900000000', $2, $2, 'processed', 'caller')",
            [(f"bench{i:06d}", START + timedelta(seconds=i)) for i in range(n)])
        # Each with its ticket, as the analysis leaves it (the category decides
        # which rules apply; without one the classifier would run again).
        await conn.executemany(
            "INSERT INTO tickets (number, call_id, auto, category, urgency, status)"
            " VALUES ($1, $2, true, $3, 'P3', 'new')",
            [(f"B{i:06d}", f"bench{i:06d}", "engineering") for i in range(n)])
        await conn.executemany(
            "INSERT INTO transcript_segments (call_id, leg, start_s, end_s, text, words)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(f"bench{i:06d}", s.leg, s.start, s.end, s.text,
              [{"w": w.w, "start": w.start, "end": w.end, "conf": w.conf} for w in s.words])
             for i in range(n) for s in prepared[i % len(prepared)][0].segments])
        for first in range(0, n, 500):
            async with conn.transaction():
                await save_results(conn, [(f"bench{i:06d}", prepared[i % len(prepared)][1],
                                           "text") for i in range(first, min(n, first + 500))])
