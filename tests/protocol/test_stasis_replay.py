"""Replay ARI event sequences against RoutingApp through a fake ARI server.

The fake is a real aiohttp server on 127.0.0.1 (REST + websocket): it records
every REST request, keeps a small channel/bridge/recording model so answers look
like Asterisk 22's, and lets a test push events in ARI's JSON shapes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import WSMsgType, web

from callcenter.ari.client import AriClient, AriError, AriNotFound, AriUnavailable
from callcenter.routing.policy import AgentInfo
from callcenter.routing.stasis import RoutingApp, recording_name
from callcenter.routing.store import MemoryRoutingStore

APP = "hotline"
USER, PASSWORD = "cc", "secret"


@dataclass
class Req:
    method: str
    path: str  # decoded, relative to /ari
    params: dict[str, str]
    body: Any
    raw: str = ""  # the path as sent, still percent-encoded


@dataclass
class FakeAri:
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, str]] = field(default_factory=dict)
    in_stasis: set[str] = field(default_factory=set)
    bridges: dict[str, dict[str, Any]] = field(default_factory=dict)
    live_recordings: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Req] = field(default_factory=list)
    # (method or "*", regex on the decoded path, status): answered before the model;
    # status 0 drops the connection without an answer (a transport error).
    fail_rules: list[tuple[str, str, int]] = field(default_factory=list)
    delay_s: float = 0.0  # every REST answer waits this long (client timeouts)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    connections: int = 0
    ws_auth: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._out: asyncio.Queue[str] = asyncio.Queue()
        self._runner: web.AppRunner | None = None
        self._sender: asyncio.Task[None] | None = None
        self.url = ""

    # ---- server ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ari/events", self._events)
        app.router.add_route("*", "/ari/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._sender = asyncio.create_task(self._send_loop())

    async def close(self) -> None:
        if self._sender:
            self._sender.cancel()
        for ws in list(self.sockets):
            await ws.close()
        if self._runner:
            await self._runner.cleanup()

    async def _events(self, request: web.Request) -> web.StreamResponse:
        self.ws_auth.append(dict(request.query))
        if request.query.get("api_key") != f"{USER}:{PASSWORD}":
            return web.Response(status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        self.connections += 1
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            if ws in self.sockets:
                self.sockets.remove(ws)
        return ws

    async def _send_loop(self) -> None:
        while True:
            data = await self._out.get()
            for ws in list(self.sockets):
                if not ws.closed:
                    await ws.send_str(data)

    def push_raw(self, data: str) -> None:
        self._out.put_nowait(data)

    def push(self, event_type: str, **fields: Any) -> None:
        event = {
            "type": event_type,
            "timestamp": "2025-01-01T12:00:00.000+0800",
            "asterisk_id": "00:11:22:33:44:55",
            "application": APP,
            **fields,
        }
        self.push_raw(json.dumps(event))

    async def drop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()

    # ---- REST model -----------------------------------------------------------------------

    def find(self, method: str, pattern: str) -> list[Req]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    async def _rest(self, request: web.Request) -> web.Response:
        raw = request.rel_url.raw_path[len("/ari") :]
        segments = [unquote(s) for s in raw.strip("/").split("/")]
        path = "/" + "/".join(segments)
        body = None
        if request.can_read_body:
            text = await request.text()
            body = json.loads(text) if text else None
        req = Req(request.method, path, dict(request.query), body, raw)
        self.requests.append(req)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        for method, pattern, status in self.fail_rules:
            if method in ("*", request.method) and re.search(pattern, path):
                if status == 0:
                    assert request.transport is not None
                    request.transport.abort()
                    raise ConnectionResetError("dropped by the fake")
                return web.json_response({"message": "Channel not found"}, status=status)
        if request.headers.get("Authorization") is None:
            return web.json_response({"message": "Authentication required"}, status=401)
        return self._model(req, segments)

    def _model(self, req: Req, seg: list[str]) -> web.Response:
        m, q = req.method, req.params
        no_content = web.Response(status=204)
        if seg == ["channels"] and m == "GET":
            return web.json_response(list(self.channels.values()))
        if seg == ["channels"] and m == "POST":
            return web.json_response(self._originate(q, req.body))
        if seg == ["bridges"] and m == "POST":
            bridge_id = f"bridge-{next(self._ids)}"
            self.bridges[bridge_id] = {
                "id": bridge_id,
                "technology": "simple_bridge",
                "bridge_type": q.get("type", "mixing"),
                "bridge_class": "stasis",
                "name": q.get("name", ""),
                "channels": [],
            }
            return web.json_response(self.bridges[bridge_id])
        if seg == ["bridges"] and m == "GET":
            return web.json_response(list(self.bridges.values()))
        if seg[0] == "bridges" and len(seg) >= 2:
            bridge = self.bridges.get(seg[1])
            if bridge is None:
                return web.json_response({"message": "Bridge not found"}, status=404)
            if len(seg) == 2 and m == "DELETE":
                del self.bridges[seg[1]]
                return no_content
            if seg[2:] == ["addChannel"]:
                bridge["channels"].extend(q["channel"].split(","))
                return no_content
        if seg[:2] == ["recordings", "live"] and seg[3:] == ["stop"]:
            rec = self.live_recordings.pop(seg[2], None)
            if rec is None:
                return web.json_response({"message": "Recording not found"}, status=404)
            self.push("RecordingFinished", recording={**rec, "state": "done", "duration": 3})
            return no_content
        if seg[0] == "channels" and len(seg) >= 2:
            channel_id = seg[1]
            channel = self.channels.get(channel_id)
            if channel is None:
                return web.json_response({"message": "Channel not found"}, status=404)
            op = seg[2:]
            if not op and m == "DELETE":
                self.remove(channel_id, cause=16, hangup_request=False)
                return no_content
            if not op and m == "GET":
                return web.json_response(channel)
            if op == ["variable"] and m == "GET":
                value = self.variables.get(channel_id, {}).get(q["variable"])
                if value is None:
                    return web.json_response(
                        {"message": "Provided variable was not found"}, status=404
                    )
                return web.json_response({"value": value})
            if op == ["variable"] and m == "POST":
                self.variables.setdefault(channel_id, {})[q["variable"]] = q.get("value", "")
                return no_content
            if op and op[0] == "snoop":
                snoop_id = op[1] if len(op) > 1 else f"snoop-{next(self._ids)}"
                snoop = self.channel(snoop_id, f"Snoop/{channel_id}-{snoop_id[-6:]}", app_data="")
                self.enter_stasis(snoop_id, q.get("appArgs", "").split(","))
                return web.json_response(snoop)
            if op == ["record"]:
                rec = {
                    "name": q["name"],
                    "format": q.get("format", "wav"),
                    "state": "queued",
                    "target_uri": f"channel:{channel_id}",
                    "terminate_on": q.get("terminateOn", "none"),
                }
                self.live_recordings[q["name"]] = rec
                self.push("RecordingStarted", recording={**rec, "state": "recording"})
                return web.json_response(rec, status=201)
            if op in (["moh"], ["ring"], ["answer"]):
                return no_content
        return web.json_response({"message": "not modelled"}, status=501)

    def _originate(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        channel_id = q.get("channelId") or f"orig-{next(self._ids)}"
        endpoint = q["endpoint"]
        channel = self.channel(channel_id, f"{endpoint}-{next(self._ids):08x};1", state="Down")
        channel["dialplan"] = {
            "context": "sim-agents",
            "exten": "s",
            "priority": 1,
            "app_name": "",
            "app_data": "",
        }
        channel["originate"] = dict(q)
        self.variables[channel_id] = dict((body or {}).get("variables") or {})
        return channel

    # ---- channel helpers for tests --------------------------------------------------------

    def channel(
        self,
        channel_id: str,
        name: str,
        *,
        state: str = "Up",
        number: str = "13800138000",
        app_data: str = f"{APP},inbound",
    ) -> dict[str, Any]:
        channel = {
            "id": channel_id,
            "name": name,
            "state": state,
            "protocol_id": "",
            "caller": {"name": "", "number": number},
            "connected": {"name": "", "number": ""},
            "accountcode": "",
            "dialplan": {
                "context": "hotline",
                "exten": "s",
                "priority": 9,
                "app_name": "Stasis" if app_data else "",
                "app_data": app_data,
            },
            "creationtime": "2025-01-01T12:00:00.000+0800",
            "language": "zh",
        }
        self.channels[channel_id] = channel
        return channel

    def enter_stasis(self, channel_id: str, args: list[str]) -> None:
        channel = self.channels[channel_id]
        channel["dialplan"]["app_name"] = "Stasis"
        channel["dialplan"]["app_data"] = ",".join([APP, *args])
        self.in_stasis.add(channel_id)
        self.push("StasisStart", args=args, channel=channel)

    def add_caller(
        self,
        channel_id: str,
        call_id: str | None,
        *,
        queue: str = "repair",
        priority: int | None = None,
        kind: str = "inbound",
    ) -> dict[str, Any]:
        channel = self.channel(channel_id, f"PJSIP/caller-{channel_id}", app_data=f"{APP},{kind}")
        variables = {"CC_QUEUE": queue, "CC_IVR_DIGITS": "1"}
        if call_id:
            variables["CC_CALL_ID"] = call_id
        if priority is not None:
            variables["CC_PRIORITY"] = str(priority)
        self.variables[channel_id] = variables
        self.enter_stasis(channel_id, [kind])
        return channel

    def answer(self, channel_id: str) -> None:
        """The originated agent answers: it enters Stasis with its appArgs, Up."""
        channel = self.channels[channel_id]
        channel["state"] = "Up"
        self.push("ChannelStateChange", channel=channel)
        self.enter_stasis(channel_id, channel["originate"]["appArgs"].split(","))

    def remove(self, channel_id: str, *, cause: int = 16, hangup_request: bool = True) -> None:
        """The channel hangs up (far end, or after DELETE): ARI's event sequence."""
        channel = self.channels.pop(channel_id, None)
        if channel is None:
            return
        if hangup_request:
            self.push("ChannelHangupRequest", cause=cause, channel=channel)
        if channel_id in self.in_stasis:
            self.in_stasis.discard(channel_id)
            self.push("StasisEnd", channel=channel)
        self.push(
            "ChannelDestroyed",
            cause=cause,
            cause_txt={16: "Normal Clearing", 19: "No user responding"}.get(cause, ""),
            channel={**channel, "state": "Down"},
        )

    def vanish(self, channel_id: str) -> None:
        """The channel is gone without any event reaching us (websocket down)."""
        self.channels.pop(channel_id, None)
        self.in_stasis.discard(channel_id)

    def originates(self) -> list[Req]:
        return self.find("POST", r"^/channels$")

    def agent_channel(self, n: int = -1) -> str:
        return self.originates()[n].params["channelId"]


