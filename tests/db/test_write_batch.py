"""``PgStore.write_batch``, the write-behind's fast path, against a real PostgreSQL:
a batch leaves the rows and the audit trail that the same writes one by one leave,
is all or nothing, and repeated after a lost commit records nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from callcenter.db.store import PgStore

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
Write = tuple[str, tuple[Any, ...], dict[str, Any]]


def opened(call_id: str) -> Write:
    return ("open_call", (call_id,), {"caller_number": "13900000000", "channel_id": call_id,
                                      "started_at": STARTED})


def rounds() -> list[list[Write]]:
    """The writes of three calls, one per call per round (as the writer batches them):
    the IVR's, then routing's (ringing sets ringing_at itself), then the hang-up."""
    calls = ("b1", "b2", "b3")
    return [
        [opened(c) for c in calls],
        [("update_call", (c,), {"stage": "greeting", "ivr_node": "main"}) for c in calls],
        [("record_ivr_events", (c, [{"node": "main", "kind": "entry"},
                                    {"node": "main", "kind": "choice", "choice": "3"}]),
          {"at": STARTED}) for c in calls],
        [("update_call", (c,), {"stage": "queue", "queue": "consultation", "priority": 0})
         for c in calls],
        [("update_call", ("b1",), {"stage": "ringing"}), opened("b2"),
         ("finish_call", ("b3",), {"stage": "queue", "hangup_by": "caller",
                                   "ended_at": STARTED})],
    ]


async def snapshot(pool: asyncpg.Pool) -> dict[str, Any]:
    calls = await pool.fetch(
        "SELECT id, stage, status, queue, priority, ivr_node, hangup_by, started_at,"
        " ringing_at IS NOT NULL AS ringing FROM calls ORDER BY id")
    events = await pool.fetch("SELECT call_id, kind, data FROM call_events ORDER BY id")
    ivr = await pool.fetch("SELECT call_id, node, kind, choice, at FROM ivr_events"
                           " ORDER BY call_id, id")
    jobs = await pool.fetchval("SELECT count(*) FROM pgqueuer")
    by_call: dict[str, list[tuple[str, Any]]] = {}
    for e in events:
        data = {k: ("<set>" if k == "ringing_at" else v) for k, v in e["data"].items()}
        by_call.setdefault(e["call_id"], []).append((e["kind"], data))  # ringing_at: now()
    return {"calls": [dict(r) for r in calls], "events": by_call,
            "ivr": [dict(r) for r in ivr], "jobs": jobs}


async def test_a_batch_leaves_what_the_same_writes_one_by_one_leave(db_pool: asyncpg.Pool
                                                                    ) -> None:
    store = PgStore(db_pool)
    for batch in rounds():
        await store.write_batch(batch)
    batched = await snapshot(db_pool)
    await db_pool.execute("TRUNCATE calls, call_events, ivr_events, pgqueuer CASCADE")
    for batch in rounds():
        for method, args, kwargs in batch:
            await getattr(store, method)(*args, **kwargs)
    assert await snapshot(db_pool) == batched
    assert [c["stage"] for c in batched["calls"]] == ["ringing", "queue", "queue"]
    assert batched["calls"][0]["ringing"] and batched["calls"][2]["status"] == "ended"
    assert batched["jobs"] == 1  # b3's processing, queued in the batch's transaction
    assert [k for k, _ in batched["events"]["b2"]] == ["opened", "updated", "updated"]


async def test_a_batch_is_all_or_nothing(db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    with pytest.raises(asyncpg.ForeignKeyViolationError):  # no call "ghost": its event fails
        await store.write_batch([opened("n1"), ("update_call", ("ghost",), {"stage": "menu"})])
    assert await db_pool.fetchval("SELECT count(*) FROM calls") == 0
    with pytest.raises(asyncpg.CheckViolationError):  # a statement of its own that fails
        await store.write_batch([opened("n1"), ("finish_call", ("n1",), {
            "stage": "nowhere", "hangup_by": "caller"})])
    assert await db_pool.fetchval("SELECT count(*) FROM call_events") == 0


async def test_a_batch_repeated_after_its_commit_was_lost_records_nothing_twice(
    db_pool: asyncpg.Pool,
) -> None:
    store = PgStore(db_pool)
    for batch in rounds()[:2] + rounds()[3:4]:
        await store.write_batch(batch)
        await store.write_batch(batch)  # the writer retries a batch it did not hear back from
    events = (await snapshot(db_pool))["events"]
    assert {c: [k for k, _ in e] for c, e in events.items()} == {
        c: ["opened", "updated", "updated"] for c in ("b1", "b2", "b3")}
