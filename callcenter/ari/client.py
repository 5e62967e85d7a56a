"""A small asyncio client for the Asterisk REST Interface (ARI, Asterisk 22).

REST: ``get``/``post``/``put``/``delete`` return the decoded JSON (or None for an empty
reply) and raise ``AriNotFound`` on 404, ``AriError`` on any other HTTP error and
``AriUnavailable`` (an ``AriError`` with status 0) when no answer came back at all
(connection refused or reset, timeout): callers need to catch ``AriError`` only.
A 404 on a channel operation is normal in telephony (the channel hung up a
moment ago): callers catch ``AriNotFound``; the convenience methods that are
typically used on vanishing channels (hangup, stop_playback...) do it already.

Events: ``events()`` is an async iterator over the application's websocket that
reconnects with exponential backoff and calls ``on_connect`` after every
successful (re)connection, before yielding that connection's events, so the
application can reconcile its state with ``GET /channels``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from callcenter.constants import STASIS_APP
from callcenter.redact import safe_url, scrub_urls

log = logging.getLogger("callcenter.ari")

Json = Any
OnConnect = Callable[[], Awaitable[None]]


class AriError(Exception):
    """An ARI request answered with an HTTP error status."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"ARI {method} {path} -> {status}: {body[:200]}")
        self.status = status
        self.method = method
        self.path = path
        self.body = body


class AriNotFound(AriError):
    """404: the channel, bridge, recording or variable does not exist (any more)."""


class AriUnavailable(AriError):
    """No HTTP answer at all (connection refused or reset, timeout): status 0."""


# Concurrent HTTP connections to ARI (http.conf's sessionlimit must allow them).
MAX_CONNECTIONS = 400

# What aiohttp raises when no HTTP status came back (asyncio.TimeoutError is TimeoutError).
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


def _seg(value: str) -> str:
    """One URL path segment: everything escaped, '/' included."""
    return quote(value, safe="")