async def until(cond: Callable[[], Any], within: float = 3.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.01)


def make_agents() -> list[AgentInfo]:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    return [
        AgentInfo(
            "1001",
            "Wang",
            "Local/1001@sim-agents",
            ("repair", "complaint"),
            "available",
            now - timedelta(seconds=300),
        ),
        AgentInfo(
            "1002",
            "Li",
            "Local/1002@sim-agents",
            ("repair",),
            "available",
            now - timedelta(seconds=100),
        ),
        AgentInfo(
            "1003",
            "Zhao",
            "Local/1003@sim-agents",
            ("consultation",),
            "available",
            now - timedelta(seconds=900),
        ),
    ]


@dataclass
class Env:
    fake: FakeAri
    store: MemoryRoutingStore
    client: AriClient
    app: RoutingApp
    task: asyncio.Task[None]

    async def stop(self) -> None:
        await self.app.stop()
        await asyncio.wait_for(self.task, 3)
        await self.client.close()


async def start_env(fake: FakeAri, store: MemoryRoutingStore | None = None, **kw: Any) -> Env:
    store = store or MemoryRoutingStore(make_agents())
    client = AriClient(fake.url, USER, PASSWORD, APP, reconnect_min_s=0.05, reconnect_max_s=0.2)
    options: dict[str, Any] = {
        "ring_timeout_s": 5.0,
        "wrap_up_s": 0.0,
        "redispatch_interval_s": 3600.0,
        "recording_settle_s": 0.3,
        "bridged_flag_timeout_s": 1.0,
        **kw,
    }
    app = RoutingApp(client, store, **options)
    task = asyncio.create_task(app.run())
    env = Env(fake, store, client, app, task)
    await until(lambda: app.reconciles >= 1, what="first reconcile")
    return env


