"""The SLA ticker on a real PostgreSQL with a controllable clock: a P3 repair warns
its owner at 80 % and climbs supervisor -> deputy GM once overdue; two tickers
never send an alarm twice; the running ticker is woken by NOTIFY, not by polling."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from callcenter.tickets.lifecycle import Dispatch, Start
from callcenter.tickets.service import TicketService
from callcenter.tickets.ticker import SlaTicker
from tests.db.test_ticket_service import T0, Clock, alerts, analysed, history
from tests.db.test_worker import until


async def test_a_p3_repair_warns_at_80_percent_then_escalates_level_by_level(
    db_dsn: str, db_pool: asyncpg.Pool,
) -> None:
    clock = Clock()
    tickets = TicketService(db_pool, now=clock)
    ticker = SlaTicker(tickets, db_dsn)
    number = await tickets.create(analysed(), by="wang", role="agent")
    await tickets.apply(number, Dispatch("wang", clock.advance(minutes=2)), role="agent")
    next_tick = await db_pool.fetchval("SELECT next_tick FROM tickets")
    assert next_tick == T0 + timedelta(hours=19, minutes=12)  # 80 % of 24 h

    clock.advance(hours=19)
    assert await ticker.tick_due() == 0 and await alerts(db_pool) == []
    clock.at = T0 + timedelta(hours=19, minutes=12)
    assert await ticker.tick_due() == 1
    assert await alerts(db_pool) == [("warn", "wang", 0, "deadline_near")]
    assert await ticker.tick_due() == 0  # nothing twice

    clock.at = T0 + timedelta(hours=24)
    await ticker.tick_due()
    clock.at = T0 + timedelta(hours=25)
    await ticker.tick_due()
    assert await alerts(db_pool) == [
        ("warn", "wang", 0, "deadline_near"), ("escalate", "supervisor", 1, "overdue"),
        ("escalate", "deputy_gm", 2, "overdue")]
    row = await db_pool.fetchrow("SELECT escalation_level, next_tick FROM tickets")
    assert (row["escalation_level"], row["next_tick"]) == (2, None)  # the top: no more
    assert [w for w, _, _ in await history(db_pool, number)] == [
        "opened", "dispatched", "warned", "escalated", "escalated"]
    assert [r for _, _, r in await history(db_pool, number)][-1] == "system"


async def test_two_tickers_never_send_an_alarm_twice(db_dsn: str, db_pool: asyncpg.Pool) -> None:
    clock = Clock()
    tickets = TicketService(db_pool, now=clock)
    for _ in range(12):
        await tickets.create(analysed(), by="wang", role="agent")
    clock.advance(minutes=5)  # every dispatch goal missed at once
    first, second = SlaTicker(tickets, db_dsn), SlaTicker(tickets, db_dsn)
    ticked = await asyncio.gather(first.tick_due(), second.tick_due(), first.tick_due())
    assert sum(ticked) == 12
    assert await alerts(db_pool) == [("warn", "wang", 0, "dispatch_late")] * 12


async def test_the_running_ticker_is_woken_by_notify(db_dsn: str, db_pool: asyncpg.Pool) -> None:
    clock = Clock()
    tickets = TicketService(db_pool, now=clock)
    stopping = asyncio.Event()
    runner = asyncio.create_task(SlaTicker(tickets, db_dsn).run(stopping))
    try:
        p1 = await tickets.create(analysed(urgency="P1", description="电梯困人"), by="wang",
                                  role="agent")
        await tickets.apply(p1, Dispatch("wang", clock()), role="agent")
        # The ticker now sleeps until 24 minutes from now (80 % of P1's 30) as the
        # fake clock counts: the next wake-up has to come from a NOTIFY.
        clock.advance(minutes=31)
        other = await tickets.create(analysed(), by="li", role="agent")  # Schedule: NOTIFY
        await until("P1 escalated", lambda: _has(db_pool, "supervisor"), timeout_s=10)
        assert ("escalate", "supervisor", 1, "overdue") in await alerts(db_pool)
        await tickets.apply(p1, Start("eng1", clock()), role="agent")  # on site: met
        assert await db_pool.fetchval("SELECT next_tick FROM tickets WHERE number = $1",
                                      p1) is None
        assert other
    finally:
        stopping.set()
        await asyncio.wait_for(runner, 10)


async def _has(pool: asyncpg.Pool, recipient: str) -> bool:
    return bool(await pool.fetchval(
        "SELECT count(*) FROM ticket_alerts WHERE recipient = $1", recipient))
