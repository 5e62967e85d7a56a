"""Server-side sessions for aiohttp-session, kept in PostgreSQL.

The cookie holds a random token (Secure, HttpOnly, SameSite=Lax, no lifetime:
it ends with the browser); the table holds the token's SHA-256, the user, the
CSRF token, and when the session ends: ``session_hours`` after sign-in, or
after ``session_idle_minutes`` without a request, whichever comes first.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from aiohttp_session import AbstractStorage, Session, get_session, new_session

from callcenter.auth import store
from callcenter.auth.model import Principal

COOKIE = "cc_session"
TOUCH_EVERY_S = 60  # last_seen_at is written at most once a minute per session
PRINCIPAL_KEY = web.RequestKey("principal", Principal)


class PgSessionStorage(AbstractStorage):
    def __init__(self, pool: Callable[[], asyncpg.Pool], *, lifetime_s: float,
                 idle_s: float, secure: bool = True) -> None:
        super().__init__(cookie_name=COOKIE, secure=secure, httponly=True, samesite="Lax")
        self._pool = pool
        self.lifetime_s = lifetime_s
        self.idle_s = idle_s

    async def load_session(self, request: web.Request) -> Session:
        token = self.load_cookie(request)
        if not token or len(token) > 100:
            return Session(None, data=None, new=True)
        row = await store.load_session(self._pool(), token, idle_s=self.idle_s)
        if row is None:
            return Session(None, data=None, new=True)
        request[PRINCIPAL_KEY] = row.user
        if (datetime.now(UTC) - row.last_seen_at).total_seconds() > TOUCH_EVERY_S:
            await store.touch_session(self._pool(), token)
        return Session(token, new=False, data={
            "created": int(row.created_at.timestamp()), "session": row.data})

    async def save_session(self, request: web.Request, response: web.StreamResponse,
                           session: Session) -> None:
        token = session.identity
        if session.empty:
            if token:
                await store.delete_session(self._pool(), token)
            self.save_cookie(response, "")
            return
        data = dict(session)
        if token is None:
            token = secrets.token_urlsafe(32)
            await store.create_session(
                self._pool(), token, int(data["uid"]), data, lifetime_s=self.lifetime_s,
                ip=request.remote, user_agent=request.headers.get("User-Agent"))
            session.set_new_identity(token)
        else:
            await store.save_session_data(self._pool(), token, data)
        self.save_cookie(response, token)


async def sign_in(request: web.Request, principal: Principal) -> str:
    """A fresh session (never the one the browser brought: no fixation); returns
    its CSRF token."""
    session = await new_session(request)
    csrf = secrets.token_urlsafe(32)
    session.update({"uid": principal.user_id, "csrf": csrf, "at": int(time.time())})
    request[PRINCIPAL_KEY] = principal
    return csrf


async def sign_out(request: web.Request) -> None:
    session = await get_session(request)
    session.invalidate()


async def current(request: web.Request) -> tuple[Principal | None, str | None]:
    """The signed-in user and the session's CSRF token, if any."""
    session = await get_session(request)
    principal = request.get(PRINCIPAL_KEY)
    if principal is None or session.new:
        return None, None
    return principal, session.get("csrf")