@pytest.fixture
async def fake():
    server = FakeAri()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def env(fake):
    environment = await start_env(fake)
    yield environment
    await environment.stop()


CID = "a" * 32
CID2 = "b" * 32


def bridged(fake: FakeAri, channel_id: str) -> bool:
    return fake.variables.get(channel_id, {}).get("CC_BRIDGED") == "1"


async def connect_call(env: Env, caller: str = "caller-1", call_id: str = CID) -> str:
    """Caller enters, the first agent answers, the conversation is set up."""
    fake = env.fake
    fake.add_caller(caller, call_id)
    await until(lambda: fake.originates(), what="originate")
    agent_ch = fake.agent_channel()
    fake.answer(agent_ch)
    await until(lambda: bridged(fake, caller) and bridged(fake, agent_ch), what="CC_BRIDGED")
    return agent_ch


# ---- tests ----------------------------------------------------------------------------------


async def test_websocket_url_and_auth(env: Env):
    query = env.fake.ws_auth[0]
    assert query == {"app": APP, "api_key": f"{USER}:{PASSWORD}", "subscribeAll": "false"}


async def test_happy_path(env: Env):
    fake, store = env.fake, env.store
    env.app.recording_settle_s = 30.0  # finish must come from RecordingFinished events
    fake.add_caller("caller-1", CID, priority=2)
    await until(lambda: fake.originates(), what="originate")
    orig = fake.originates()[0]
    assert orig.params["endpoint"] == "Local/1001@sim-agents"  # longest idle repair agent
    assert orig.params["app"] == APP
    assert orig.params["appArgs"] == f"agent,{CID}"
    assert orig.params["timeout"] == "5"
    assert orig.params["callerId"] == '"repair" <13800138000>'
    assert orig.body == {
        "variables": {"CC_CALL_ID": CID, "CC_CALLER_CHANNEL": "PJSIP/caller-caller-1"}
    }
    assert fake.find("POST", r"^/channels/caller-1/moh$")
    call = store.calls[CID]
    assert (call.stage, call.queue, call.priority, call.channel_id) == (
        "ringing",
        "repair",
        2,
        "caller-1",
    )
    assert store.agent("1001").state == "ringing"
    assert env.app.snapshot()["calls"]["ringing"] == 1

    agent_ch = fake.agent_channel()
    fake.answer(agent_ch)
    await until(lambda: bridged(fake, "caller-1") and bridged(fake, agent_ch), what="bridged")

    (bridge_req,) = fake.find("POST", r"^/bridges$")
    assert bridge_req.params["type"] == "mixing"
    (add_req,) = fake.find("POST", r"^/bridges/[^/]+/addChannel$")
    assert add_req.params["channel"] == f"caller-1,{agent_ch}"
    snoops = fake.find("POST", r"/snoop")
    assert {r.path.split("/")[2] for r in snoops} == {"caller-1", agent_ch}
    for r in snoops:
        assert r.params["spy"] == "in" and r.params["app"] == APP
        assert r.params["appArgs"] in (f"snoop,{CID},caller", f"snoop,{CID},agent")
    records = fake.find("POST", r"/record$")
    assert sorted(r.params["name"] for r in records) == [f"{CID}/agent", f"{CID}/caller"]
    for r in records:
        assert r.params["format"] == "wav"
        assert r.params["ifExists"] == "overwrite"
        assert r.params["terminateOn"] == "none"
        assert r.path.split("/")[2] in {f"{CID}-snoop-caller", f"{CID}-snoop-agent"}
    # CC_BRIDGED is set once both recordings run (the parties speak only then).
    idx = fake.requests.index
    last_record = max(idx(r) for r in records)
    flags = fake.find("POST", r"/variable$")
    assert all(idx(r) > last_record for r in flags if r.params["variable"] == "CC_BRIDGED")

    call = store.calls[CID]
    assert call.stage == "conversation" and call.agent_id == "1001"
    assert call.answered_at is not None
    assert call.legs["caller"]["recording_name"] == f"{CID}/caller.wav"
    assert call.legs["agent"]["recording_name"] == f"{CID}/agent.wav"
    assert call.legs["agent"]["channel_id"] == agent_ch
    assert store.agent("1001").state == "busy"
    assert env.app.snapshot()["calls"]["conversation"] == 1

    fake.remove("caller-1")  # the caller hangs up first
    await until(lambda: store.finished, what="finish_call")
    assert store.finished == [(CID, "conversation", "caller")]
    assert fake.find("DELETE", rf"^/channels/{agent_ch}$")
    assert agent_ch not in fake.channels
    assert not fake.find("DELETE", r"^/channels/caller-1$")
    assert len(fake.find("POST", r"^/recordings/live/.+/stop$")) == 2
    assert not fake.bridges and not fake.live_recordings
    assert not [c for c in fake.channels if c.startswith(CID)]  # snoops hung up
    states = [v for k, v in store.log if k == "set_agent_state" and v[0] == "1001"]
    assert states[-2:] == [("1001", "wrap_up"), ("1001", "available")]
    await asyncio.sleep(0.1)
    assert [k for k, _ in store.log].count("finish_call") == 1


