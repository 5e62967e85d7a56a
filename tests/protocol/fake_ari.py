"""A fake Asterisk ARI for protocol tests: a real aiohttp server on 127.0.0.1
(REST + websocket) that records every REST request, keeps a small model of
channels and bridges so answers look like Asterisk 22's, and lets a test push
events in ARI's JSON shapes.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import WSMsgType, web

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
    requests: list[Req] = field(default_factory=list)
    # (method or "*", regex on the decoded path, status): answered before the model;
    # status 0 drops the connection without an answer (a transport error).
    fail_rules: list[tuple[str, str, int]] = field(default_factory=list)
    delay_s: float = 0.0  # every REST answer waits this long (client timeouts)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    connections: int = 0
    ws_auth: list[dict[str, str]] = field(default_factory=list)  # each upgrade's query
    ws_authorization: list[str | None] = field(default_factory=list)  # and its header
    ws_refuse: bool = False  # answer every upgrade 401, whatever the credentials
    subscribed: set[str] = field(default_factory=set)
    playbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoint_states: dict[str, str] = field(default_factory=dict)  # "PJSIP/x-web" -> online
    # (regex on the decoded path, seconds): requests matching it answer this late
    slow_rules: list[tuple[str, float]] = field(default_factory=list)

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
        header = request.headers.get("Authorization")
        self.ws_authorization.append(header)
        # Asterisk takes HTTP Basic (or an api_key query, which our client never sends).
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.ws_refuse or header != basic:
            return web.Response(status=401, text="Authentication required")
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
            "timestamp": fields.pop("timestamp", "2025-01-01T12:00:00.000+0800"),
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
        for pattern, seconds in self.slow_rules:
            if re.search(pattern, path):
                await asyncio.sleep(seconds)
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
        if seg[0] == "endpoints" and len(seg) == 3 and m == "GET":
            state = self.endpoint_states.get(f"{seg[1]}/{seg[2]}")
            if state is None:
                return web.json_response({"message": "Endpoint not found"}, status=404)
            return web.json_response({"technology": seg[1], "resource": seg[2],
                                      "state": state, "channel_ids": []})
        if seg[0] == "applications" and seg[2:] == ["subscription"] and m == "POST":
            source = q.get("eventSource", "")
            channel_id = source.partition(":")[2]
            if channel_id not in self.channels:
                return web.json_response({"message": "Event source not found"}, status=404)
            self.subscribed.add(channel_id)
            return web.json_response({"name": seg[1]})
        if seg[0] == "playbacks" and len(seg) == 2 and m == "DELETE":
            if self.playbacks.pop(seg[1], None) is None:
                return web.json_response({"message": "Playback not found"}, status=404)
            return no_content
        if seg[0] == "bridges" and m == "POST" and (len(seg) == 1 or (
                len(seg) == 2 and seg[1] not in self.bridges)):
            bridge_id = seg[1] if len(seg) == 2 else f"bridge-{next(self._ids)}"
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
            if op and op[0] == "play" and m == "POST":
                playback_id = op[1] if len(op) > 1 else f"pb-{next(self._ids)}"
                self.playbacks[playback_id] = {"id": playback_id, "media_uri": q.get("media"),
                                               "target_uri": f"channel:{channel_id}"}
                return web.json_response(self.playbacks[playback_id], status=201)
            if op in (["moh"], ["ring"], ["answer"]):
                return no_content
        return web.json_response({"message": "not modelled"}, status=501)

    def _originate(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        channel_id = q.get("channelId") or f"orig-{next(self._ids)}"
        endpoint = q["endpoint"]
        channel = self.channel(channel_id, f"{endpoint}-{next(self._ids):08x};1", state="Down")
        channel["dialplan"] = {
            "context": q.get("context", ""),
            "exten": q.get("extension", "s"),
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
        call_id: str,
        *,
        queue: str = "repair",
        priority: int = 0,
        kind: str = "inbound",
        timestamp: str | None = None,
    ) -> dict[str, Any]:
        """A caller leaves the IVR: ``Stasis(hotline,inbound,<call_id>,<queue>,<priority>)``."""
        args = [kind, call_id, queue, str(priority)]
        channel = self.channel(channel_id, f"PJSIP/caller-{channel_id}",
                               app_data=",".join([APP, *args]))
        self.in_stasis.add(channel_id)
        extra = {"timestamp": timestamp} if timestamp else {}
        self.push("StasisStart", args=args, channel=channel, **extra)
        return channel

    def answer(self, channel_id: str) -> None:
        """The originated agent answers: the cc-agent dialplan starts the recording and
        enters ``Stasis(hotline,agent,<call_id>)``."""
        channel = self.channels[channel_id]
        channel["state"] = "Up"
        self.push("ChannelStateChange", channel=channel)
        self.enter_stasis(channel_id, ["agent", self.variables[channel_id]["CC_CALL_ID"]])

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
