"""Sign-in throttling: failed attempts are counted per (user name, address), per
address and per user name in moving windows; past a limit, sign-in answers 429
with Retry-After until the window frees up. A success clears the pair's count.

In memory (``limits``): one web process holds the counts; a restart forgets them.
"""

from __future__ import annotations

import math
import time

import limits
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

# Guessing one account from one place; spraying many accounts from one place;
# one account from many places (slowed, not locked, by the larger allowance).
PAIR = limits.parse("5/15 minutes")
ADDRESS = limits.parse("30/15 minutes")
ACCOUNT = limits.parse("100/hour")


class LoginThrottle:
    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def _keys(self, username: str, ip: str) -> list[tuple[limits.RateLimitItem, str]]:
        return [(PAIR, f"pair:{username}:{ip}"), (ADDRESS, f"ip:{ip}"),
                (ACCOUNT, f"user:{username}")]

    async def retry_after(self, username: str, ip: str) -> int | None:
        """Seconds to wait before the next attempt is heard, or None."""
        waits = []
        for item, key in self._keys(username, ip):
            if not await self._limiter.test(item, key):
                stats = await self._limiter.get_window_stats(item, key)
                waits.append(max(1, math.ceil(stats.reset_time - time.time())))
        return max(waits) if waits else None

    async def failed(self, username: str, ip: str) -> None:
        for item, key in self._keys(username, ip):
            await self._limiter.hit(item, key)

    async def succeeded(self, username: str, ip: str) -> None:
        await self._limiter.clear(PAIR, f"pair:{username}:{ip}")
