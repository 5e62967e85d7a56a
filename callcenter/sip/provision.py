"""Agent SIP accounts, I/O: create them (``add_agent``, the code path of
``callcenter agents add``) and push them to Asterisk over ARI dynamic
configuration (``sync_accounts``, ``run_provisioner``).

Asterisk keeps the pushed objects in astdb (sorcery.conf), so they survive its
restart; the database stays the source of truth. ``sync_accounts`` makes
Asterisk match a list of accounts: missing or changed accounts are written
(auth, aor, then endpoint; an account is unchanged when ARI shows the values
it would write), endpoints the service created for agents no longer in the list are
deleted. Endpoints it did not create (pjsip.conf trunks, anything without the
agent id as ``accountcode`` in context ``agent-phones``) are never touched. One
database per Asterisk: the service owns every endpoint so marked there.

Secrets: the HA1 travels only in the JSON body of a PUT; it is never logged and
never part of a URL. ARI's answer to that PUT echoes it and is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from callcenter.ari.client import AriClient, AriError, AriNotFound
from callcenter.constants import CONTEXT_AGENT_PHONES
from callcenter.sip.accounts import (
    ENDPOINT_TECH,
    MARKER_FIELD,
    WEB_SUFFIX,
    Account,
    AccountError,
    Credentials,
    expected,
    field_value,
    matches,
    new_account,
    objects,
    web_name,
)

if TYPE_CHECKING:
    from callcenter.db.store import PgStore
    from callcenter.settings import Settings

log = logging.getLogger("callcenter.sip")

DYNAMIC = "/asterisk/config/dynamic/res_pjsip"


def _path(kind: str, name: str) -> str:
    from urllib.parse import quote

    return f"{DYNAMIC}/{kind}/{quote(name, safe='')}"


# ---- creating agents -------------------------------------------------------------------


@dataclass(frozen=True)
class AddedAgent:
    agent_id: str
    endpoint: str
    credentials: Credentials | None  # None for an agent on a given endpoint (no account)

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"added": self.agent_id, "endpoint": self.endpoint}
        if self.credentials is not None:
            doc["sip"] = self.credentials.as_dict()
        return doc


async def add_agent(
    store: PgStore,
    settings: Settings,
    agent_id: str,
    *,
    name: str,
    skills: Iterable[str],
    endpoint: str | None = None,
    sip_user: str | None = None,
) -> AddedAgent:
    """Add (or re-add) an agent. Without ``endpoint`` the agent gets a SIP account
    with a fresh random password (re-adding one changes the password) and the
    endpoint ``PJSIP/<user>``; with one (``Local/1001@sim-agents/n``, a phone in
    pjsip.conf) no account, and an old one is deleted."""
    skills = list(skills)
    if endpoint is not None:
        if sip_user is not None:
            raise AccountError("--sip-user is for SIP accounts; it cannot go with --endpoint")
        await store.upsert_agent(agent_id, name=name, endpoint=endpoint, skills=skills)
        return AddedAgent(agent_id, endpoint, None)
    account, credentials = new_account(
        agent_id, realm=settings.sip_realm, server=f"{settings.sip_host}:{settings.sip_port}",
        username=sip_user, display_name=name,
    )
    try:
        await store.upsert_agent(
            agent_id, name=name, endpoint=account.endpoint, skills=skills, sip_account=account
        )
    except asyncpg.UniqueViolationError:
        raise AccountError(f"SIP user {account.username!r} belongs to another agent") from None
    return AddedAgent(agent_id, account.endpoint, credentials)


# ---- pushing to Asterisk ---------------------------------------------------------------


async def _get_fields(client: AriClient, kind: str, name: str) -> Any:
    try:
        return await client.get(_path(kind, name))
    except AriNotFound:
        return None


async def _delete(client: AriClient, kind: str, name: str) -> None:
    try:
        await client.delete(_path(kind, name))
    except AriNotFound:
        pass


async def push_account(client: AriClient, account: Account) -> None:
    """Write the account's auth, AORs and endpoints (desk phone and browser
    softphone; each endpoint after the objects it refers to)."""
    for kind, name, fields in objects(account):
        await client.put(_path(kind, name), {"fields": fields})


async def delete_account(client: AriClient, username: str) -> None:
    web = web_name(username)
    for kind, name in (("endpoint", web), ("aor", web), ("endpoint", username),
                       ("aor", username), ("auth", username)):
        await _delete(client, kind, name)


async def sync_accounts(client: AriClient, accounts: Iterable[Account]) -> int:
    """Make Asterisk's agent endpoints match ``accounts``; return how many
    accounts were written or deleted (0: already in sync). Idempotent; raises
    ``AriError`` when Asterisk cannot be reached (nothing half-done matters:
    the next sync repairs it)."""
    wanted = {a.username: a for a in accounts}
    changed = 0
    for username, account in wanted.items():
        if await _in_sync(client, account):
            continue
        await push_account(client, account)
        log.info("SIP account %s (agent %s) pushed to Asterisk", username, account.agent_id)
        changed += 1
    listed = await client.get(f"/endpoints/{ENDPOINT_TECH}") or []
    names = {str(item.get("resource")) for item in listed
             if isinstance(item, dict) and item.get("resource")}
    # An account is its desk phone's endpoint and its softphone's (<user>-web).
    for base in sorted({n.removesuffix(WEB_SUFFIX) for n in names} - set(wanted)):
        name = base if base in names else web_name(base)
        fields = await _get_fields(client, "endpoint", name)
        agent = field_value(fields, MARKER_FIELD)
        if not agent or field_value(fields, "context") != CONTEXT_AGENT_PHONES:
            continue  # not ours: pjsip.conf trunks, endpoints made by hand
        try:
            await delete_account(client, base)
        except AriError as exc:
            if exc.status != 403:
                raise
            continue  # a phone in pjsip.conf (read-only) that looks like ours
        log.info("SIP account %s (agent %s) deleted from Asterisk", base, agent)
        changed += 1
    return changed


async def _in_sync(client: AriClient, account: Account) -> bool:
    for kind, name, want in expected(account):
        if not matches(want, await _get_fields(client, kind, name)):
            return False
    return True


async def run_provisioner(
    pool_or_dsn: asyncpg.Pool | str,
    client: AriClient,
    *,
    resync: asyncio.Event | None = None,
    synced: asyncio.Event | None = None,
    retry_min_s: float = 1.0,
    retry_max_s: float = 30.0,
) -> None:
    """Keep Asterisk's agent accounts in line with the database, until cancelled.

    Syncs once at start (after LISTEN, so no change is missed) and again on each
    NOTIFY on ``cc_agents`` (several notifications during a sync make one more
    sync), and whenever ``resync`` is set (e.g. after an ARI reconnect). No
    polling. ``synced`` is set after each successful sync. A lost database
    connection or an unreachable Asterisk is retried with back-off; the retry
    syncs everything again. With a DSN the provisioner opens its own two
    connections; with a pool it holds one of its connections for LISTEN.
    """
    from callcenter.db.connect import create_pool
    from callcenter.db.store import AGENTS_CHANNEL, TRANSIENT_ERRORS, PgStore

    retried: tuple[type[BaseException], ...] = (AriError, *TRANSIENT_ERRORS)  # OSError too

    owned = isinstance(pool_or_dsn, str)
    pool = await create_pool(pool_or_dsn, min_size=1, max_size=2) if owned else pool_or_dsn
    assert isinstance(pool, asyncpg.Pool)
    store = PgStore(pool)
    wake = resync or asyncio.Event()
    delay = retry_min_s
    lost = asyncio.Event()  # the LISTEN connection died
    try:
        while True:
            lost.clear()

            def notified(_c: object, _pid: int, _channel: str, payload: str) -> None:
                log.debug("agents changed: %s", _agent_of(payload))
                wake.set()

            def terminated(_c: object) -> None:
                lost.set()
                wake.set()

            try:
                async with pool.acquire() as conn:
                    await conn.add_listener(AGENTS_CHANNEL, notified)
                    conn.add_termination_listener(terminated)
                    try:
                        wake.set()  # the first sync, now that nothing can be missed
                        while True:
                            await wake.wait()
                            if lost.is_set():
                                raise ConnectionError("LISTEN connection lost")
                            wake.clear()
                            changed = await sync_accounts(client, await store.sip_accounts())
                            if changed:
                                log.info("SIP accounts synced: %d changed", changed)
                            if synced is not None:
                                synced.set()
                            delay = retry_min_s
                    finally:
                        # A connection the server dropped is already detached from the
                        # pool's proxy: there is nothing left to unregister then.
                        with contextlib.suppress(asyncpg.InterfaceError):
                            conn.remove_termination_listener(terminated)
                            if not conn.is_closed():
                                await conn.remove_listener(AGENTS_CHANNEL, notified)
            except retried as exc:
                log.warning("SIP account sync failed (%s); retrying in %.0f s",
                            _reason(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, retry_max_s)
    finally:
        if owned:
            await pool.close()


@contextlib.asynccontextmanager
async def provisioning(
    pool_or_dsn: asyncpg.Pool | str, client: AriClient, **options: Any
) -> AsyncIterator[asyncio.Task[None]]:
    """``run_provisioner`` as a background task for the life of the block (for
    the service's cleanup context): cancelled and awaited on exit."""
    task = asyncio.create_task(run_provisioner(pool_or_dsn, client, **options),
                               name="sip-provisioner")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _agent_of(payload: str) -> str:
    try:
        return str(json.loads(payload).get("agent_id"))
    except (ValueError, AttributeError):
        return "?"


def _reason(exc: BaseException) -> str:
    """A one-line reason without bodies: an ARI answer may echo a digest."""
    if isinstance(exc, AriError):
        return f"ARI {exc.method} {exc.path} -> {exc.status or 'no answer'}"
    return f"{type(exc).__name__}: {exc}"
