"""Agent SIP accounts in PostgreSQL and the provisioner that pushes them to
Asterisk (a fake ARI dynamic-config store here; the real one in tests/e2e)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import pytest

from callcenter.ari.client import AriError, AriNotFound
from callcenter.db.store import AGENTS_CHANNEL, PgStore
from callcenter.settings import Settings
from callcenter.sip.accounts import AccountError, field_value
from callcenter.sip.provision import add_agent, run_provisioner, sync_accounts
from tests.conftest import drop_connections

SKILLS = ["repair"]


class FakeAri:
    """ARI's dynamic configuration of res_pjsip, in memory; GET shows what was PUT
    the way Asterisk renders it (booleans, codec lists, digest algorithm)."""

    RENDER: ClassVar[dict[str, str]] = {
        "yes": "true", "no": "false", "!all,ulaw,alaw": "(ulaw|alaw)"}

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, str]] = {}
        self.static = {("endpoint", "trunk-loopback"): {"context": "hotline"}}
        self.writes = 0
        self.down = False

    def _key(self, path: str) -> tuple[str, str]:
        kind, name = path.rsplit("/", 2)[-2:]
        return kind, name

    async def get(self, path: str, **_: Any) -> Any:
        self._check(path)
        if path == "/endpoints/PJSIP":
            names = {n for k, n in [*self.objects, *self.static] if k == "endpoint"}
            return [{"technology": "PJSIP", "resource": n, "state": "offline"} for n in names]
        found = self.objects.get(self._key(path)) or self.static.get(self._key(path))
        if found is None:
            raise AriNotFound(404, "GET", path, "")
        return [{"attribute": k, "value": v} for k, v in found.items()]

    async def put(self, path: str, body: Any = None, **_: Any) -> Any:
        self._check(path)
        fields = {}
        for f in body["fields"]:
            value = self.RENDER.get(f["value"], f["value"])
            fields[f["attribute"]] = value.replace("md5:", "MD5:", 1)
        self.objects[self._key(path)] = fields
        self.writes += 1
        return body["fields"]

    async def delete(self, path: str, **_: Any) -> Any:
        self._check(path)
        if self._key(path) in self.static:
            raise AriError(403, "DELETE", path, "")
        if self.objects.pop(self._key(path), None) is None:
            raise AriNotFound(404, "DELETE", path, "")

    def _check(self, path: str) -> None:
        if self.down:
            raise AriError(0, "GET", path, "refused")

    def endpoint(self, name: str) -> dict[str, str] | None:
        return self.objects.get(("endpoint", name))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, sip_host="192.0.2.10", sip_port=5062)


async def test_an_account_is_stored_as_a_digest_and_announced(
    db_pool: asyncpg.Pool, settings: Settings
) -> None:
    store = PgStore(db_pool)
    heard: list[dict[str, Any]] = []
    def hear(*args: Any) -> None:
        heard.append(json.loads(args[3]))

    listener = await db_pool.acquire()
    await listener.add_listener(AGENTS_CHANNEL, hear)
    try:
        added = await add_agent(store, settings, "1001", name="周", skills=SKILLS)
        assert added.credentials is not None
        assert added.as_dict()["sip"] == {"user": "1001", "password": added.credentials.password,
                                          "server": "192.0.2.10:5062"}
        [account] = await store.sip_accounts()
        assert (account.username, account.realm, account.display_name) == (
            "1001", "callcenter", "周")
        assert await db_pool.fetchval("SELECT endpoint FROM agents WHERE id = '1001'") == (
            "PJSIP/1001")

        with pytest.raises(AccountError):  # the SIP user of another agent
            await add_agent(store, settings, "x", name="x", skills=SKILLS, sip_user="1001")
        await add_agent(store, settings, "1001", name="周", skills=SKILLS,
                        endpoint="Local/1001@sim-agents/n")
        assert await store.sip_accounts() == []
        assert await store.remove_agent("1001") and not await store.remove_agent("nobody")
        for _ in range(50):
            if len(heard) >= 3:
                break
            await asyncio.sleep(0.02)
        assert heard[0] == {"agent_id": "1001", "change": "account"} and len(heard) == 3
    finally:
        await listener.remove_listener(AGENTS_CHANNEL, hear)
        await db_pool.release(listener)


async def test_sync_is_idempotent_and_leaves_what_it_did_not_create() -> None:
    from callcenter.sip.accounts import new_account

    ari = FakeAri()
    a, _ = new_account("1001", realm="callcenter", server="s", display_name="A")
    b, _ = new_account("1002", realm="callcenter", server="s")
    client: Any = ari
    assert await sync_accounts(client, [a, b]) == 2
    assert await sync_accounts(client, [a, b]) == 0
    assert ari.writes == 10  # auth, desk phone's aor + endpoint, softphone's aor + endpoint
    assert ari.endpoint("1001-web")["webrtc"] == "true"
    a2, _ = new_account("1001", realm="callcenter", server="s", display_name="A")  # new password
    assert await sync_accounts(client, [a2]) == 2  # 1001 rewritten, 1002 deleted
    assert ari.endpoint("1002") is None and ("auth", "1002") not in ari.objects
    assert ari.endpoint("1002-web") is None and ("aor", "1002-web") not in ari.objects
    assert field_value([{"attribute": k, "value": v} for k, v in
                        ari.objects[("auth", "1001")].items()], "password_digest") == (
        f"MD5:{a2.ha1}")
    assert ("endpoint", "trunk-loopback") in ari.static
    assert await sync_accounts(client, []) == 1 and not ari.objects


async def test_the_provisioner_follows_notifications_and_database_restarts(
    db_pool: asyncpg.Pool, pg_server_dsn: str, settings: Settings
) -> None:
    store = PgStore(db_pool)
    await add_agent(store, settings, "1001", name="A", skills=SKILLS)
    ari = FakeAri()
    synced = asyncio.Event()
    task = asyncio.create_task(run_provisioner(db_pool, ari, synced=synced,  # type: ignore[arg-type]
                                               retry_min_s=0.05))

    async def until(what: str, check: Any) -> None:
        for _ in range(200):
            if task.done():
                task.result()
            if check():
                return
            await asyncio.sleep(0.025)
        raise AssertionError(what)

    try:
        await until("first sync", lambda: ari.endpoint("1001") is not None)
        await add_agent(store, settings, "1002", name="B", skills=SKILLS)
        await until("notified add", lambda: ari.endpoint("1002") is not None)
        await store.remove_agent("1001")
        await until("notified removal", lambda: ari.endpoint("1001") is None)

        ari.down = True  # Asterisk away: retried, then synced
        await add_agent(store, settings, "1003", name="C", skills=SKILLS)
        await asyncio.sleep(0.2)
        ari.down = False
        await until("sync after ARI outage", lambda: ari.endpoint("1003") is not None)

        await drop_connections(db_pool, pg_server_dsn)  # the LISTEN connection dies
        await asyncio.sleep(0.1)
        await add_agent(store, settings, "1004", name="D", skills=SKILLS)
        await until("sync after database restart", lambda: ari.endpoint("1004") is not None)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
