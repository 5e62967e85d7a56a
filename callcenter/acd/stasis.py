"""The ``hotline`` Stasis application: ARI events -> the ACD machine -> the executor.

The dialplan contract (docker/asterisk/extensions.conf):
- callers enter ``Stasis(hotline,inbound|fallback,<call_id>,<queue>,<priority>)``:
  the IVR's choices travel as arguments, so no ARI round trip is needed to queue;
- an answered agent channel runs ``[cc-agent]`` (MixMonitor: one file per
  direction) and enters ``Stasis(hotline,agent,<call_id>)``.

Events are turned into machine events at once, in arrival order, and handled
synchronously; nothing on this path waits for ARI or the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from callcenter.acd import events as ev
from callcenter.acd.executor import Executor, Writer, utc_now
from callcenter.acd.figures import agent_view, live_snapshot
from callcenter.acd.machine import Machine, caller_arrived
from callcenter.acd.queues import QueueConfig, parse_skills
from callcenter.ari.client import AriClient, AriError

log = logging.getLogger("callcenter.acd")

ARG_AGENT = "agent"
# The only ARI events the ACD reacts to (translate): Asterisk is asked to send no
# others, which spares it and us the JSON of every dialplan step and variable.
EVENT_TYPES = ("StasisStart", "StasisEnd", "ChannelHangupRequest", "ChannelDestroyed",
               "PlaybackFinished")
ACTIONS = ev.AGENT_ACTIONS


class AcdStore(Protocol):
    async def agent_rows(self) -> list[dict[str, Any]]: ...
    async def active_calls(self) -> list[dict[str, Any]]: ...


def parse_timestamp(value: Any, default: datetime) -> datetime:
    """An ARI timestamp ("2026-11-30T08:00:01.123+0800") as an aware datetime."""
    if not isinstance(value, str) or not value:
        return default
    text = value.strip()
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"  # +0800 -> +08:00
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def stasis_args(channel: dict[str, Any], app: str) -> tuple[str, ...] | None:
    dialplan = channel.get("dialplan") or {}
    if dialplan.get("app_name") != "Stasis":
        return None
    parts = str(dialplan.get("app_data") or "").split(",")
    return tuple(parts[1:]) if parts[0] == app else None


def live_channel(channel: dict[str, Any], app: str) -> ev.LiveChannel:
    return ev.LiveChannel(
        id=str(channel.get("id", "")),
        name=str(channel.get("name") or ""),
        state=str(channel.get("state") or ""),
        caller_number=str((channel.get("caller") or {}).get("number") or ""),
        stasis_args=stasis_args(channel, app),
    )


def translate(event: dict[str, Any], app: str, now: datetime) -> ev.Event | None:
    """One ARI event as a machine event (None: not one the ACD reacts to)."""
    kind = event.get("type")
    at = parse_timestamp(event.get("timestamp"), now)
    channel = event.get("channel") or {}
    channel_id = str(channel.get("id", ""))
    if kind == "StasisStart":
        args = tuple(str(a) for a in event.get("args") or [])
        if args[:1] == (ARG_AGENT,):
            return ev.AgentAnswered(at, channel_id, args[1] if len(args) > 1 else "")
        # The event's own args, not the channel's dialplan data (not set yet).
        found = replace(live_channel(channel, app), stasis_args=args or ("inbound",))
        return caller_arrived(found, at)
    if kind in ("StasisEnd", "ChannelHangupRequest", "ChannelDestroyed"):
        cause = event.get("cause")
        return ev.ChannelGone(at, channel_id, cause if isinstance(cause, int) else None,
                              destroyed=kind == "ChannelDestroyed")
    if kind == "PlaybackFinished":
        return ev.PlaybackFinished(at, str((event.get("playback") or {}).get("id", "")))
    return None


def agent_spec(row: dict[str, Any]) -> ev.AgentSpec:
    state = str(row.get("state") or "logged_out")
    return ev.AgentSpec(
        id=str(row["id"]), name=str(row.get("name") or row["id"]),
        endpoint=str(row.get("endpoint") or ""),
        skills=parse_skills(list(row.get("skills") or [])),
        state="on_call" if state == "busy" else state,
        reason=row.get("pause_reason"), since=row.get("state_since"),
        queues_off=frozenset(row.get("queues_off") or ()),
    )


def active_row(row: dict[str, Any]) -> ev.ActiveRow:
    legs = row.get("leg_channels") or {}
    return ev.ActiveRow(
        call_id=str(row.get("call_id") or row.get("id") or ""),
        stage=str(row.get("stage") or ""), channel_id=str(row.get("channel_id") or ""),
        queue=str(row.get("queue") or ""), priority=int(row.get("priority") or 0),
        caller_number=str(row.get("caller_number") or ""), queued_at=row.get("queued_at"),
        agent_id=row.get("agent_id"),
        agent_channel_id=legs.get("agent") if isinstance(legs, dict) else None,
        answered_at=row.get("answered_at"),
    )


class AcdApp:
    """Owns the machine; ``run()`` consumes ARI events until ``stop()``."""

    def __init__(
        self,
        client: AriClient,
        store: AcdStore,
        writer: Writer,
        queues: dict[str, QueueConfig],
        *,
        ring_timeout_s: float = 15.0,
        wrap_up_s: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
        flush: Callable[[float], Any] | None = None,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.clock = clock
        self.machine = Machine(queues, ring_timeout_s=ring_timeout_s, wrap_up_s=wrap_up_s)
        self.executor = Executor(client, writer, self.feed, on_change=self._changed, clock=clock)
        self._flush = flush
        self._on_connect = on_connect  # e.g. re-push SIP accounts to a restarted Asterisk
        self._subscribers: set[asyncio.Queue[str]] = set()
        self.reconciles = 0
        self.handled = 0
        self._stopping = asyncio.Event()

    # ---- the event path ------------------------------------------------------------

    def feed(self, event: ev.Event) -> None:
        """Handle one event now: the machine decides, the executor starts the work."""
        self.handled += 1
        try:
            commands = self.machine.handle(event)
        except Exception:  # a bug in one transition must not stop every other call
            log.exception("acd: %s failed", type(event).__name__)
            return
        self.executor.run(commands)

    async def run(self) -> None:
        await self.load_agents(adopt_state=True)
        reader = asyncio.create_task(self._read(), name="acd-ari-events")
        try:
            await self._stopping.wait()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self.executor.cancel_all()
            await self.executor.idle()

    async def stop(self) -> None:
        self._stopping.set()

    async def _read(self) -> None:
        while True:
            try:
                async for raw in self.client.events(on_connect=self._reconcile):
                    event = translate(raw, self.client.app, self.clock())
                    if event is not None:
                        self.feed(event)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ARI event stream failed; restarting it")
                await asyncio.sleep(1.0)

    async def _reconcile(self) -> None:
        """After every (re)connection: compare with Asterisk's channels and the store's
        unfinished calls (written ones: pending writes are flushed first, briefly)."""
        if self._on_connect is not None:
            self._on_connect()
        await self._filter_events()
        if self._flush is not None:
            with contextlib.suppress(Exception):
                await self._flush(5.0)
        try:
            rows = tuple(active_row(r) for r in await asyncio.wait_for(
                self.store.active_calls(), 10))
        except Exception as exc:  # the database is away: reconcile with Asterisk alone
            log.warning("reconcile without the store's calls: %r", exc)
            rows = ()
        channels = await self.client.list_channels()
        live = {c.id: c for c in (live_channel(ch, self.client.app) for ch in channels)}
        self.feed(ev.Reconcile(self.clock(), live, rows))
        self.reconciles += 1

    async def _filter_events(self) -> None:
        allowed = {"allowed": [{"type": kind} for kind in EVENT_TYPES]}
        try:
            await self.client.put(f"/applications/{self.client.app}/eventFilter", allowed)
        except AriError as exc:  # an older Asterisk: every event comes, translate skips
            log.info("ARI event filter not set (%s)", exc)

    # ---- agents --------------------------------------------------------------------

    async def load_agents(self, *, adopt_state: bool = False) -> None:
        """(Re)read agent definitions: at start and when the store says they changed."""
        rows = await self.store.agent_rows()
        self.feed(ev.AgentsLoaded(self.clock(), tuple(agent_spec(r) for r in rows),
                                  adopt_state=adopt_state))

    def request(self, agent_id: str, action: str, reason: str | None = None,
                by: str = "api") -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown agent action {action!r}")
        self.feed(ev.AgentRequest(self.clock(), agent_id, action, reason, by))

    # ---- live figures --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {**live_snapshot(self.machine, self.clock()), "connected": self.client.connected}

    def agent_view(self, agent_id: str) -> dict[str, Any] | None:
        """One agent's live view (their console), or None for an unknown agent."""
        return agent_view(self.machine, agent_id, self.clock())

    def subscribe(self) -> asyncio.Queue[str]:
        """A queue that gets the name of what changed ("calls", "agents")."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._subscribers.discard(queue)

    def _changed(self, what: str) -> None:
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):  # a slow reader misses a nudge only
                queue.put_nowait(what)
