"""Signing in to the web from tests: users of each role, and clients that keep
their session cookie (Secure, so the jar treats the test server as a secure
origin, as browsers treat 127.0.0.1) and send the CSRF token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from callcenter.auth import store as users
from callcenter.auth.model import Role
from callcenter.auth.passwords import hash_password

PASSWORD = "correct horse battery"
_HASH = hash_password(PASSWORD)  # hashing is slow on purpose: once per test run


async def add_user(pool: asyncpg.Pool, username: str, role: Role | str,
                   agent_id: str | None = None) -> int:
    user = await users.create_user(pool, username=username, role=Role(role),
                                   password_hash=_HASH, created_by="test",
                                   agent_id=agent_id)
    return int(user["id"])


@dataclass
class Browser:
    """One signed-in (or anonymous) client with its own cookies."""

    session: aiohttp.ClientSession
    server: TestServer
    csrf: str | None = None

    @property
    def app(self) -> web.Application:
        return self.server.app

    async def sign_in(self, username: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        resp = await self.session.post("/api/session",
                                       json={"username": username, "password": password})
        if resp.status == 200:
            self.csrf = (await resp.json())["csrf_token"]
        return resp

    async def request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        if method.upper() in ("POST", "PUT", "PATCH", "DELETE") and self.csrf:
            kwargs.setdefault("headers", {}).setdefault("X-CSRF-Token", self.csrf)
        return await self.session.request(method, path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", path, **kwargs)


@asynccontextmanager
async def browser(server: TestServer) -> AsyncIterator[Browser]:
    root = server.make_url("/")
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[str(root.origin())])
    async with aiohttp.ClientSession(base_url=root, cookie_jar=jar) as session:
        yield Browser(session, server)


@asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[TestServer]:
    """The app on a loopback port, started (the cookie jar must know the port)."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def signed_in(server: TestServer, username: str) -> AsyncIterator[Browser]:
    async with browser(server) as who:
        resp = await who.sign_in(username)
        assert resp.status == 200, await resp.text()
        yield who


@asynccontextmanager
async def signed_in_at(base_url: str, pool: asyncpg.Pool, role: Role | str = "supervisor",
                       username: str = "e2e-boss") -> AsyncIterator[aiohttp.ClientSession]:
    """A session signed in to a running service (``base_url``, e.g. from an e2e test)
    as a new user of ``role``."""
    await add_user(pool, username, role)
    root = URL(base_url)
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[str(root.origin())])
    async with aiohttp.ClientSession(base_url=root, cookie_jar=jar) as http:
        resp = await http.post("/api/session", json={"username": username,
                                                     "password": PASSWORD})
        assert resp.status == 200, await resp.text()
        yield http


async def answered_calls_and_staff(pool: asyncpg.Pool, calls: dict[str, str]) -> None:
    """Calls answered and ended (call id -> agent id), agent users ``ag1``, ``ag2``...
    linked to the agents in that order, and ``qa1``, ``sup1``, ``adm1``."""
    from callcenter.db.store import PgStore

    store = PgStore(pool)
    for call, agent in calls.items():
        await store.upsert_agent(agent, name=agent, endpoint=f"PJSIP/{agent}", skills=["repair"])
        await store.open_call(call, caller_number="13800000000", channel_id=call)
        await store.update_call(call, stage="conversation", agent_id=agent)
        await store.finish_call(call, stage="conversation", hangup_by="caller")
    for i, agent in enumerate(dict.fromkeys(calls.values()), start=1):
        await add_user(pool, f"ag{i}", "agent", agent_id=agent)
    for name, role in (("qa1", "qa"), ("sup1", "supervisor"), ("adm1", "admin")):
        await add_user(pool, name, role)
