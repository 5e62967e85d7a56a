"""The routing Stasis application: queue callers, ring agents, bridge and record.

Call flow (the dialplan contract, see callcenter/constants.py):

1. A caller enters ``Stasis(hotline,inbound|fallback)`` with CC_CALL_ID, CC_QUEUE,
   CC_PRIORITY set by the IVR. The call is queued (music on hold, or ringing).
2. An available agent is picked (``policy.pick_agent``) and originated into this
   app with args ``agent,<call_id>``.
3. When the agent channel is in Stasis and Up: mixing bridge, both channels in
   it, one snoop channel per leg (args ``snoop,<call_id>,<leg>``) recorded as
   ``recording_name(call_id, leg)``; once both recordings run, CC_BRIDGED=1 is
   set on caller and agent (the simulated parties wait for it before speaking).
4. No answer: next agent; nobody free: the caller keeps waiting until an agent
   frees up (wrap-up end, ``agents_changed()``, or the periodic re-dispatch).
5. Whoever hangs up first: the other side is hung up, recordings stopped, the
   bridge destroyed (each step on its own: one failing does not stop the next),
   and ``store.finish_call`` called until it succeeds once (back-off retries).
6. A failed store write never strands a caller: offers are persisted before they
   ring; a queued or answered call whose write failed is served anyway and
   written again later. Reconcile (after every websocket connection, retried
   when it fails) re-drives calls, IVR-stage rows and agent states.

All ARI events and internal timers go through one asyncio queue and are handled
one at a time, so handlers never interleave. ``EVENT_HANDLERS`` (built in
``__init__``) is the one table of the events this app reacts to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from callcenter.ari.client import AriClient, AriError, AriNotFound
from callcenter.constants import (
    QUEUES,
    VAR_BRIDGED,
    VAR_CALL_ID,
    VAR_CALLER_CHANNEL,
    VAR_PRIORITY,
    VAR_QUEUE,
)
from callcenter.routing.policy import (
    GENERAL_QUEUE,
    AgentInfo,
    AgentState,
    WaitingCall,
    next_call,
    order_waiting,
    parse_priority,
    pick_agent,
    queue_stats,
)
from callcenter.routing.store import IVR_STAGES, ROUTING_STAGES, RoutingStore

log = logging.getLogger("callcenter.routing")

# Channel variables owned by routing (the dialplan reads them).

# Stasis arguments: the first one says what kind of channel entered the app.
ARG_INBOUND = "inbound"
ARG_FALLBACK = "fallback"
ARG_AGENT = "agent"
ARG_SNOOP = "snoop"

# Recordings go to "<call_id>/<leg>.wav" under Asterisk's recording dir. If the
# sandbox shows sub-folders do not work, set this to "-": "<call_id>-<leg>.wav".
RECORDING_SEPARATOR = "/"
RECORDING_FORMAT = "wav"


def recording_name(call_id: str, leg: str) -> str:
    """The ARI recording name (no extension) of one leg of a call."""
    return f"{call_id}{RECORDING_SEPARATOR}{leg}"


def recording_path(call_id: str, leg: str) -> str:
    """Where the leg's recording lands, relative to the recordings folder."""
    return f"{recording_name(call_id, leg)}.{RECORDING_FORMAT}"


def agent_channel_id(call_id: str) -> str:
    # Prefixed by the call id so reconcile finds a call's channels after a restart.
    return f"{call_id}-agent-{uuid.uuid4().hex[:8]}"


def snoop_channel_id(call_id: str, leg: str) -> str:
    return f"{call_id}-snoop-{leg}"


class CallState(StrEnum):
    QUEUED = "queued"  # caller waiting, no agent ringing
    RINGING = "ringing"  # an agent channel was originated for this call
    CONVERSATION = "conversation"  # agent answered; bridged (or being bridged)
    ENDING = "ending"  # hung up; waiting for recordings to close (or finish_call to succeed)
    FINISHED = "finished"  # finish_call succeeded


# The store's stage for each live state.
STAGE_OF = {
    CallState.QUEUED: "queue",
    CallState.RINGING: "ringing",
    CallState.CONVERSATION: "conversation",
}


@dataclass(eq=False)
class Call:
    call_id: str
    caller_channel_id: str
    caller_channel_name: str
    caller_number: str
    queue: str
    priority: int
    queued_at: datetime
    state: CallState = CallState.QUEUED
    agent_id: str | None = None
    agent_channel_id: str | None = None
    agent_in_stasis: bool = False
    tried_agents: set[str] = field(default_factory=set)
    waiting_audio: str | None = None  # "moh" | "ring" while the caller waits
    bridge_id: str | None = None
    snoops: dict[str, str] = field(default_factory=dict)  # leg -> snoop channel id
    recordings: dict[str, str] = field(default_factory=dict)  # leg -> recording name
    recordings_live: set[str] = field(default_factory=set)  # names not finished yet
    legs_ready: set[str] = field(default_factory=set)  # legs whose recording started/failed
    bridged_flag_set: bool = False
    end_stage: str | None = None
    hangup_by: str | None = None
    answered_at: datetime | None = None
    unsaved: bool = False  # a store write failed: the whole call is written again later
    store_failures: int = 0  # consecutive failed store writes (back-off of the retries)
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)

    def pending_timers(self) -> bool:
        return any(not handle.cancelled() for handle in self.timers.values())

    def waiting(self) -> WaitingCall:
        return WaitingCall(
            call_id=self.call_id,
            queue=self.queue,
            priority=self.priority,
            queued_at=self.queued_at,
            tried_agents=frozenset(self.tried_agents),
        )