def describe_transport_error(exc: BaseException) -> str:
    """One line for a failed request, without credentials or query string: aiohttp's
    own messages quote the whole URL."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status} {exc.message} from {safe_url(exc.request_info.real_url)}"
    text = str(exc)
    return scrub_urls(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _params(params: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return out


class AriClient:
    """ARI over aiohttp. ``base_url`` is the HTTP server, e.g. http://127.0.0.1:8088."""

    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        app: str = STASIS_APP,
        *,
        request_timeout_s: float = 10.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        heartbeat_s: float = 20.0,
    ) -> None:
        base = base_url.rstrip("/")
        if base.endswith("/ari"):
            base = base[: -len("/ari")]
        # Credentials travel in the Authorization header only, never in a URL.
        self.base_url = str(URL(base).with_user(None)) if "@" in base else base
        self.user = user
        self.password = password
        self.app = app
        self.request_timeout_s = request_timeout_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.heartbeat_s = heartbeat_s
        self.connections = 0  # successful websocket connections so far
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closed = False

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the events websocket is connected right now."""
        return self._ws is not None and not self._ws.closed

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # HTTP Basic on every request, the events websocket's upgrade included.
                headers={"Authorization": aiohttp.encode_basic_auth(self.user, self.password)},
                timeout=aiohttp.ClientTimeout(total=self.request_timeout_s),
                # One request at a time per call, many calls at once: aiohttp's default
                # of 100 connections would queue the 101st call behind the others.
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
            )
        return self._session

    async def close(self) -> None:
        """Stop the event stream and close HTTP connections."""
        self._closed = True
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()

    @classmethod
    def from_settings(cls, settings: Any) -> AriClient:
        """From ``callcenter.settings.Settings`` (ari_url, ari_user, ari_password)."""
        return cls(settings.ari_url, settings.ari_user, settings.ari_password, STASIS_APP)

    async def __aenter__(self) -> AriClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- REST -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Json = None,
    ) -> Json:
        """``path`` is relative to /ari, e.g. ``/channels``; returns decoded JSON or None."""
        url = f"{self.base_url}/ari{path}"
        try:
            async with self.session.request(method, url, params=_params(params), json=body) as resp:
                status, text = resp.status, await resp.text()
        except TRANSPORT_ERRORS as exc:
            raise AriUnavailable(0, method, path, describe_transport_error(exc)) from exc
        if status == 404:
            raise AriNotFound(status, method, path, text)
        if status >= 400:
            raise AriError(status, method, path, text)
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    async def get(self, path: str, **params: Any) -> Json:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Json = None, **params: Any) -> Json:
        return await self.request("POST", path, params=params, body=body)

    async def put(self, path: str, body: Json = None, **params: Any) -> Json:
        return await self.request("PUT", path, params=params, body=body)

    async def delete(self, path: str, **params: Any) -> Json:
        return await self.request("DELETE", path, params=params)

    # ---- channels -------------------------------------------------------------------------

    async def list_channels(self) -> list[dict[str, Any]]:
        return list(await self.get("/channels") or [])

    async def get_channel(self, channel_id: str) -> dict[str, Any]:
        return dict(await self.get(f"/channels/{_seg(channel_id)}"))

    async def get_var(self, channel_id: str, variable: str) -> str | None:
        """A channel variable, or None when it is unset or the channel is gone.

        Asterisk answers 404 both for a missing channel and a missing variable;
        both mean "no value" here, so this never raises ``AriNotFound``.
        """
        try:
            data = await self.get(f"/channels/{_seg(channel_id)}/variable", variable=variable)
        except AriNotFound:
            return None
        if isinstance(data, dict):
            value = data.get("value")
            return None if value is None else str(value)
        return None

    async def set_var(self, channel_id: str, variable: str, value: str) -> None:
        await self.post(f"/channels/{_seg(channel_id)}/variable", variable=variable, value=value)

    async def originate(
        self,
        endpoint: str,
        *,
        app_args: str,
        timeout_s: float,
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        channel_id: str | None = None,
    ) -> dict[str, Any]:
        """``POST /channels`` into this Stasis app; the channel enters it once answered."""
        params = {
            "endpoint": endpoint,
            "app": self.app,
            "appArgs": app_args,
            "timeout": max(1, round(timeout_s)),
            "callerId": caller_id,
            "channelId": channel_id,
        }
        body = {"variables": dict(variables)} if variables else None
        return dict(await self.post("/channels", body, **params) or {})

    async def originate_to_dialplan(
        self,
        endpoint: str,
        *,
        context: str,
        extension: str = "s",
        timeout_s: float,
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        channel_id: str | None = None,
    ) -> dict[str, Any]:
        """``POST /channels`` that runs ``context,extension,1`` once answered; then
        subscribe this app to the channel so its end (no answer) is seen. A 404 from
        the subscription means it already ended."""
        params = {
            "endpoint": endpoint,
            "context": context,
            "extension": extension,
            "priority": 1,
            "timeout": max(1, round(timeout_s)),
            "callerId": caller_id,
            "channelId": channel_id,
        }
        body = {"variables": dict(variables)} if variables else None
        channel = dict(await self.post("/channels", body, **params) or {})
        source = f"channel:{channel.get('id') or channel_id}"
        await self.post(f"/applications/{_seg(self.app)}/subscription", eventSource=source)
        return channel

    async def play(self, channel_id: str, playback_id: str, media: list[str]) -> None:
        await self.post(f"/channels/{_seg(channel_id)}/play/{_seg(playback_id)}", media=media)

    async def stop_playback(self, playback_id: str) -> bool:
        try:
            await self.delete(f"/playbacks/{_seg(playback_id)}")
        except AriNotFound:
            return False
        return True

    async def hangup(self, channel_id: str, reason: str = "normal") -> bool:
        """Hang a channel up; False when it was already gone (404)."""
        try:
            await self.delete(f"/channels/{_seg(channel_id)}", reason=reason)
        except AriNotFound:
            log.debug("hangup: channel %s already gone", channel_id)
            return False
        return True

    async def continue_in_dialplan(self, channel_id: str, context: str,
                                   extension: str = "s", priority: int = 1) -> None:
        """The channel leaves the app for the dialplan (its StasisEnd follows)."""
        await self.post(f"/channels/{_seg(channel_id)}/continue", context=context,
                        extension=extension, priority=str(priority))

    async def answer(self, channel_id: str) -> None:
        await self.post(f"/channels/{_seg(channel_id)}/answer")

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        await self.post(f"/channels/{_seg(channel_id)}/moh", mohClass=moh_class)

    async def stop_moh(self, channel_id: str) -> None:
        await self.delete(f"/channels/{_seg(channel_id)}/moh")

    async def ring(self, channel_id: str) -> None:
        await self.post(f"/channels/{_seg(channel_id)}/ring")

    async def ring_stop(self, channel_id: str) -> None:
        await self.delete(f"/channels/{_seg(channel_id)}/ring")

    # ---- bridges ---------------------------------------------------------

    async def create_bridge(
        self, bridge_type: str = "mixing", *, name: str | None = None, bridge_id: str | None = None
    ) -> dict[str, Any]:
        if bridge_id:
            path = f"/bridges/{_seg(bridge_id)}"
            return dict(await self.post(path, type=bridge_type, name=name) or {})
        return dict(await self.post("/bridges", type=bridge_type, name=name) or {})

    async def add_to_bridge(self, bridge_id: str, channel_ids: list[str]) -> None:
        await self.post(f"/bridges/{_seg(bridge_id)}/addChannel", channel=channel_ids)

    async def list_bridges(self) -> list[dict[str, Any]]:
        return list(await self.get("/bridges") or [])

    async def destroy_bridge(self, bridge_id: str) -> bool:
        try:
            await self.delete(f"/bridges/{_seg(bridge_id)}")
        except AriNotFound:
            return False
        return True

    # ---- events ---------------------------------------------------------------------------

    @property
    def events_url(self) -> str:
        """The events websocket; no credentials (they go in the Authorization header:
        an ``api_key`` in the query would end up in logs and proxies)."""
        scheme, rest = self.base_url.split("://", 1)
        ws_scheme = "wss" if scheme == "https" else "ws"
        query = urlencode({"app": self.app, "subscribeAll": "false"})
        return f"{ws_scheme}://{rest}/ari/events?{query}"

    async def events(self, on_connect: OnConnect | None = None) -> AsyncIterator[dict[str, Any]]:
        """Parsed ARI events, forever: reconnects with backoff until ``close()``.

        ``on_connect`` is awaited after each successful connection, before that
        connection's first event is yielded (events arriving meanwhile wait in
        the socket). Malformed messages are logged and skipped.
        """
        delay = self.reconnect_min_s
        while not self._closed:
            try:
                async with self.session.ws_connect(
                    self.events_url,
                    heartbeat=self.heartbeat_s,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                ) as ws:
                    self._ws = ws
                    self.connections += 1
                    delay = self.reconnect_min_s
                    log.info("ARI events connected (connection %d)", self.connections)
                    if on_connect is not None:
                        try:
                            await on_connect()
                        except Exception:
                            log.exception("ARI on_connect callback failed")
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            event = self._parse(msg.data)
                            if event is not None:
                                yield event
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                            break
                    log.warning("ARI events websocket closed")
            except TRANSPORT_ERRORS as exc:
                if isinstance(exc, aiohttp.ClientResponseError) and exc.status == 401:
                    log.warning("ARI events connection refused: user %r or its password is "
                                "wrong (%s)", self.user, describe_transport_error(exc))
                else:
                    log.warning("ARI events connection failed: %s",
                                describe_transport_error(exc))
            finally:
                self._ws = None
            if self._closed:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    @staticmethod
    def _parse(data: str) -> dict[str, Any] | None:
        try:
            event = json.loads(data)
        except ValueError:
            log.warning("ARI: malformed event skipped: %.200r", data)
            return None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            log.warning("ARI: event without a type skipped: %.200r", data)
            return None
        return event