async def test_agent_in_stasis_before_up_waits_for_state_change(env: Env):
    fake = env.fake
    fake.add_caller("caller-1", CID)
    await until(lambda: fake.originates(), what="originate")
    agent_ch = fake.agent_channel()
    fake.channels[agent_ch]["state"] = "Ringing"
    fake.enter_stasis(agent_ch, ["agent", CID])
    await asyncio.sleep(0.1)
    assert not fake.find("POST", r"^/bridges$")
    fake.channels[agent_ch]["state"] = "Up"
    fake.push("ChannelStateChange", channel=fake.channels[agent_ch])
    await until(lambda: bridged(fake, agent_ch), what="bridged after Up")


async def test_agent_hangs_up_first(env: Env):
    agent_ch = await connect_call(env)
    env.fake.remove(agent_ch)
    await until(lambda: env.store.finished, what="finish_call")
    assert env.store.finished == [(CID, "conversation", "agent")]
    assert env.fake.find("DELETE", r"^/channels/caller-1$")
    assert env.store.calls[CID].hangup_by == "agent"


async def test_agent_no_answer_then_next_agent(env: Env):
    fake, store = env.fake, env.store
    fake.add_caller("caller-1", CID)
    await until(lambda: fake.originates(), what="originate")
    first = fake.agent_channel()
    assert fake.originates()[0].params["endpoint"] == "Local/1001@sim-agents"
    fake.remove(first, cause=19, hangup_request=False)  # ring timeout in Asterisk
    await until(lambda: len(fake.originates()) == 2, what="second originate")
    assert fake.originates()[1].params["endpoint"] == "Local/1002@sim-agents"
    assert store.no_answer == {"1001": 1}
    assert store.agent("1001").state == "available"
    assert store.agent("1002").state == "ringing"
    assert store.calls[CID].agent_id == "1002"
    second = fake.agent_channel()
    fake.answer(second)
    await until(lambda: bridged(fake, second), what="bridged")
    assert store.calls[CID].agent_id == "1002"


async def test_originate_failure_then_next_agent(env: Env):
    fake = env.fake
    fake.fail_rules.append(("POST", r"^/channels$", 500))
    fake.add_caller("caller-1", CID)
    await until(lambda: len(fake.originates()) == 2, what="both agents tried")
    assert env.store.no_answer == {"1001": 1, "1002": 1}
    assert env.store.calls[CID].stage == "queue"
    fake.fail_rules.clear()
    env.app.agents_changed()  # e.g. an agent logs in: dispatch again
    await asyncio.sleep(0.1)
    assert len(fake.originates()) == 2  # tried agents wait for the periodic retry
    await env.app._handle({"type": "CcDispatch", "retry_tried": True})
    await until(lambda: len(fake.originates()) == 3, what="retry")