Event = dict[str, Any]
Handler = Callable[[Event], Awaitable[None]]
_STOP: Event = {"type": "CcStop"}


def _now() -> datetime:
    return datetime.now(UTC)


class RoutingApp:
    """The ``hotline`` Stasis application.

    Construct with an ``AriClient`` and a ``RoutingStore``; ``await run()`` until
    ``await stop()``. ``snapshot()`` gives live queue figures at any time.
    """

    def __init__(
        self,
        client: AriClient,
        store: RoutingStore,
        *,
        ring_timeout_s: float = 15.0,
        ring_grace_s: float = 2.0,
        wrap_up_s: float = 5.0,
        redispatch_interval_s: float = 3.0,
        recording_settle_s: float = 2.0,
        bridged_flag_timeout_s: float = 3.0,
        retry_s: float = 1.0,
        retry_max_s: float = 30.0,
        moh_class: str | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.ring_timeout_s = ring_timeout_s
        self.ring_grace_s = ring_grace_s
        self.wrap_up_s = wrap_up_s
        self.redispatch_interval_s = redispatch_interval_s
        self.recording_settle_s = recording_settle_s
        self.bridged_flag_timeout_s = bridged_flag_timeout_s
        self.retry_s = retry_s  # first back-off of failed store writes and reconciles
        self.retry_max_s = retry_max_s
        self.moh_class = moh_class

        self._calls: dict[str, Call] = {}
        self._by_channel: dict[str, tuple[str, str]] = {}  # channel -> (call_id, role)
        self._by_recording: dict[str, str] = {}  # recording name -> call_id
        self._agents: dict[str, AgentInfo] = {}  # last known, for snapshot()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._timers: set[asyncio.TimerHandle] = set()
        self._wrap_ups: dict[str, asyncio.TimerHandle] = {}  # agent id -> wrap-up end
        self._running = False
        self.reconciles = 0  # successful reconciliations (one per websocket connection)
        self.handled = 0  # events handled

        # The one table of subscriptions: ARI event types (and internal Cc* events).
        self.EVENT_HANDLERS: dict[str, Handler] = {
            "StasisStart": self._on_stasis_start,
            "ChannelStateChange": self._on_state_change,
            "ChannelHangupRequest": self._on_channel_gone,
            "StasisEnd": self._on_channel_gone,
            "ChannelDestroyed": self._on_channel_gone,
            "RecordingFinished": self._on_recording_done,
            "RecordingFailed": self._on_recording_done,
            # internal events, produced by timers and public methods
            "CcConnected": self._on_connected,
            "CcRingTimeout": self._on_ring_timeout,
            "CcBridgedTimeout": self._on_bridged_timeout,
            "CcRecordingsSettled": self._on_finish_due,
            "CcFinishRetry": self._on_finish_due,
            "CcSaveRetry": self._on_save_retry,
            "CcWrapUpDone": self._on_wrap_up_done,
            "CcDispatch": self._on_dispatch,
        }

    @classmethod
    def from_settings(cls, client: AriClient, store: RoutingStore, settings: Any) -> RoutingApp:
        return cls(
            client,
            store,
            ring_timeout_s=float(settings.ring_timeout_s),
            wrap_up_s=float(getattr(settings, "wrap_up_s", 5.0)),
        )

    # ---- public ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume ARI events until ``stop()``; reconnects and reconciles on its own."""
        self._running = True
        reader = asyncio.create_task(self._read_events(), name="ari-events")
        ticker = asyncio.create_task(self._tick(), name="routing-tick")
        try:
            while True:
                event = await self._queue.get()
                if event is _STOP:
                    break
                await self._handle(event)
        finally:
            self._running = False
            for task in (reader, ticker):
                task.cancel()
            for task in (reader, ticker):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for handle in self._timers:
                handle.cancel()
            self._timers.clear()

    async def stop(self) -> None:
        """Stop consuming events. Calls in progress stay in Asterisk and the store;
        the next ``run()`` re-adopts them through reconcile."""
        self._queue.put_nowait(_STOP)

    def agents_changed(self) -> None:
        """Tell the app an agent logged in or became available (web UI, CLI)."""
        self._queue.put_nowait({"type": "CcDispatch"})

    def snapshot(self) -> dict[str, Any]:
        """Live figures for supervisors: per queue waiting calls, longest wait and
        agents available/busy; totals of calls by state; agent states."""
        now = _now()
        live = [c for c in self._calls.values() if c.state in STAGE_OF]
        waiting = [c.waiting() for c in live if c.state in (CallState.QUEUED, CallState.RINGING)]
        return {
            "at": now.isoformat(),
            "queues": queue_stats(QUEUES, waiting, self._agents.values(), now),
            "calls": {
                "queued": sum(1 for c in live if c.state == CallState.QUEUED),
                "ringing": sum(1 for c in live if c.state == CallState.RINGING),
                "conversation": sum(1 for c in live if c.state == CallState.CONVERSATION),
            },
            "agents": {a.id: a.state for a in self._agents.values()},
            "connected": self.client.connected,
        }

    def call_state(self, call_id: str) -> CallState | None:
        call = self._calls.get(call_id)
        return call.state if call else None

    # ---- event plumbing -------------------------------------------------------------------

    async def _read_events(self) -> None:
        while True:
            try:
                async for event in self.client.events(on_connect=self._connected):
                    self._queue.put_nowait(event)
                return  # the client was closed
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ARI event stream failed; restarting it")
                await asyncio.sleep(1.0)

    async def _connected(self) -> None:
        # Queued before this connection's first event: reconcile runs first.
        self._queue.put_nowait({"type": "CcConnected"})

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.redispatch_interval_s)
            self._queue.put_nowait({"type": "CcDispatch", "retry_tried": True})

    def _later(self, delay: float, event: Event) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self._queue.put_nowait(event)

        handle = loop.call_later(max(0.0, delay), fire)
        self._timers.add(handle)
        return handle

    def _backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1, 2, ...): doubling, capped."""
        return min(self.retry_max_s, self.retry_s * 2 ** max(0, attempt - 1))

    def _cancel(self, call: Call, name: str) -> None:
        handle = call.timers.pop(name, None)
        if handle is not None:
            handle.cancel()
            self._timers.discard(handle)

    async def _handle(self, event: Event) -> None:
        self.handled += 1
        handler = self.EVENT_HANDLERS.get(str(event.get("type")))
        if handler is None:
            return
        try:
            await handler(event)
        except AriNotFound as exc:
            log.debug("%s: gone during handling: %s", event.get("type"), exc)
        except AriError as exc:
            log.warning("%s: ARI error: %s", event.get("type"), exc)
        except Exception:
            log.exception("%s: handler failed", event.get("type"))

    async def _ari(self, what: str, coro: Awaitable[Any]) -> Any:
        """Run one ARI action where failing is survivable: 404 is normal (debug),
        other errors are logged; both return None."""
        try:
            return await coro
        except AriNotFound:
            log.debug("%s: not found (channel gone)", what)
        except AriError as exc:
            log.warning("%s: %s", what, exc)
        return None

    async def _safe(self, what: str, step: Awaitable[Any]) -> Any:
        """One clean-up step that must not stop the next: like ``_ari``, and any other
        failure (the store down) is logged too; returns None then."""
        try:
            return await self._ari(what, step)
        except Exception as exc:
            log.warning("%s failed: %r", what, exc, exc_info=True)
            return None

    def _index(self, channel_id: str, call_id: str, role: str) -> None:
        self._by_channel[channel_id] = (call_id, role)

    def _lookup(self, event: Event) -> tuple[Call, str, str] | None:
        channel_id = str((event.get("channel") or {}).get("id", ""))
        entry = self._by_channel.get(channel_id)
        if entry is None:
            return None
        call = self._calls.get(entry[0])
        if call is None:
            return None
        return call, entry[1], channel_id

    # ---- agents ---------------------------------------------------------------------------

    async def _load_agents(self) -> list[AgentInfo]:
        agents = await self.store.agents()
        self._agents = {a.id: a for a in agents}
        return agents

    async def _set_agent(
        self, agent_id: str, state: AgentState, *, only_from: tuple[AgentState, ...] = ()
    ) -> None:
        """Set an agent's state; with ``only_from``, only if it is currently one of those
        (so a logout during a call is not overwritten)."""
        if only_from:
            current = {a.id: a.state for a in await self._load_agents()}.get(agent_id)
            if current not in only_from:
                return
        await self.store.set_agent_state(agent_id, state)
        if agent_id in self._agents:
            self._agents[agent_id].state = state
            self._agents[agent_id].idle_since = _now()

    # ---- callers --------------------------------------------------------------------------

    async def _on_stasis_start(self, event: Event) -> None:
        channel = event.get("channel") or {}
        args = [str(a) for a in event.get("args") or []]
        kind = args[0] if args else ARG_INBOUND
        if kind == ARG_AGENT:
            await self._agent_entered(channel, args[1] if len(args) > 1 else "")
        elif kind == ARG_SNOOP:
            await self._snoop_entered(channel, args)
        elif kind in (ARG_INBOUND, ARG_FALLBACK):
            await self._caller_entered(channel, kind)
        else:
            log.warning("StasisStart with unknown args %s on %s", args, channel.get("id"))

    async def _caller_entered(self, channel: dict[str, Any], kind: str) -> None:
        channel_id = str(channel.get("id", ""))
        if not channel_id or channel_id in self._by_channel:
            return  # already tracked (reconcile adopted it first)
        c = self.client
        call_id = await c.get_var(channel_id, VAR_CALL_ID)
        queue = (await c.get_var(channel_id, VAR_QUEUE) or "").strip() or GENERAL_QUEUE
        if queue not in QUEUES:
            log.warning("caller %s: unknown queue %r, using general", channel_id, queue)
            queue = GENERAL_QUEUE
        priority = parse_priority(await c.get_var(channel_id, VAR_PRIORITY))
        caller_number = str((channel.get("caller") or {}).get("number") or "")
        if call_id and call_id in self._calls:
            log.warning("caller %s: call %s already tracked, ignoring", channel_id, call_id)
            return
        if not call_id:
            call_id = uuid.uuid4().hex
            await self._ari(
                f"set {VAR_CALL_ID} on {channel_id}", c.set_var(channel_id, VAR_CALL_ID, call_id)
            )
        call = Call(
            call_id=call_id,
            caller_channel_id=channel_id,
            caller_channel_name=str(channel.get("name") or ""),
            caller_number=caller_number,
            queue=queue,
            priority=priority,
            queued_at=_now(),
        )
        # Idempotent: normally the IVR opened the call already, but it gives the
        # database only a moment; a call it could not record is opened here. If the
        # store is down the caller is queued all the same and the call written later.
        try:
            await self.store.open_call(call_id, caller_number=caller_number, channel_id=channel_id)
        except Exception as exc:
            self._save_later(call, "open_call", exc)
        log.info("call %s queued (%s, %s, priority %d)", call_id, kind, queue, priority)
        await self._enqueue(call, answer=channel.get("state") != "Up")

    async def _enqueue(self, call: Call, *, answer: bool = False) -> None:
        self._calls[call.call_id] = call
        self._index(call.caller_channel_id, call.call_id, "caller")
        call.state = CallState.QUEUED
        try:
            await self.store.update_call(
                call.call_id,
                stage="queue",
                queue=call.queue,
                priority=call.priority,
                channel_id=call.caller_channel_id,
                queued_at=call.queued_at,
            )
        except Exception as exc:
            self._save_later(call, "queue", exc)
        if answer:
            await self._ari(
                f"answer {call.caller_channel_id}", self.client.answer(call.caller_channel_id)
            )
        await self._start_waiting_audio(call)
        await self._dispatch()

    # ---- store writes retried later -------------------------------------------------------

    def _save_later(self, call: Call, what: str, exc: BaseException) -> None:
        """A write of a live call failed: keep serving it and write it all again later."""
        call.unsaved = True
        call.store_failures += 1
        if "save" in call.timers and not call.timers["save"].cancelled():
            return
        delay = self._backoff(call.store_failures)
        log.warning("call %s: store %s failed (%r); again in %.1fs", call.call_id, what, exc, delay)
        call.timers["save"] = self._later(delay, {"type": "CcSaveRetry", "call_id": call.call_id})

    async def _save_call(self, call: Call, stage: str) -> None:
        """Write the whole call (idempotent): the row, then its routing fields."""
        await self.store.open_call(
            call.call_id, caller_number=call.caller_number, channel_id=call.caller_channel_id
        )
        fields: dict[str, Any] = {"answered_at": call.answered_at} if call.answered_at else {}
        await self.store.update_call(
            call.call_id,
            stage=stage,
            queue=call.queue,
            priority=call.priority,
            channel_id=call.caller_channel_id,
            queued_at=call.queued_at,
            agent_id=call.agent_id,
            **fields,
        )
        call.unsaved = False
        call.store_failures = 0

    async def _on_save_retry(self, event: Event) -> None:
        call = self._calls.get(str(event.get("call_id")))
        if call is None or call.state not in STAGE_OF:
            return  # ended meanwhile: _finish writes an unsaved call first
        call.timers.pop("save", None)
        try:
            await self._save_call(call, STAGE_OF[call.state])
        except Exception as exc:
            self._save_later(call, "write", exc)

    async def _start_waiting_audio(self, call: Call) -> None:
        ch = call.caller_channel_id
        try:
            await self.client.start_moh(ch, self.moh_class)
            call.waiting_audio = "moh"
            return
        except AriNotFound:
            log.debug("moh: caller %s gone", ch)
            return
        except AriError as exc:
            log.info("moh on %s failed (%s), ringing instead", ch, exc.status)
        try:
            await self.client.ring(ch)
            call.waiting_audio = "ring"
        except AriNotFound:
            log.debug("ring: caller %s gone", ch)
        except AriError as exc:
            log.warning("caller %s hears nothing while waiting: %s", ch, exc)

    async def _stop_waiting_audio(self, call: Call) -> None:
        ch = call.caller_channel_id
        if call.waiting_audio == "moh":
            await self._ari(f"stop moh {ch}", self.client.stop_moh(ch))
        elif call.waiting_audio == "ring":
            await self._ari(f"stop ring {ch}", self.client.ring_stop(ch))
        call.waiting_audio = None

    # ---- dispatch -------------------------------------------------------------------------

    async def _on_dispatch(self, event: Event) -> None:
        if event.get("retry_tried"):
            # Periodic re-dispatch: agents that did not answer get another chance.
            for call in self._calls.values():
                if call.state == CallState.QUEUED:
                    call.tried_agents.clear()
        await self._dispatch(agent_freed=event.get("agent_id"))

    async def _dispatch(self, agent_freed: str | None = None) -> None:
        """Offer waiting calls to available agents until one side runs out."""
        agents = await self._load_agents()  # also refreshes snapshot()'s agent figures
        queued = [c for c in self._calls.values() if c.state == CallState.QUEUED]
        if not queued:
            return
        now = _now()
        if agent_freed is not None:
            agent = next((a for a in agents if a.id == agent_freed), None)
            if agent is not None and agent.state == "available":
                picked = next_call([c.waiting() for c in queued], agent, now)
                if picked is not None:
                    await self._offer(self._calls[picked.call_id], agent)
                    agents = await self._load_agents()
        while True:
            queued = [c for c in self._calls.values() if c.state == CallState.QUEUED]
            offered = False
            for waiting in order_waiting(c.waiting() for c in queued):
                call = self._calls[waiting.call_id]
                agent = pick_agent(call.queue, agents, now, exclude=call.tried_agents)
                if agent is not None:
                    await self._offer(call, agent)
                    offered = True
                    break
            if not offered:
                return
            agents = await self._load_agents()

    async def _offer(self, call: Call, agent: AgentInfo) -> None:
        channel_id = agent_channel_id(call.call_id)
        # Persisted first: if the store fails the call stays queued (the periodic
        # re-dispatch offers it again), never "ringing" with nobody ringing.
        await self.store.update_call(call.call_id, stage="ringing", agent_id=agent.id)
        call.state = CallState.RINGING
        call.agent_id = agent.id
        call.agent_channel_id = channel_id
        call.agent_in_stasis = False
        self._index(channel_id, call.call_id, "agent")
        # Armed before anything else can fail: whatever happens next, the offer ends.
        call.timers["ring"] = self._later(
            self.ring_timeout_s + self.ring_grace_s,
            {"type": "CcRingTimeout", "call_id": call.call_id, "channel_id": channel_id},
        )
        log.info("call %s: ringing agent %s (%s)", call.call_id, agent.id, agent.endpoint)
        try:
            await self._set_agent(agent.id, "ringing")
            await self._originate(call, agent, channel_id)
        except Exception as exc:
            log.warning("call %s: offer to %s failed: %r", call.call_id, agent.id, exc)
            await self._agent_not_answering(call, hang_up=False)

    async def _originate(self, call: Call, agent: AgentInfo, channel_id: str) -> None:
        number = call.caller_number
        await self.client.originate(
            agent.endpoint,
            app_args=f"{ARG_AGENT},{call.call_id}",
            timeout_s=self.ring_timeout_s,
            caller_id=f'"{call.queue}" <{number}>' if number else None,
            variables={VAR_CALL_ID: call.call_id, VAR_CALLER_CHANNEL: call.caller_channel_name},
            channel_id=channel_id,
        )

    async def _agent_not_answering(self, call: Call, *, hang_up: bool) -> None:
        """The offer to the ringing agent failed: count it, free the agent, re-queue."""
        agent_id, channel_id = call.agent_id, call.agent_channel_id
        self._cancel(call, "ring")
        if channel_id:
            self._by_channel.pop(channel_id, None)
        call.state = CallState.QUEUED
        call.agent_id = None
        call.agent_channel_id = None
        call.agent_in_stasis = False
        await self.store.update_call(call.call_id, stage="queue", agent_id=None)
        if agent_id:
            call.tried_agents.add(agent_id)
            await self.store.count_no_answer(agent_id)
            await self._set_agent(agent_id, "available", only_from=("ringing",))
        log.info("call %s: agent %s did not answer", call.call_id, agent_id)
        if hang_up and channel_id:
            await self.client.hangup(channel_id)
        await self._dispatch()

    async def _on_ring_timeout(self, event: Event) -> None:
        call = self._calls.get(str(event.get("call_id")))
        if (
            call is not None
            and call.state == CallState.RINGING
            and call.agent_channel_id == event.get("channel_id")
        ):
            call.timers.pop("ring", None)
            await self._agent_not_answering(call, hang_up=True)

    # ---- agent answers: bridge and record -------------------------------------------------

    async def _agent_entered(self, channel: dict[str, Any], call_id: str) -> None:
        channel_id = str(channel.get("id", ""))
        call = self._calls.get(call_id)
        if call is None or call.state != CallState.RINGING or call.agent_channel_id != channel_id:
            # The caller left, or this offer was abandoned: leave no orphan agent.
            log.info("agent channel %s for call %s not wanted: hanging up", channel_id, call_id)
            await self.client.hangup(channel_id)
            return
        call.agent_in_stasis = True
        if channel.get("state") == "Up":
            await self._connect(call)

    async def _on_state_change(self, event: Event) -> None:
        found = self._lookup(event)
        if found is None:
            return
        call, role, channel_id = found
        state = (event.get("channel") or {}).get("state")
        if (
            role == "agent"
            and state == "Up"
            and call.state == CallState.RINGING
            and call.agent_channel_id == channel_id
            and call.agent_in_stasis
        ):
            await self._connect(call)

    async def _connect(self, call: Call) -> None:
        assert call.agent_id is not None and call.agent_channel_id is not None
        self._cancel(call, "ring")
        call.state = CallState.CONVERSATION
        call.answered_at = _now()
        agent_id, agent_ch, caller_ch = call.agent_id, call.agent_channel_id, call.caller_channel_id
        try:  # the agent answered: bridge them even if the store is down right now
            await self.store.update_call(
                call.call_id, stage="conversation", answered_at=call.answered_at, agent_id=agent_id
            )
        except Exception as exc:
            self._save_later(call, "conversation", exc)
        await self._safe(f"agent {agent_id} busy", self._set_agent(agent_id, "busy"))
        log.info("call %s: agent %s answered", call.call_id, agent_id)
        await self._stop_waiting_audio(call)
        try:
            bridge = await self.client.create_bridge("mixing", name=f"call-{call.call_id}")
        except AriError as exc:
            log.error("call %s: cannot create a bridge: %s", call.call_id, exc)
            await self._end_call(call, hangup_by=None)
            return
        call.bridge_id = str(bridge.get("id", ""))
        await self._ari(
            f"bridge {call.call_id}",
            self.client.add_to_bridge(call.bridge_id, [caller_ch, agent_ch]),
        )
        for leg, channel_id in (("caller", caller_ch), ("agent", agent_ch)):
            name = recording_name(call.call_id, leg)
            snoop_id = snoop_channel_id(call.call_id, leg)
            await self.store.add_leg(
                call.call_id,
                leg,
                channel_id=channel_id,
                recording_name=recording_path(call.call_id, leg),
                agent_id=agent_id if leg == "agent" else None,
            )
            call.recordings[leg] = name
            call.snoops[leg] = snoop_id
            self._by_recording[name] = call.call_id
            self._index(snoop_id, call.call_id, "snoop")
            snoop = await self._ari(
                f"snoop {leg} of {call.call_id}",
                self.client.snoop(
                    channel_id,
                    app_args=f"{ARG_SNOOP},{call.call_id},{leg}",
                    spy="in",
                    snoop_id=snoop_id,
                ),
            )
            if snoop is None:
                call.legs_ready.add(leg)  # no recording for this leg; do not wait for it
        # The recordings start when the snoop channels enter Stasis (_snoop_entered);
        # CC_BRIDGED follows them, or this timeout, whichever comes first.
        call.timers["bridged"] = self._later(
            self.bridged_flag_timeout_s, {"type": "CcBridgedTimeout", "call_id": call.call_id}
        )
        await self._maybe_flag_bridged(call)

    async def _snoop_entered(self, channel: dict[str, Any], args: list[str]) -> None:
        channel_id = str(channel.get("id", ""))
        call_id = args[1] if len(args) > 1 else ""
        leg = args[2] if len(args) > 2 else ""
        call = self._calls.get(call_id)
        if (
            call is None
            or call.state != CallState.CONVERSATION
            or call.snoops.get(leg) != channel_id
        ):
            log.info("snoop %s (%s) not wanted: hanging up", channel_id, args)
            await self.client.hangup(channel_id)
            return
        name = call.recordings[leg]
        started = await self._ari(
            f"record {name}",
            self.client.record(channel_id, name, fmt=RECORDING_FORMAT),
        )
        if started is not None:
            call.recordings_live.add(name)
            log.info("call %s: recording %s", call_id, name)
        call.legs_ready.add(leg)
        await self._maybe_flag_bridged(call)

    async def _maybe_flag_bridged(self, call: Call, *, force: bool = False) -> None:
        if call.bridged_flag_set or call.state != CallState.CONVERSATION:
            return
        if not force and not {"caller", "agent"} <= call.legs_ready:
            return
        call.bridged_flag_set = True
        self._cancel(call, "bridged")
        for channel_id in (call.caller_channel_id, call.agent_channel_id):
            if channel_id:
                await self._ari(
                    f"set {VAR_BRIDGED} on {channel_id}",
                    self.client.set_var(channel_id, VAR_BRIDGED, "1"),
                )

    async def _on_bridged_timeout(self, event: Event) -> None:
        call = self._calls.get(str(event.get("call_id")))
        if call is not None:
            call.timers.pop("bridged", None)
            log.warning("call %s: recordings not confirmed in time", call.call_id)
            await self._maybe_flag_bridged(call, force=True)

    # ---- hang-up --------------------------------------------------------------------------

    async def _on_channel_gone(self, event: Event) -> None:
        found = self._lookup(event)
        if found is None:
            return
        call, role, channel_id = found
        if call.state not in STAGE_OF:
            return  # already ending: the echo of our own hang-ups
        if role == "caller":
            await self._end_call(call, hangup_by="caller")
        elif role == "agent" and channel_id == call.agent_channel_id:
            if call.state == CallState.RINGING:
                await self._agent_not_answering(call, hang_up=event["type"] != "ChannelDestroyed")
            else:
                await self._end_call(call, hangup_by="agent")
        elif role == "snoop" and event["type"] == "ChannelDestroyed":
            log.debug("call %s: snoop %s ended early", call.call_id, channel_id)

    async def _end_call(self, call: Call, *, hangup_by: str | None) -> None:
        """Finish a live call. Every clean-up step stands alone (one failing does not
        stop the next); finish_call follows once the recordings closed (or after
        recording_settle_s), whatever happened in between."""
        was = call.state
        call.end_stage = STAGE_OF[was]
        call.hangup_by = hangup_by
        call.state = CallState.ENDING
        for name in list(call.timers):
            self._cancel(call, name)
        log.info("call %s: ended in %s, hangup by %s", call.call_id, call.end_stage, hangup_by)
        try:
            if hangup_by is not None:
                await self._safe(
                    f"call {call.call_id}: store hangup_by",
                    self.store.update_call(call.call_id, hangup_by=hangup_by),
                )
            await self._release_agent(call, was)
            await self._clean_up(call, skip={hangup_by})
        finally:
            await self._finish_when_settled(call)
        await self._after_end(call.agent_id, was)

    async def _release_agent(self, call: Call, was: CallState) -> None:
        agent_id = call.agent_id
        if agent_id and was == CallState.CONVERSATION:
            step = self._set_agent(agent_id, "wrap_up", only_from=("busy", "ringing"))
        elif agent_id and was == CallState.RINGING:
            step = self._set_agent(agent_id, "available", only_from=("ringing",))
        else:
            return
        await self._safe(f"call {call.call_id}: release agent {agent_id}", step)

    async def _clean_up(
        self, call: Call, *, skip: set[str | None], live: dict[str, Any] | None = None
    ) -> None:
        """Stop the recordings, hang up what is left (not the ``skip`` roles, and
        with ``live`` only channels in it), destroy the bridge; each step tolerant."""
        for name in call.recordings.values():
            if name in call.recordings_live:
                await self._safe(f"stop {name}", self.client.stop_recording(name))
        channels: list[tuple[str | None, str]] = [(ch, "snoop") for ch in call.snoops.values()]
        channels += [(call.caller_channel_id, "caller"), (call.agent_channel_id, "agent")]
        for channel_id, role in channels:
            if channel_id and role not in skip and (live is None or channel_id in live):
                await self._safe(f"hangup {channel_id}", self.client.hangup(channel_id))
        if call.bridge_id:
            bridge = call.bridge_id
            await self._safe(f"destroy {bridge}", self.client.destroy_bridge(bridge))

    async def _finish_when_settled(self, call: Call) -> None:
        if call.recordings_live:
            call.timers["settle"] = self._later(
                self.recording_settle_s, {"type": "CcRecordingsSettled", "call_id": call.call_id}
            )
        else:
            await self._finish(call)

    async def _after_end(self, agent_id: str | None, was: CallState) -> None:
        if agent_id and was == CallState.CONVERSATION:
            if self.wrap_up_s <= 0:
                await self._safe(f"wrap-up end {agent_id}", self._wrap_up_done(agent_id))
            else:
                self._arm_wrap_up(agent_id, self.wrap_up_s)
        elif agent_id and was == CallState.RINGING:
            await self._safe("dispatch", self._dispatch(agent_freed=agent_id))

    def _arm_wrap_up(self, agent_id: str, delay: float) -> None:
        old = self._wrap_ups.pop(agent_id, None)
        if old is not None:
            old.cancel()
            self._timers.discard(old)
        self._wrap_ups[agent_id] = self._later(
            delay, {"type": "CcWrapUpDone", "agent_id": agent_id}
        )

    async def _on_recording_done(self, event: Event) -> None:
        recording = event.get("recording") or {}
        name = str(recording.get("name", ""))
        call = self._calls.get(self._by_recording.get(name, ""))
        if call is None:
            return
        if event.get("type") == "RecordingFailed":
            log.warning("call %s: recording %s failed: %s", call.call_id, name, recording)
        call.recordings_live.discard(name)
        if call.state == CallState.ENDING and not call.recordings_live:
            await self._finish(call)

    async def _on_finish_due(self, event: Event) -> None:
        """Recordings settled, or a failed finish_call is due again."""
        call = self._calls.get(str(event.get("call_id")))
        if call is not None and call.state == CallState.ENDING:
            await self._finish(call)

    async def _finish(self, call: Call) -> None:
        """finish_call; FINISHED only once it succeeded, else again after a back-off."""
        if call.state == CallState.FINISHED:
            return
        self._cancel(call, "settle")
        self._cancel(call, "finish")
        assert call.end_stage is not None
        try:
            if call.unsaved:  # its row may not even exist yet
                await self._save_call(call, call.end_stage)
            await self.store.finish_call(
                call.call_id, stage=call.end_stage, hangup_by=call.hangup_by
            )
        except Exception as exc:
            call.store_failures += 1
            delay = self._backoff(call.store_failures)
            log.warning("call %s: finish failed (%r); again in %.1fs", call.call_id, exc, delay)
            call.timers["finish"] = self._later(
                delay, {"type": "CcFinishRetry", "call_id": call.call_id}
            )
            return
        call.state = CallState.FINISHED
        self._forget(call)

    def _forget(self, call: Call) -> None:
        self._calls.pop(call.call_id, None)
        for channel_id in [call.caller_channel_id, call.agent_channel_id, *call.snoops.values()]:
            if channel_id and self._by_channel.get(channel_id, ("",))[0] == call.call_id:
                self._by_channel.pop(channel_id, None)
        for name in call.recordings.values():
            self._by_recording.pop(name, None)

    async def _on_wrap_up_done(self, event: Event) -> None:
        agent_id = str(event.get("agent_id"))
        self._wrap_ups.pop(agent_id, None)
        await self._wrap_up_done(agent_id)

    async def _wrap_up_done(self, agent_id: str) -> None:
        await self._set_agent(agent_id, "available", only_from=("wrap_up",))
        await self._dispatch(agent_freed=agent_id)

    # ---- reconnect / restart --------------------------------------------------------------

    async def _on_connected(self, event: Event) -> None:
        attempt = int(event.get("attempt") or 0)
        try:
            await self._reconcile()
        except Exception as exc:
            # Not done: try again (a reconnect in between simply reconciles as well).
            delay = self._backoff(attempt + 1)
            log.warning("reconcile failed (%r); again in %.1fs", exc, delay, exc_info=True)
            self._later(delay, {"type": "CcConnected", "attempt": attempt + 1})
            return
        self.reconciles += 1

    async def _reconcile(self) -> None:
        """Align memory and store with the channels Asterisk really has. Raises when
        it could not finish (the caller retries it)."""
        tracked = set(self._calls)
        # Rows before channels: a row names a channel that existed before it was
        # written, so a caller the IVR opens meanwhile is never taken for gone.
        rows = await self.store.active_calls()
        live = {str(ch.get("id")): ch for ch in await self.client.list_channels()}
        await self._load_agents()
        # 1. Calls we track whose channels vanished (or changed) while events were lost.
        for call in list(self._calls.values()):
            await self._reconcile_call(call, live)
        # 2. Calls the store has open but we do not track (we restarted).
        for row in rows:
            call_id = str(row.get("call_id") or row.get("id") or "")
            if call_id and call_id not in tracked and call_id not in self._calls:
                await self._reconcile_row(row, call_id, live)
        # 3. Agents whose state no call of ours explains any more.
        await self._reconcile_agents()
        # 4. Channels in our app we know nothing about.
        for channel_id, ch in live.items():
            if channel_id not in self._by_channel:
                await self._adopt_channel(channel_id, ch)
        await self._dispatch()

    async def _reconcile_call(self, call: Call, live: dict[str, dict[str, Any]]) -> None:
        if call.state == CallState.ENDING:
            if not call.pending_timers():  # nothing left that would finish it
                log.info("reconcile: call %s stuck ending: finishing", call.call_id)
                await self._clean_up(call, skip=set(), live=live)
                await self._finish(call)
            return
        if call.state not in STAGE_OF:
            return
        caller_alive = call.caller_channel_id in live
        agent_ch = live.get(call.agent_channel_id or "")
        if call.state == CallState.RINGING and caller_alive:
            if agent_ch is None:
                await self._agent_not_answering(call, hang_up=False)
            elif agent_ch.get("state") == "Up" and self._stasis_args(agent_ch) is not None:
                log.info("reconcile: agent of %s answered meanwhile", call.call_id)
                call.agent_in_stasis = True
                await self._connect(call)
            return
        if not caller_alive:
            await self._end_call(call, hangup_by=None if agent_ch is None else "caller")
        elif call.state == CallState.CONVERSATION and agent_ch is None:
            await self._end_call(call, hangup_by="agent")

    async def _reconcile_row(
        self, row: dict[str, Any], call_id: str, live: dict[str, dict[str, Any]]
    ) -> None:
        stage = str(row.get("stage") or "")
        if stage in ROUTING_STAGES:
            await self._adopt_row(row, call_id, stage, live)
        elif stage in IVR_STAGES and str(row.get("channel_id") or "") not in live:
            # Hung up inside the IVR while we were away (a live one is the IVR's).
            log.info("reconcile: call %s gone in the IVR (%s): finishing", call_id, stage)
            await self.store.finish_call(call_id, stage=stage, hangup_by=None)

    async def _reconcile_agents(self) -> None:
        """Wrap-ups whose timer died with a restart end; ringing/busy agents without a
        call of ours are available again."""
        ours = {
            c.agent_id
            for c in self._calls.values()
            if c.agent_id and c.state in (CallState.RINGING, CallState.CONVERSATION)
        }
        now = _now()
        for agent in await self._load_agents():
            if agent.state in ("busy", "ringing") and agent.id not in ours:
                log.info("reconcile: agent %s %s without a call", agent.id, agent.state)
                await self._set_agent(agent.id, "available", only_from=(agent.state,))
            elif agent.state == "wrap_up" and not self._wrap_up_pending(agent.id):
                since = agent.idle_since or now
                left = self.wrap_up_s - (now - since).total_seconds()
                if left <= 0:
                    await self._set_agent(agent.id, "available", only_from=("wrap_up",))
                else:
                    self._arm_wrap_up(agent.id, left)

    def _wrap_up_pending(self, agent_id: str) -> bool:
        handle = self._wrap_ups.get(agent_id)
        return handle is not None and not handle.cancelled()

    def _stasis_args(self, ch: dict[str, Any]) -> list[str] | None:
        """The Stasis arguments of a channel in our app, or None when it is not in it."""
        dialplan = ch.get("dialplan") or {}
        if dialplan.get("app_name") != "Stasis":
            return None
        parts = str(dialplan.get("app_data") or "").split(",")
        return parts[1:] if parts[0] == self.client.app else None

    async def _adopt_channel(self, channel_id: str, ch: dict[str, Any]) -> None:
        args = self._stasis_args(ch)
        if args is None:
            return
        kind = args[0] if args else ARG_INBOUND
        if kind in (ARG_INBOUND, ARG_FALLBACK):
            log.info("reconcile: adopting waiting caller %s", channel_id)
            await self._caller_entered(ch, kind)
        else:
            # An agent or snoop channel of a call that no longer exists.
            log.info("reconcile: hanging up orphan %s (%s)", channel_id, args)
            await self.client.hangup(channel_id)

    async def _adopt_row(
        self, row: dict[str, Any], call_id: str, stage: str, live: dict[str, dict[str, Any]]
    ) -> None:
        caller_ch = str(row.get("channel_id") or "")
        others = [ch for ch in live if ch.startswith(f"{call_id}-")]  # agents, snoops
        legs = row.get("leg_channels") or {}
        if isinstance(legs, str):
            legs = json.loads(legs or "{}")
        agent_ch = str(legs.get("agent") or "") if stage == "conversation" else ""
        agent_id = row.get("agent_id")
        if caller_ch not in live:
            log.info("reconcile: call %s gone (stage %s): finishing", call_id, stage)
            for channel_id in [*others, agent_ch]:
                if channel_id in live:
                    await self.client.hangup(channel_id)
            if agent_id and stage == "conversation":
                await self._set_agent(str(agent_id), "available", only_from=("busy", "wrap_up"))
            elif agent_id and stage == "ringing":
                await self._set_agent(str(agent_id), "available", only_from=("ringing",))
            await self.store.finish_call(call_id, stage=stage, hangup_by=row.get("hangup_by"))
            return
        caller = live[caller_ch]
        queued_at = row.get("queued_at") or _now()
        call = Call(
            call_id=call_id,
            caller_channel_id=caller_ch,
            caller_channel_name=str(caller.get("name") or ""),
            caller_number=str(row.get("caller_number") or ""),
            queue=str(row.get("queue") or GENERAL_QUEUE),
            priority=int(row.get("priority") or 0),
            queued_at=queued_at,
        )
        if stage == "conversation":
            # Answered before the restart: we cannot tell the conversation's health,
            # so track it to the end (hang-ups, recordings by name) without re-bridging.
            if agent_ch not in live:
                self._calls[call_id] = call
                self._index(caller_ch, call_id, "caller")
                call.state = CallState.CONVERSATION
                call.agent_id = str(agent_id) if agent_id else None
                await self._end_call(call, hangup_by="agent")
                return
            call.state = CallState.CONVERSATION
            call.agent_id = str(agent_id) if agent_id else None
            call.agent_channel_id = agent_ch
            call.agent_in_stasis = True
            call.bridged_flag_set = True
            bridges = await self._ari("list bridges", self.client.list_bridges()) or []
            for bridge in bridges:
                if caller_ch in (bridge.get("channels") or []):
                    call.bridge_id = str(bridge.get("id"))
            self._calls[call_id] = call
            self._index(caller_ch, call_id, "caller")
            self._index(agent_ch, call_id, "agent")
            for leg in ("caller", "agent"):
                snoop_id = snoop_channel_id(call_id, leg)
                name = recording_name(call_id, leg)
                call.snoops[leg] = snoop_id
                call.recordings[leg] = name
                call.recordings_live.add(name)
                self._index(snoop_id, call_id, "snoop")
                self._by_recording[name] = call_id
            log.info("reconcile: re-adopted conversation %s", call_id)
            return
        # Queue or ringing: the caller is still waiting. Drop any ringing offer, re-queue.
        for channel_id in others:
            await self.client.hangup(channel_id)
        if agent_id and stage == "ringing":
            await self._set_agent(str(agent_id), "available", only_from=("ringing",))
        log.info("reconcile: re-queueing waiting caller of %s", call_id)
        await self._enqueue(call)
