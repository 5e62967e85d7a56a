"""The PostgreSQL adapter against a real (embedded) PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from callcenter.core import Evidence, QaResult, RuleResult, Segment, Ticket, Word
from callcenter.db.connect import connect
from callcenter.db.migrate import available_migrations, migrate
from callcenter.db.store import PROCESS_CALL_JOB, PgStore, retrying
from tests.conftest import drop_connections


async def _jobs(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT entrypoint, payload FROM pgqueuer")


async def test_migrations_are_idempotent(db_dsn: str) -> None:
    conn = await connect(db_dsn)
    try:
        assert await migrate(conn) == []  # the template already has them all
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        assert versions == [v for v, _, _ in available_migrations()]
    finally:
        await conn.close()


async def test_call_lifecycle_queues_one_processing_job(db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    await store.open_call("c1", caller_number="13900000000", channel_id="1.1")
    await store.open_call("c1", caller_number="13900000000", channel_id="1.1")  # routing, again
    await store.update_call("c1", stage="menu", ivr_digits="1")
    await store.update_call("c1", stage="queue", queue="repair", queued_at=datetime.now(UTC))
    await store.update_call("c1", stage="ringing", agent_id=None)
    assert (await store.call_row("c1") or {})["ringing_at"] is not None
    await store.add_leg("c1", "caller", channel_id="1.1", recording_name="c1/caller.wav")
    await store.add_leg("c1", "agent", channel_id="1.2", recording_name="c1/agent.wav")
    assert await store.finish_call("c1", stage="conversation", hangup_by="caller")
    # A second hang-up event for the same call changes nothing.
    assert not await store.finish_call("c1", stage="queue", hangup_by="agent")
    call = await store.call_row("c1")
    assert call is not None
    assert (call["stage"], call["status"], call["hangup_by"]) == ("conversation", "ended", "caller")
    jobs = await _jobs(db_pool)
    assert [(j["entrypoint"], bytes(j["payload"])) for j in jobs] == [(PROCESS_CALL_JOB, b"c1")]
    kinds = [r["kind"] for r in await db_pool.fetch(
        "SELECT kind FROM call_events WHERE call_id = 'c1' ORDER BY id")]
    assert kinds.count("opened") == 1 and kinds[0] == "opened" and kinds[-1] == "finished"


async def test_abandoned_call_keeps_its_stage_and_is_processed_for_callback(
    db_pool: asyncpg.Pool,
) -> None:
    store = PgStore(db_pool)
    await store.open_call("c2", caller_number="1", channel_id="2.1")
    await store.update_call("c2", stage="queue", queue="general")
    assert await store.finish_call("c2", stage="queue", hangup_by="caller")
    assert (await store.call_row("c2") or {})["stage"] == "queue"
    assert await store.active_calls() == []


async def test_update_call_rejects_unknown_columns(db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    await store.open_call("c3", caller_number="", channel_id="")
    with pytest.raises(ValueError, match="unknown fields"):
        await store.update_call("c3", **{"stage = 'x'; --": 1})


async def test_save_analysis_is_idempotent(db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    await store.open_call("c4", caller_number="139", channel_id="")
    segment = Segment("agent", 0.5, 2.0, "您好", [Word("您好", 0.5, 1.0, 0.9)])
    ticket = Ticket(category="engineering", urgency="P2", description="停水", phone="139")
    qa = QaResult(score=80.0, rules=[
        RuleResult("greeting", True, [Evidence("agent", 0.5, 1.0, "您好")], weight=10),
        RuleResult("answer_speed", None),
    ])
    first = await store.save_analysis("c4", segments=[segment], ticket=ticket, qa=qa,
                                      qa_source="asr")
    second = await store.save_analysis("c4", segments=[segment], ticket=ticket, qa=qa,
                                       qa_source="asr")
    assert first == second and first is not None and first.startswith("T")
    assert await db_pool.fetchval("SELECT count(*) FROM transcript_segments") == 1
    assert await db_pool.fetchval("SELECT count(*) FROM tickets") == 1
    words = await db_pool.fetchval("SELECT words FROM transcript_segments")
    assert words == [{"w": "您好", "start": 0.5, "end": 1.0, "conf": 0.9}]
    evidence = await db_pool.fetchval(
        "SELECT evidence FROM qa_rule_results WHERE rule_id = 'greeting'")
    assert evidence == [{"leg": "agent", "start": 0.5, "end": 1.0, "text": "您好"}]
    prior = await store.prior_tickets("139", before_call="other")
    assert [p["category"] for p in prior] == ["engineering"]


async def test_ticket_values_outside_the_contract_are_refused(db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    await store.open_call("c5", caller_number="", channel_id="")
    bad = Ticket(category="plumbing", urgency="P2", description="")
    with pytest.raises(asyncpg.CheckViolationError):
        await store.save_analysis("c5", segments=[], ticket=bad, qa=None, qa_source="asr")


async def test_writes_survive_the_server_dropping_every_connection(
    db_pool: asyncpg.Pool, pg_server_dsn: str
) -> None:
    store = PgStore(db_pool)
    await store.open_call("c6", caller_number="", channel_id="")
    await drop_connections(db_pool, pg_server_dsn)
    await store.update_call("c6", stage="menu")
    assert (await store.call_row("c6") or {})["stage"] == "menu"


async def test_retrying_repeats_transient_failures_then_gives_up() -> None:
    calls = []

    @retrying(attempts=3, first_delay_s=0.01)
    async def flaky(fail_times: int) -> str:
        calls.append(1)
        if len(calls) <= fail_times:
            raise ConnectionResetError("server went away")
        return "written"

    assert await flaky(2) == "written" and len(calls) == 3
    calls.clear()
    with pytest.raises(ConnectionResetError):
        await flaky(5)
    assert len(calls) == 3

    @retrying(attempts=3, first_delay_s=0.01)
    async def wrong() -> None:
        calls.append(1)
        raise asyncpg.UniqueViolationError("not transient")

    calls.clear()
    with pytest.raises(asyncpg.UniqueViolationError):
        await wrong()
    assert len(calls) == 1


async def test_agents_are_defined_by_upsert_and_their_state_is_the_acds(
    db_pool: asyncpg.Pool,
) -> None:
    """Adding an agent logs them in through a request the ACD applies; re-adding one
    never touches the state the ACD wrote (so an agent on a call stays on it)."""
    store = PgStore(db_pool)
    await store.upsert_agent("a1", name="周", endpoint="PJSIP/1001", skills=["repair"])
    (row,) = await store.agent_rows()
    assert row["state"] == "logged_out"
    (request,) = await store.pending_agent_requests()
    assert (request["agent_id"], request["action"]) == ("a1", "login")
    at = datetime.now(UTC)
    await store.record_agent_state("a1", from_state="logged_out", to_state="on_call",
                                   reason=None, at=at)
    await store.record_agent_state("a1", from_state="logged_out", to_state="on_call",
                                   reason=None, at=at)  # a retried write: one history row
    await store.upsert_agent("a1", name="周", endpoint="PJSIP/1001", skills=["repair", "general"])
    (row,) = await store.agent_rows()
    assert row["state"] == "on_call" and row["skills"] == ["repair", "general"]
    assert await db_pool.fetchval("SELECT count(*) FROM agent_state_history") == 1
    await store.mark_agent_request_applied(request["id"], at)
    assert len(await store.pending_agent_requests()) == 1  # the second upsert's login


async def test_an_older_agent_state_never_overwrites_a_newer_one(db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    await store.upsert_agent("a1", name="周", endpoint="PJSIP/1001", skills=["repair"])
    now = datetime.now(UTC) + timedelta(seconds=5)
    await store.record_agent_state("a1", from_state="ringing", to_state="paused",
                                   reason="no_answer", at=now)
    await store.record_agent_state("a1", from_state="logged_out", to_state="ringing",
                                   reason=None, at=now - timedelta(seconds=1))
    (row,) = await store.agent_rows()
    assert (row["state"], row["pause_reason"], row["no_answer_count"]) == (
        "paused", "no_answer", 1)