async def test_ring_timeout_hangs_up_and_moves_on(fake: FakeAri):
    env = await start_env(fake, ring_timeout_s=0.2, ring_grace_s=0.1)
    try:
        fake.add_caller("caller-1", CID)
        await until(lambda: len(fake.originates()) == 2, what="second originate")
        first = fake.originates()[0].params["channelId"]
        assert fake.find("DELETE", rf"^/channels/{first}$")
        assert env.store.no_answer["1001"] == 1
    finally:
        await env.stop()


async def test_abandon_in_queue(env: Env):
    fake, store = env.fake, env.store
    for agent_id in ("1001", "1002", "1003"):
        await store.set_agent_state(agent_id, "busy")
    fake.add_caller("caller-1", CID)
    await until(lambda: fake.find("POST", r"^/channels/caller-1/moh$"), what="moh")
    snap = env.app.snapshot()
    assert snap["queues"]["repair"]["waiting"] == 1
    assert snap["queues"]["repair"]["agents_available"] == 0
    assert snap["queues"]["repair"]["agents_busy"] == 2
    assert snap["calls"]["queued"] == 1
    assert store.calls[CID].stage == "queue"
    fake.remove("caller-1")
    await until(lambda: store.finished, what="finish_call")
    assert store.finished == [(CID, "queue", "caller")]
    assert not fake.originates()
    assert env.app.snapshot()["queues"]["repair"]["waiting"] == 0


async def test_moh_failure_falls_back_to_ringing(env: Env):
    fake = env.fake
    fake.fail_rules.append(("POST", r"/moh$", 409))
    for agent_id in ("1001", "1002", "1003"):
        await env.store.set_agent_state(agent_id, "busy")
    fake.add_caller("caller-1", CID)
    await until(lambda: fake.find("POST", r"^/channels/caller-1/ring$"), what="ring")


async def test_caller_hangs_up_while_agent_rings(env: Env):
    fake, store = env.fake, env.store
    fake.add_caller("caller-1", CID)
    await until(lambda: fake.originates(), what="originate")
    agent_ch = fake.agent_channel()
    fake.remove("caller-1")
    await until(lambda: store.finished, what="finish_call")
    assert store.finished == [(CID, "ringing", "caller")]
    assert fake.find("DELETE", rf"^/channels/{agent_ch}$")
    assert agent_ch not in fake.channels
    assert store.agent("1001").state == "available"
    assert store.no_answer == {}
    # Late answer of an agent channel for a call that is gone: hung up, no orphan.
    fake.channel("late-agent", "Local/1002@sim-agents-0001;1")
    fake.enter_stasis("late-agent", ["agent", CID])
    await until(lambda: fake.find("DELETE", r"^/channels/late-agent$"), what="orphan hangup")
    assert len(store.finished) == 1


async def test_404_on_every_channel_operation(env: Env, caplog: pytest.LogCaptureFixture):
    fake, store = env.fake, env.store
    caplog.set_level(logging.DEBUG, logger="callcenter")
    fake.fail_rules.append(("*", r"^/channels/[^/]+(/.*)?$", 404))
    fake.add_caller("caller-1", None, kind="fallback")  # variables unreadable: new call id
    await until(lambda: fake.originates(), what="originate")
    (call_id,) = store.calls
    assert store.calls[call_id].stage == "ringing"
    agent_ch = fake.agent_channel()
    fake.answer(agent_ch)
    await until(
        lambda: (
            env.app.call_state(call_id) == "conversation"
            and fake.find("POST", rf"^/channels/{agent_ch}/variable$")
        ),
        what="conversation",
    )
    fake.remove("caller-1")
    await until(lambda: store.finished, what="finish_call")
    assert store.finished == [(call_id, "conversation", "caller")]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_404_everywhere_including_originate(env: Env, caplog: pytest.LogCaptureFixture):
    fake, store = env.fake, env.store
    fake.fail_rules.append(("*", r"^/channels", 404))
    fake.add_caller("caller-1", CID)
    # CC_QUEUE is unreadable too: the general queue, so every agent is tried.
    await until(lambda: len(fake.originates()) == 3, what="all agents tried")
    (call_id,) = store.calls
    assert store.calls[call_id].stage == "queue"
    assert store.calls[call_id].queue == "general"
    fake.remove("caller-1")
    await until(lambda: store.finished, what="finish_call")
    assert store.finished == [(call_id, "queue", "caller")]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_reconnect_reconciles_vanished_call(env: Env):
    fake, store = env.fake, env.store
    agent_ch = await connect_call(env)
    await fake.drop()
    fake.vanish("caller-1")
    fake.vanish(agent_ch)
    await until(lambda: fake.connections >= 2 and env.app.reconciles >= 2, what="reconnect")
    await until(lambda: store.finished, what="finish_call")
    assert store.finished == [(CID, "conversation", None)]
    assert store.agent("1001").state == "available"
    # And the app keeps working on the new connection.
    fake.add_caller("caller-2", CID2)
    await until(lambda: len(fake.originates()) == 2, what="new call routed")


