"""A LISTEN connection that survives the database going away.

``listen`` keeps one connection LISTENing on some channels. After every
(re)connection it awaits ``on_connect()`` first (to catch up on whatever was
announced while it was not listening), then hands each notification, in order,
to ``on_notify(channel, payload)``. A dropped connection is noticed through
asyncpg's termination callback (no polling) and re-opened with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from callcenter.db.connect import connect

log = logging.getLogger("callcenter.db.notify")

OnNotify = Callable[[str, str], Awaitable[None]]
OnConnect = Callable[[], Awaitable[None]]
_LOST = ("", "")  # queued when the connection dies


async def listen(
    dsn: str,
    channels: Sequence[str],
    on_notify: OnNotify,
    on_connect: OnConnect,
    stopping: asyncio.Event,
    *,
    first_delay_s: float = 0.25,
    max_delay_s: float = 5.0,
) -> None:
    delay = first_delay_s
    while not stopping.is_set():
        try:
            conn = await connect(dsn, attempts=1)
        except Exception as exc:
            log.warning("LISTEN %s: cannot connect (%s); again in %.1fs", ",".join(channels),
                        exc, delay)
            await _sleep_or_stop(stopping, delay)
            delay = min(max_delay_s, delay * 2)
            continue
        delay = first_delay_s
        try:
            await _serve(conn, channels, on_notify, on_connect, stopping)
        except Exception as exc:
            log.warning("LISTEN %s: connection lost (%r)", ",".join(channels), exc)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)


async def _serve(conn: asyncpg.Connection, channels: Sequence[str], on_notify: OnNotify,
                 on_connect: OnConnect, stopping: asyncio.Event) -> None:
    inbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    def notified(_conn: object, _pid: int, channel: str, payload: str) -> None:
        inbox.put_nowait((channel, payload))

    conn.add_termination_listener(lambda _conn: inbox.put_nowait(_LOST))
    for channel in channels:
        await conn.add_listener(channel, notified)
    await on_connect()  # after LISTEN: nothing announced from now on is missed
    stop = asyncio.ensure_future(stopping.wait())
    try:
        while True:
            get = asyncio.ensure_future(inbox.get())
            done, _ = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
            if stop in done:
                get.cancel()
                return
            item = get.result()
            if item == _LOST or conn.is_closed():
                raise ConnectionError("LISTEN connection closed")
            try:
                await on_notify(*item)
            except Exception:
                log.exception("handling NOTIFY %s failed", item[0])
    finally:
        stop.cancel()


async def _sleep_or_stop(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
