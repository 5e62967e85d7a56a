"""The SLA ticker: sends ``Tick`` to every ticket whose wake-up (``next_tick``) is
due, then sleeps until the earliest one.

No polling: the sleep ends at the earliest ``next_tick``, or earlier when a
NOTIFY ``ticket_ticks`` (sent by the executor whenever a ticket asks for a new
wake-up) says the earliest may have moved, or when the LISTEN connection comes
back after an outage (what was announced meanwhile is caught up then).

Several workers may run a ticker each: a due ticket is taken with ``FOR UPDATE
SKIP LOCKED``, one per transaction, so no two tick the same ticket at once, and
the alarms the lifecycle fires are remembered in the ticket (``sent``), so even
a ticket ticked twice sends nothing twice. Time comes from the service's ``now``,
which tests replace to drive the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from callcenter.db.notify import listen
from callcenter.db.store import is_transient
from callcenter.tickets import store
from callcenter.tickets.lifecycle import SYSTEM, Tick
from callcenter.tickets.service import TicketService, apply_locked

log = logging.getLogger("callcenter.tickets.ticker")

# A ticket whose tick failed for a reason of its own (bad data) is tried again
# this much later: one broken ticket never stalls the others or spins the loop.
BROKEN_TICKET_RETRY = timedelta(minutes=5)
# After a database error, the next pass waits this long (doubling up to the most).
FIRST_RETRY_S, MAX_RETRY_S = 1.0, 30.0


class SlaTicker:
    def __init__(self, service: TicketService, dsn: str) -> None:
        self.service = service
        self.dsn = dsn
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look again now (the earliest wake-up may have moved)."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick due tickets until ``stopping`` is set."""
        listener = asyncio.create_task(
            listen(self.dsn, (store.TICKS_CHANNEL,), self._notified, self._connected, stopping),
            name="sla-ticker-listen")
        retry_s = FIRST_RETRY_S
        try:
            while not stopping.is_set():
                self._wake.clear()  # before the pass: a NOTIFY during it means "again"
                try:
                    await self.tick_due()
                    wait_s = await self._until_next()
                    retry_s = FIRST_RETRY_S
                except Exception as exc:
                    if not is_transient(exc):
                        log.exception("SLA ticker pass failed")
                    else:
                        log.warning("SLA ticker: database unavailable (%s)", exc)
                    wait_s, retry_s = retry_s, min(retry_s * 2, MAX_RETRY_S)
                await self._sleep(stopping, wait_s)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def tick_due(self) -> int:
        """Tick every ticket due now, one transaction each; how many were ticked."""
        now = self.service.now()
        done: list[int] = []
        while (ticket_id := await self._tick_one(now, done)) is not None:
            done.append(ticket_id)
        return len(done)

    async def _tick_one(self, now: datetime, done: list[int]) -> int | None:
        async with self.service.pool.acquire() as conn, conn.transaction():
            row = await store.lock_due_ticket(conn, now, done)
            if row is None:
                return None
            try:
                async with conn.transaction():  # a savepoint: this ticket's writes only
                    await apply_locked(conn, row, Tick(now), role=SYSTEM,
                                       policy=self.service.policy)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.exception("SLA tick of ticket %s failed; again in %s", row["number"],
                              BROKEN_TICKET_RETRY)
                await store.postpone_tick(conn, row["id"], now + BROKEN_TICKET_RETRY)
            return int(row["id"])

    async def _until_next(self) -> float | None:
        """Seconds until the earliest wake-up; None when no ticket needs one."""
        earliest = await store.earliest_tick(self.service.pool)
        if earliest is None:
            return None
        return max(0.0, (earliest - self.service.now()).total_seconds())

    async def _sleep(self, stopping: asyncio.Event, seconds: float | None) -> None:
        woken = asyncio.ensure_future(self._wake.wait())
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({woken, stop}, timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            stop.cancel()

    async def _notified(self, _channel: str, _payload: str) -> None:
        self.wake()

    async def _connected(self) -> None:
        self.wake()