async def test_restart_adopts_waiting_caller_and_finishes_gone_call(fake: FakeAri):
    from datetime import UTC, datetime

    store = MemoryRoutingStore(make_agents())
    # Left over by a previous run: one caller still waiting, one call whose channel is gone.
    await store.update_call(
        CID,
        stage="queue",
        queue="repair",
        priority=1,
        channel_id="c-live",
        queued_at=datetime.now(UTC),
    )
    await store.update_call(
        CID2, stage="ringing", queue="repair", channel_id="c-gone", agent_id="1002"
    )
    await store.set_agent_state("1002", "ringing")
    fake.channel("c-live", "PJSIP/caller-live", app_data=f"{APP},inbound")
    fake.variables["c-live"] = {"CC_CALL_ID": CID, "CC_QUEUE": "repair"}
    fake.channel("orphan-snoop", "Snoop/x-1", app_data=f"{APP},snoop,{'c' * 32},agent")
    env = await start_env(fake, store)
    try:
        await until(lambda: fake.originates(), what="re-queued caller routed")
        assert fake.originates()[0].params["appArgs"] == f"agent,{CID}"
        assert (CID2, "ringing", None) in store.finished
        assert fake.find("DELETE", r"^/channels/orphan-snoop$")
        assert len(store.finished) == 1
    finally:
        await env.stop()


async def test_malformed_websocket_messages_are_skipped(env: Env):
    fake = env.fake
    fake.push_raw("this is not json {")
    fake.push_raw('["a", "list"]')
    fake.push_raw('{"no_type": true}')
    fake.push("SomethingNew", foo=1)
    fake.push("ChannelVarset", variable="CC_X", value="1", channel=fake.channel("x", "PJSIP/x"))
    fake.add_caller("caller-1", CID)
    await until(lambda: fake.originates(), what="originate after garbage")
    assert fake.connections == 1


async def test_priority_when_one_agent_frees_up(env: Env):
    fake, store = env.fake, env.store
    for agent_id in ("1001", "1002", "1003"):
        await store.set_agent_state(agent_id, "busy")
    fake.add_caller("caller-1", CID, priority=0)  # waits longer
    await until(lambda: CID in store.calls and store.calls[CID].stage == "queue")
    await asyncio.sleep(0.05)
    fake.add_caller("caller-2", CID2, priority=5)  # VIP / P1
    await until(lambda: CID2 in store.calls and store.calls[CID2].stage == "queue")
    assert env.app.snapshot()["queues"]["repair"]["waiting"] == 2
    await store.set_agent_state("1002", "available")
    env.app.agents_changed()
    await until(lambda: fake.originates(), what="originate")
    await asyncio.sleep(0.1)
    assert [r.params["appArgs"] for r in fake.originates()] == [f"agent,{CID2}"]
    # The agent finishes that call; after wrap-up the waiting caller is next.
    agent_ch = fake.agent_channel()
    fake.answer(agent_ch)
    await until(lambda: bridged(fake, agent_ch), what="bridged")
    fake.remove("caller-2")
    await until(lambda: len(fake.originates()) == 2, what="next call offered")
    assert fake.originates()[1].params["appArgs"] == f"agent,{CID}"


async def test_wrap_up_delay(fake: FakeAri):
    env = await start_env(fake, wrap_up_s=0.3)
    try:
        agent_ch = await connect_call(env)
        fake.remove(agent_ch)
        await until(lambda: env.store.finished, what="finish_call")
        assert env.store.agent("1001").state == "wrap_up"
        await until(lambda: env.store.agent("1001").state == "available", what="wrap-up end")
    finally:
        await env.stop()


async def test_recording_name_is_one_function():
    assert recording_name(CID, "caller") == f"{CID}/caller"


async def test_client_errors_are_typed(fake: FakeAri):
    client = AriClient(fake.url + "/ari", USER, PASSWORD, APP)
    try:
        with pytest.raises(AriNotFound) as not_found:
            await client.get("/channels/nope")
        assert not_found.value.status == 404
        assert not_found.value.method == "GET"
        assert not_found.value.path == "/channels/nope"
        fake.fail_rules.append(("POST", r"^/bridges$", 500))
        with pytest.raises(AriError) as err:
            await client.create_bridge()
        assert err.value.status == 500 and not isinstance(err.value, AriNotFound)
        assert await client.hangup("nope") is False
        assert await client.stop_recording("x/y") is False
        assert fake.requests[-1].path == "/recordings/live/x/y/stop"
        assert fake.requests[-1].raw == "/recordings/live/x%2Fy/stop"
        assert await client.get_var("nope", "CC_CALL_ID") is None
        assert await client.list_channels() == []
    finally:
        await client.close()


# ---- failures the service must survive (review findings) ------------------------------------


