"""The ACD's ARI adapter and executor against a fake Asterisk over real sockets:
the dialplan contract, lanes (a slow request holds up only its own call), event
timestamps, failures of every kind, reconnects and restarts."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callcenter.acd.queues import load_queues
from callcenter.acd.stasis import AcdApp
from callcenter.ari.client import AriClient
from callcenter.db.writer import OrderedWriter
from tests.protocol.fake_ari import APP, PASSWORD, USER, FakeAri

NOW = datetime(2025, 1, 1, 4, 0, tzinfo=UTC)  # the fake's event timestamp (12:00 +08:00)


class MemStore:
    """The store methods the ACD uses, in memory; every write is logged."""

    def __init__(self, agents: list[dict[str, Any]]) -> None:
        self.agents = {a["id"]: dict(a) for a in agents}
        self.calls: dict[str, dict[str, Any]] = {}
        self.legs: dict[tuple[str, str], dict[str, Any]] = {}
        self.log: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.history: list[dict[str, Any]] = []

    def _call(self, call_id: str) -> dict[str, Any]:
        return self.calls.setdefault(call_id, {"id": call_id, "stage": "greeting",
                                               "status": "active"})

    async def open_call(self, call_id: str, **kw: Any) -> None:
        self.log.append(("open_call", (call_id,), kw))
        self._call(call_id).update(kw)

    async def update_call(self, call_id: str, **kw: Any) -> None:
        self.log.append(("update_call", (call_id,), kw))
        self._call(call_id).update(kw)

    async def add_leg(self, call_id: str, leg: str, **kw: Any) -> None:
        self.log.append(("add_leg", (call_id, leg), kw))
        self.legs[(call_id, leg)] = kw

    async def finish_call(self, call_id: str, **kw: Any) -> bool:
        self.log.append(("finish_call", (call_id,), kw))
        call = self._call(call_id)
        if call["status"] != "active":
            return False
        call.update(kw, status="ended")
        return True

    async def record_agent_state(self, agent_id: str, **kw: Any) -> None:
        self.history.append({"agent_id": agent_id, **kw})
        self.agents[agent_id].update(state=kw["to_state"], pause_reason=kw["reason"],
                                     state_since=kw["at"])

    async def agent_rows(self) -> list[dict[str, Any]]:
        return [dict(a) for a in self.agents.values()]

    async def active_calls(self) -> list[dict[str, Any]]:
        return [
            {**c, "leg_channels": {leg: d.get("channel_id") for (cid, leg), d in self.legs.items()
                                   if cid == c["id"]}}
            for c in self.calls.values() if c["status"] == "active"
        ]

    def finished(self, call_id: str) -> dict[str, Any] | None:
        call = self.calls.get(call_id)
        return call if call and call["status"] == "ended" else None


def agents() -> list[dict[str, Any]]:
    since = NOW - timedelta(minutes=10)
    return [
        {"id": "1001", "name": "Wang", "endpoint": "Local/1001@sim-agents/n",
         "skills": ["repair", "complaint"], "state": "available",
         "state_since": since - timedelta(minutes=5)},
        {"id": "1002", "name": "Li", "endpoint": "Local/1002@sim-agents/n",
         "skills": ["repair"], "state": "available", "state_since": since},
    ]


@dataclass
class Env:
    fake: FakeAri
    store: MemStore
    client: AriClient
    acd: AcdApp
    writer: OrderedWriter
    task: asyncio.Task[None]

    async def stop(self) -> None:
        await self.acd.stop()
        await asyncio.wait_for(self.task, 5)
        await self.writer.close()
        await self.client.close()


async def until(cond: Callable[[], Any], within: float = 5.0, what: str = "") -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (value := cond()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.01)
    return value


async def start_env(fake: FakeAri, store: MemStore | None = None, **kw: Any) -> Env:
    store = store or MemStore(agents())
    client = AriClient(fake.url, USER, PASSWORD, APP, reconnect_min_s=0.05, reconnect_max_s=0.2)
    writer = OrderedWriter(store, first_delay_s=0.01, max_delay_s=0.05)
    await writer.start()
    options: dict[str, Any] = {"ring_timeout_s": 5.0, "wrap_up_s": 0.0, **kw}
    acd = AcdApp(client, store, writer, load_queues(), flush=writer.flush, **options)
    task = asyncio.create_task(acd.run())
    env = Env(fake, store, client, acd, writer, task)
    await until(lambda: acd.reconciles >= 1, what="first reconcile")
    return env


@pytest.fixture
async def env(fake: FakeAri) -> AsyncIterator[Env]:
    environment = await start_env(fake)
    yield environment
    await environment.stop()


def bridged(fake: FakeAri, channel_id: str) -> bool:
    return fake.variables.get(channel_id, {}).get("CC_BRIDGED") == "1"


async def connect_call(env: Env, caller: str = "caller-1", call_id: str = "c1") -> str:
    fake = env.fake
    before = len(fake.originates())
    fake.add_caller(caller, call_id)
    await until(lambda: len(fake.originates()) > before, what="originate")
    agent_ch = fake.agent_channel()
    fake.answer(agent_ch)
    await until(lambda: bridged(fake, caller) and bridged(fake, agent_ch), what="CC_BRIDGED")
    return agent_ch


async def test_websocket_url_and_auth(env: Env) -> None:
    query = env.fake.ws_auth[0]
    assert query == {"app": APP, "subscribeAll": "false"}  # no api_key: credentials in a
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()  # header only
    assert env.fake.ws_authorization[0] == f"Basic {token}"


async def test_happy_path_follows_the_dialplan_contract(env: Env) -> None:
    fake, store = env.fake, env.store
    fake.add_caller("caller-1", "c1", timestamp="2025-01-01T12:00:07.250+0800")
    await until(lambda: fake.originates(), what="originate")
    originate = fake.originates()[0]
    # The longest-idle agent with the skill, into the recording dialplan, subscribed.
    assert originate.params["endpoint"] == "Local/1001@sim-agents/n"
    assert originate.params["context"] == "cc-agent"
    assert "app" not in originate.params
    agent_ch = originate.params["channelId"]
    assert originate.body["variables"]["CC_CALL_ID"] == "c1"
    assert agent_ch in fake.subscribed
    assert fake.find("POST", r"^/channels/caller-1/moh$")
    await until(lambda: env.store.calls.get("c1", {}).get("stage") == "ringing")
    # queued_at is the event's own time, not when the service handled it.
    assert store.calls["c1"]["queued_at"] == NOW + timedelta(seconds=7.25)
    fake.answer(agent_ch)
    await until(lambda: bridged(fake, "caller-1") and bridged(fake, agent_ch))
    assert fake.bridges["c1-bridge"]["channels"] == ["caller-1", agent_ch]
    assert fake.find("DELETE", r"^/channels/caller-1/moh$")
    await until(lambda: ("c1", "agent") in store.legs)
    assert store.legs[("c1", "caller")]["recording_name"] == "c1/caller.wav"
    assert store.agents["1001"]["state"] == "on_call"
    fake.remove("caller-1")
    await until(lambda: store.finished("c1"), what="finish")
    call = store.calls["c1"]
    assert (call["stage"], call["hangup_by"], call["outcome"]) == (
        "conversation", "caller", "answered")
    assert agent_ch not in fake.channels  # hung up by the ACD
    assert not fake.bridges
    assert store.agents["1001"]["state"] == "available"  # wrap-up 0 s here


async def test_a_slow_ari_request_holds_up_only_its_own_call(env: Env) -> None:
    fake = env.fake
    fake.slow_rules.append((r"^/channels/slow-caller/moh$", 3.0))
    fake.add_caller("slow-caller", "slow", queue="complaint")  # only 1001 serves it
    await until(lambda: fake.find("POST", r"^/channels/slow-caller/moh$"))
    fake.add_caller("fast-caller", "fast", queue="repair")
    loop = asyncio.get_running_loop()
    started = loop.time()
    # 1001 was taken by the slow call's offer (queued behind its moh); 1002 rings for fast.
    await until(lambda: any(r.body["variables"]["CC_CALL_ID"] == "fast"
                            for r in fake.originates()), within=2.0)
    assert loop.time() - started < 1.0


async def test_agent_no_answer_pauses_and_next_agent_rings(env: Env) -> None:
    fake, store = env.fake, env.store
    fake.add_caller("caller-1", "c1")
    await until(lambda: fake.originates())
    first = fake.agent_channel()
    fake.remove(first, cause=19)
    await until(lambda: len(fake.originates()) == 2, what="second originate")
    assert fake.originates()[1].params["endpoint"] == "Local/1002@sim-agents/n"
    await until(lambda: store.agents["1001"]["state"] == "paused")
    assert store.agents["1001"]["pause_reason"] == "no_answer"


async def test_originate_failure_pauses_agent_unreachable(env: Env) -> None:
    fake, store = env.fake, env.store
    fake.fail_rules.append(("POST", r"^/channels$", 500))
    fake.add_caller("caller-1", "c1")
    await until(lambda: store.agents["1002"].get("pause_reason") == "unreachable")
    assert store.agents["1001"]["pause_reason"] == "unreachable"
    assert env.acd.machine.calls["c1"].state == "queued"


async def test_abandon_in_queue(env: Env) -> None:
    fake, store = env.fake, env.store
    fake.add_caller("caller-1", "c1", queue="consultation")  # nobody has the skill
    await until(lambda: store.calls.get("c1", {}).get("stage") == "queue")
    fake.remove("caller-1")
    await until(lambda: store.finished("c1"))
    assert store.calls["c1"]["outcome"] == "abandoned"
    assert store.calls["c1"]["stage"] == "queue"


async def test_moh_failure_falls_back_to_ringing(env: Env) -> None:
    fake = env.fake
    fake.fail_rules.append(("POST", r"/moh$", 500))
    fake.add_caller("caller-1", "c1", queue="consultation")
    await until(lambda: fake.find("POST", r"^/channels/caller-1/ring$"), what="ringback")


async def test_404_everywhere_is_survived(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    fake, store = env.fake, env.store
    fake.fail_rules.append(("*", r"^/(channels|bridges)", 404))
    fake.add_caller("caller-1", "c1")
    await until(lambda: store.agents["1001"]["state"] == "paused", what="offer failed")
    fake.fail_rules.clear()
    fake.remove("caller-1")
    await until(lambda: store.finished("c1"))
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_reconnect_reconciles_a_call_whose_channels_vanished(env: Env) -> None:
    fake, store = env.fake, env.store
    agent_ch = await connect_call(env)
    await fake.drop()
    fake.vanish("caller-1")
    fake.vanish(agent_ch)
    await until(lambda: env.acd.reconciles >= 2, what="second reconcile")
    await until(lambda: store.finished("c1"))
    assert store.calls["c1"]["stage"] == "conversation"


async def test_restart_adopts_waiting_caller_and_finishes_gone_call(fake: FakeAri) -> None:
    store = MemStore(agents())
    store.agents["1001"]["state"] = store.agents["1002"]["state"] = "logged_out"
    store.calls["w1"] = {"id": "w1", "stage": "queue", "status": "active", "queue": "repair",
                         "channel_id": "waiting", "priority": 0, "caller_number": "1",
                         "queued_at": NOW - timedelta(minutes=2)}
    store.calls["gone"] = {"id": "gone", "stage": "ringing", "status": "active",
                           "queue": "repair", "channel_id": "left", "priority": 0}
    fake.channel("waiting", "PJSIP/x", app_data=f"{APP},inbound,w1,repair,0")
    env = await start_env(fake, store)
    try:
        await until(lambda: store.finished("gone"))
        assert env.acd.machine.calls["w1"].queued_at == NOW - timedelta(minutes=2)
        env.acd.request("1001", "login")
        await until(lambda: fake.originates(), what="the adopted caller is offered")
    finally:
        await env.stop()


async def test_malformed_websocket_messages_are_skipped(env: Env) -> None:
    env.fake.push_raw("not json")
    env.fake.push_raw('{"no": "type"}')
    await connect_call(env)


async def test_priority_when_one_agent_frees_up(env: Env) -> None:
    fake = env.fake
    agent_ch = await connect_call(env)
    env.acd.request("1002", "pause", "meeting")
    fake.add_caller("normal", "n1", timestamp="2025-01-01T12:00:01.000+0800")
    fake.add_caller("urgent", "u1", priority=10, timestamp="2025-01-01T12:00:02.000+0800")
    await until(lambda: env.acd.machine.calls.get("u1") is not None)
    fake.remove("caller-1")
    await until(lambda: len(fake.originates()) == 2)
    assert fake.originates()[1].body["variables"]["CC_CALL_ID"] == "u1"
    assert agent_ch not in fake.channels


async def test_snapshot_reports_connection_and_figures(env: Env) -> None:
    snap = env.acd.snapshot()
    assert snap["connected"] is True
    assert snap["queues"]["repair"]["agents_available"] == 2


async def test_live_figures_are_pushed_as_server_sent_events(env: Env) -> None:
    from aiohttp import web as aioweb
    from aiohttp.test_utils import TestClient, TestServer

    from callcenter.keys import LIVE
    from callcenter.web.api import api_live

    app = aioweb.Application()
    app[LIVE] = {"acd": env.acd}
    app.router.add_get("/api/live", api_live)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/api/live")
        assert resp.headers["Content-Type"] == "text/event-stream"

        async def next_snapshot() -> dict[str, Any]:
            while True:
                line = (await asyncio.wait_for(resp.content.readline(), 5)).decode()
                if line.startswith("data: "):
                    return dict(json.loads(line[len("data: "):]))

        first = await next_snapshot()
        assert first["queues"]["consultation"]["waiting"] == 0
        env.fake.add_caller("caller-1", "c1", queue="consultation")  # nobody serves it
        pushed = await next_snapshot()
        while pushed["queues"]["consultation"]["waiting"] != 1:
            pushed = await next_snapshot()
        assert pushed["calls"]["queued"] == 1
        resp.close()


async def test_an_offer_rings_the_browser_softphone_when_it_is_registered(
    fake: FakeAri
) -> None:
    sip_agents = [{**agents()[0], "endpoint": "PJSIP/w1"}]
    env = await start_env(fake, MemStore(sip_agents))
    try:
        fake.endpoint_states["PJSIP/w1-web"] = "online"
        fake.add_caller("caller-1", "c1")
        await until(lambda: fake.originates(), what="originate")
        assert fake.originates()[-1].params["endpoint"] == "PJSIP/w1-web"
        fake.remove("caller-1")
        await until(lambda: env.acd.machine.agents["1001"].state == "available",
                    what="the offer withdrawn")
        fake.endpoint_states["PJSIP/w1-web"] = "offline"  # the browser went away
        fake.add_caller("caller-2", "c2")
        await until(lambda: len(fake.originates()) == 2, what="second originate")
        assert fake.originates()[-1].params["endpoint"] == "PJSIP/w1"  # the desk phone
    finally:
        await env.stop()
