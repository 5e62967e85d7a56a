"""People's agent requests reach the ACD (the one owner of agent states) through
PostgreSQL: at once by NOTIFY, or when it (re)connects, each applied once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from callcenter.acd.queues import load_queues
from callcenter.acd.stasis import AcdApp
from callcenter.ari.client import AriClient
from callcenter.db.notify import listen
from callcenter.db.store import AGENT_REQUESTS_CHANNEL, AGENTS_CHANNEL, PgStore
from callcenter.db.writer import OrderedWriter
from callcenter.service import AgentRequests
from tests.conftest import drop_connections


async def until(what: str, check: Callable[[], Any], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await _value(check()):
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _value(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


class Running:
    def __init__(self, acd: AcdApp, store: PgStore, writer: OrderedWriter) -> None:
        self.acd, self.store, self.writer = acd, store, writer

    def state(self, agent_id: str) -> tuple[str, str | None] | None:
        agent = self.acd.machine.agents.get(agent_id)
        return (agent.state, agent.reason) if agent else None


@pytest.fixture
async def running(db_dsn: str, db_pool: asyncpg.Pool) -> AsyncIterator[Running]:
    store = PgStore(db_pool)
    writer = OrderedWriter(store, first_delay_s=0.05, max_delay_s=0.5)
    await writer.start()
    # The ACD's ARI side is not started: agent requests need no Asterisk.
    client = AriClient("http://127.0.0.1:9", "x", "y")
    acd = AcdApp(client, store, writer, load_queues())
    requests = AgentRequests(acd, store, writer)
    stopping = asyncio.Event()
    await store.upsert_agent("a1", name="周", endpoint="Local/1@sim-agents/n",
                             skills=["repair"])  # asks for a login before anyone listens
    task = asyncio.create_task(listen(db_dsn, (AGENTS_CHANNEL, AGENT_REQUESTS_CHANNEL),
                                      requests.on_notify, requests.catch_up, stopping))
    try:
        yield Running(acd, store, writer)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
        await writer.close()
        await client.close()


async def test_a_request_made_while_nobody_listened_is_applied_on_connect(
    running: Running,
) -> None:
    await until("the login", lambda: running.state("a1") == ("available", None))
    await until("the request marked applied",
                lambda: _no_pending(running.store))


async def _no_pending(store: PgStore) -> bool:
    return not await store.pending_agent_requests()


async def test_requests_arrive_by_notify_in_order_and_are_persisted_with_history(
    running: Running, db_pool: asyncpg.Pool
) -> None:
    store = running.store
    await until("the login", lambda: running.state("a1") == ("available", None))
    await store.request_agent("a1", "pause", "lunch", by="cli")
    await until("the pause", lambda: running.state("a1") == ("paused", "lunch"))
    await store.request_agent("a1", "unpause", by="cli")
    await store.request_agent("a1", "pause", "training", by="api")
    await until("the second pause", lambda: running.state("a1") == ("paused", "training"))
    assert await running.writer.flush(10)
    row = await db_pool.fetchrow("SELECT state, pause_reason FROM agents WHERE id = 'a1'")
    assert (row["state"], row["pause_reason"]) == ("paused", "training")
    history = await db_pool.fetch(
        "SELECT from_state, to_state, reason FROM agent_state_history WHERE agent_id = 'a1'"
        " ORDER BY at")
    assert [tuple(r) for r in history] == [
        ("logged_out", "available", None), ("available", "paused", "lunch"),
        ("paused", "available", None), ("available", "paused", "training")]


async def test_the_listener_outlives_dropped_connections(
    running: Running, db_pool: asyncpg.Pool, pg_server_dsn: str
) -> None:
    await until("the login", lambda: running.state("a1") == ("available", None))
    await drop_connections(db_pool, pg_server_dsn)
    await running.store.request_agent("a1", "logout", by="cli")
    await until("the logout", lambda: running.state("a1") == ("logged_out", None))
    await running.store.upsert_agent("a2", name="李", endpoint="Local/2@sim-agents/n",
                                     skills=["general"])
    await until("a new agent", lambda: running.state("a2") == ("available", None))