class FlakyStore(MemoryRoutingStore):
    """A MemoryRoutingStore whose chosen writes fail for a while (a database outage).

    ``fail(method, times, when)`` makes the next ``times`` calls of ``method`` whose
    keyword arguments satisfy ``when`` raise ConnectionError before doing anything.
    """

    def __init__(self, agents: list[AgentInfo] | None = None) -> None:
        super().__init__(agents)
        self.failures: list[list[Any]] = []  # [method, times left, predicate]
        self.failed: list[str] = []

    def fail(
        self, method: str, times: int = 1, when: Callable[[dict[str, Any]], bool] | None = None
    ) -> None:
        self.failures.append([method, times, when or (lambda _kw: True)])

    def _maybe_fail(self, method: str, kwargs: dict[str, Any]) -> None:
        for rule in self.failures:
            if rule[0] == method and rule[1] > 0 and rule[2](kwargs):
                rule[1] -= 1
                self.failed.append(method)
                raise ConnectionError(f"database down ({method})")

    async def open_call(self, call_id: str, *, caller_number: str, channel_id: str) -> None:
        self._maybe_fail("open_call", {"channel_id": channel_id})
        await super().open_call(call_id, caller_number=caller_number, channel_id=channel_id)

    async def update_call(self, call_id: str, **fields: Any) -> None:
        self._maybe_fail("update_call", fields)
        await super().update_call(call_id, **fields)

    async def finish_call(self, call_id: str, *, stage: str, hangup_by: str | None) -> bool:
        self._maybe_fail("finish_call", {"stage": stage})
        return await super().finish_call(call_id, stage=stage, hangup_by=hangup_by)

    async def set_agent_state(self, agent_id: str, state: str) -> None:
        self._maybe_fail("set_agent_state", {"agent_id": agent_id, "state": state})
        await super().set_agent_state(agent_id, state)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_transport_errors_are_ari_unavailable(fake: FakeAri):
    refused = AriClient(f"http://127.0.0.1:{free_port()}", USER, PASSWORD, APP)
    slow = AriClient(fake.url, USER, PASSWORD, APP, request_timeout_s=0.1)
    dropped = AriClient(fake.url, USER, PASSWORD, APP)
    try:
        with pytest.raises(AriUnavailable) as err:
            await refused.list_channels()
        assert err.value.status == 0 and isinstance(err.value, AriError)
        with pytest.raises(AriUnavailable):
            await refused.hangup("gone")  # not swallowed like a 404
        fake.delay_s = 0.5
        with pytest.raises(AriUnavailable):
            await slow.get("/channels")
        fake.delay_s = 0.0
        fake.fail_rules.append(("DELETE", r"^/channels/x$", 0))
        with pytest.raises(AriUnavailable):
            await dropped.hangup("x")
    finally:
        for client in (refused, slow, dropped):
            await client.close()


async def test_cleanup_survives_transport_errors(env: Env):
    fake, store = env.fake, env.store
    agent_ch = await connect_call(env)
    # Stopping the recordings and hanging up the snoops: no answer at all.
    fake.fail_rules.append(("POST", r"^/recordings/live/.+/stop$", 0))
    fake.fail_rules.append(("DELETE", r"^/channels/.+-snoop-", 0))
    fake.remove("caller-1")
    await until(lambda: store.finished, what="finish_call despite transport errors")
    assert store.finished == [(CID, "conversation", "caller")]
    assert fake.find("DELETE", rf"^/channels/{agent_ch}$")  # later steps still ran
    assert not fake.bridges
    assert env.app.call_state(CID) is None


async def test_finish_call_failure_is_retried(fake: FakeAri):
    store = FlakyStore(make_agents())
    store.fail("finish_call", times=2)
    env = await start_env(fake, store, retry_s=0.05)
    try:
        for agent_id in ("1001", "1002", "1003"):
            await store.set_agent_state(agent_id, "busy")
        fake.add_caller("caller-1", CID)
        await until(lambda: CID in store.calls and store.calls[CID].stage == "queue")
        fake.remove("caller-1")
        await until(lambda: store.finished, what="finish_call retried")
        assert store.failed == ["finish_call", "finish_call"]
        assert store.finished == [(CID, "queue", "caller")]
        assert env.app.call_state(CID) is None
    finally:
        await env.stop()


async def test_reconcile_redrives_call_stuck_ending(env: Env):
    fake, store, app = env.fake, env.store, env.app
    app.recording_settle_s = 30.0
    await connect_call(env)
    fake.fail_rules.append(("POST", r"^/recordings/live/.+/stop$", 500))  # no RecordingFinished
    fake.remove("caller-1")
    await until(lambda: app.call_state(CID) == "ending", what="ending")
    await app.stop()  # a restart of the app: its timers are gone
    await asyncio.wait_for(env.task, 3)
    env.task = asyncio.create_task(app.run())
    await until(lambda: app.reconciles >= 2, what="reconcile after restart")
    await until(lambda: store.finished, what="finish_call")
    assert store.finished == [(CID, "conversation", "caller")]
    assert app.call_state(CID) is None


async def test_offer_store_failure_keeps_call_queued(fake: FakeAri):
    store = FlakyStore(make_agents())
    store.fail("update_call", when=lambda kw: kw.get("stage") == "ringing")
    env = await start_env(fake, store, redispatch_interval_s=0.1)
    try:
        fake.add_caller("caller-1", CID)
        await until(lambda: store.failed, what="the failed write")
        assert not fake.originates()
        assert store.agent("1001").state == "available"
        await until(lambda: fake.originates(), what="offered again by the re-dispatch")
        assert store.calls[CID].stage == "ringing"
        assert env.app.call_state(CID) == "ringing"
    finally:
        await env.stop()


async def test_caller_entry_survives_store_failure(fake: FakeAri):
    store = FlakyStore(make_agents())
    store.fail("open_call")
    store.fail("update_call", when=lambda kw: kw.get("stage") == "queue")
    env = await start_env(fake, store, retry_s=0.05)
    try:
        fake.add_caller("caller-1", CID, priority=2)
        await until(lambda: fake.originates(), what="caller routed despite the store")
        assert fake.find("POST", r"^/channels/caller-1/moh$")
        await until(lambda: ("open_call", CID) in store.log, what="call written later")
        call = store.calls[CID]
        assert (call.channel_id, call.queue, call.priority) == ("caller-1", "repair", 2)
        assert call.queued_at is not None and call.stage == "ringing"
        assert sorted(store.failed) == ["open_call", "update_call"]
    finally:
        await env.stop()


async def test_reconcile_retried_when_listing_channels_fails(fake: FakeAri):
    store = MemoryRoutingStore(make_agents())
    await store.update_call(CID2, stage="queue", queue="repair", channel_id="c-gone")
    fake.fail_rules.append(("GET", r"^/channels$", 500))

    async def heal() -> None:
        await until(lambda: fake.find("GET", r"^/channels$"), what="first listing")
        fake.fail_rules.clear()

    healer = asyncio.create_task(heal())
    env = await start_env(fake, store, retry_s=0.05)
    try:
        await healer
        assert len(fake.find("GET", r"^/channels$")) >= 2
        assert store.finished == [(CID2, "queue", None)]
    finally:
        await env.stop()


async def test_reconcile_finishes_ivr_calls_whose_channel_is_gone(fake: FakeAri):
    store = MemoryRoutingStore(make_agents())
    await store.open_call(CID, caller_number="1380", channel_id="ivr-gone")  # greeting
    await store.open_call(CID2, caller_number="1390", channel_id="ivr-live")
    await store.update_call(CID2, stage="menu")
    fake.channel("ivr-live", "PJSIP/caller-ivr", app_data="")  # still in the AGI
    env = await start_env(fake, store)
    try:
        assert store.finished == [(CID, "greeting", None)]
        assert not store.calls[CID2].finished
        assert not fake.find("DELETE", r"^/channels/ivr-live$")
        assert [r["id"] for r in await store.active_calls()] == [CID2]
    finally:
        await env.stop()


async def test_reconcile_frees_agents_stuck_after_restart(fake: FakeAri):
    from datetime import UTC, datetime, timedelta

    agents = make_agents()
    now = datetime.now(UTC)
    agents[0].state, agents[0].idle_since = "wrap_up", now - timedelta(seconds=60)
    agents[1].state, agents[1].idle_since = "busy", now - timedelta(seconds=60)
    agents[2].state, agents[2].idle_since = "wrap_up", now  # wrap-up still running
    store = MemoryRoutingStore(agents)
    env = await start_env(fake, store, wrap_up_s=0.5)
    try:
        assert store.agent("1001").state == "available"
        assert store.agent("1002").state == "available"
        assert store.agent("1003").state == "wrap_up"
        await until(lambda: store.agent("1003").state == "available", what="wrap-up ends")
    finally:
        await env.stop()


async def test_reconnect_while_ringing_connects_answered_agent(env: Env):
    fake, store, app = env.fake, env.store, env.app
    fake.add_caller("caller-1", CID)
    await until(lambda: fake.originates(), what="originate")
    agent_ch = fake.agent_channel()
    # The agent answers while the websocket is down: no event reaches us.
    channel = fake.channels[agent_ch]
    channel["state"] = "Up"
    channel["dialplan"].update(app_name="Stasis", app_data=f"{APP},agent,{CID}")
    fake.in_stasis.add(agent_ch)
    await fake.drop()
    await until(lambda: app.reconciles >= 2, what="reconcile")
    await until(lambda: bridged(fake, agent_ch) and bridged(fake, "caller-1"), what="bridged")
    assert app.call_state(CID) == "conversation"
    assert store.calls[CID].stage == "conversation"
    assert store.agent("1001").state == "busy"  # its call is ours: not freed
    assert not fake.find("DELETE", rf"^/channels/{agent_ch}$")


async def test_snapshot_reports_websocket_connection(fake: FakeAri):
    env = await start_env(fake)
    assert env.app.snapshot()["connected"] is True
    await env.stop()
    assert env.app.snapshot()["connected"] is False
