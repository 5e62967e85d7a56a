"""The AGI handler for script ``ivr``: drives the pure menu engine over a channel.

Wiring::

    writer = OrderedWriter(PgStore(pool), journal=...)   # shared with routing
    server = FastAgiServer(host, port, {"ivr": make_ivr_handler(store, writer=writer)})

What it does: the call id (derived from the channel's unique id), ``sink.open_call``, ANSWER, sets
``CC_CALL_ID``, plays the greeting (any key interrupts), then WAIT FOR DIGIT,
feeding each key or silence to :class:`~callcenter.ivr.engine.MenuEngine`
until the engine routes the call. It then sets ``CC_QUEUE``,
``CC_IVR_DIGITS``, ``CC_IVR_INTENT``, ``CC_PRIORITY`` and ``CC_IVR_RESULT=ok``
and returns to the dialplan, which hands the call to routing.

Stages reported to the sink: ``greeting`` while the greeting plays before any
input, ``menu`` while collecting or retrying, ``queue`` once routed. A hang-up
calls ``sink.finish_call`` with the stage reached and is not an error. Any
other failure sets ``CC_IVR_RESULT=error`` (best effort) and propagates, so
the FastAGI server's error policy sends the caller to the safe context.

The sink is never allowed to break or hold up the call: every write goes
through an :class:`~callcenter.db.writer.OrderedWriter` keyed by the call id
(in order, retried through a database outage, never awaited), so a caller
reaches routing with ``CC_IVR_RESULT=ok`` while the database is down and the
rows land once it is back. The writer shared with routing keeps the IVR's
writes for a call ahead of routing's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from callcenter.agi.channel import AgiChannel, AgiError, AgiHangup
from callcenter.constants import (
    VAR_CALL_ID,
    VAR_IVR_DIGITS,
    VAR_IVR_INTENT,
    VAR_IVR_LISTENING,
    VAR_IVR_RESULT,
    VAR_ONCALL_DIAL,
    VAR_PRIORITY,
    VAR_QUEUE,
    VAR_VIP,
)
from callcenter.core import call_id_for_channel
from callcenter.db.writer import OrderedWriter
from callcenter.ivr.engine import (
    Action,
    CallerIdentified,
    DescriptionRecorded,
    DigitPressed,
    HangUp,
    MenuEngine,
    NodeEvent,
    NoInput,
    PlayAndListen,
    RecordDescription,
    RouteToOnCall,
    RouteToQueue,
)
from callcenter.ivr.listen import ChoiceRecognizer, Listener
from callcenter.ivr.menu import DTMF_KEYS, Menu, default_menu
from callcenter.ivr.stats import NodeCounts

log = structlog.get_logger(__name__)

# How long the caller lookup may take before the call goes on without it.
SINK_TIMEOUT_S = 2.0
BEST_EFFORT_TIMEOUT_S = 1.0
HANGUP_BY_CALLER = "caller"
SOUNDS = "callcenter/"  # prompts are played as callcenter/<name>
RESULT_ONCALL = "oncall"  # CC_IVR_RESULT: the dialplan dials the on-call engineer


class CallSink(Protocol):
    """Where the IVR reports a call's progress (a database in production)."""

    async def open_call(
        self, call_id: str, *, caller_number: str, channel_id: str, started_at: datetime
    ) -> None: ...

    async def update_call(self, call_id: str, **fields: object) -> None: ...

    async def record_ivr_events(
        self, call_id: str, events: list[dict[str, str]], at: datetime | None = None
    ) -> None: ...

    async def finish_call(
        self, call_id: str, *, stage: str, hangup_by: str | None, ended_at: datetime,
        outcome: str | None = None,
    ) -> object: ...


@dataclass
class MemoryCallSink:
    """A :class:`CallSink` kept in memory, for tests and the demo."""

    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    node_events: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def open_call(
        self,
        call_id: str,
        *,
        caller_number: str,
        channel_id: str,
        started_at: datetime | None = None,
    ) -> None:
        self.calls[call_id] = {
            "caller_number": caller_number, "channel_id": channel_id, "started_at": started_at
        }
        self.events.append(
            ("open", call_id, {"caller_number": caller_number, "channel_id": channel_id})
        )

    async def update_call(self, call_id: str, **fields: object) -> None:
        self.calls.setdefault(call_id, {}).update(fields)
        self.events.append(("update", call_id, dict(fields)))

    async def record_ivr_events(
        self, call_id: str, events: list[dict[str, str]], at: datetime | None = None
    ) -> None:
        self.node_events.extend((call_id, dict(e)) for e in events)

    async def finish_call(
        self, call_id: str, *, stage: str, hangup_by: str | None,
        ended_at: datetime | None = None, outcome: str | None = None,
    ) -> None:
        self.calls.setdefault(call_id, {}).update(
            stage=stage, hangup_by=hangup_by, finished=True, ended_at=ended_at, outcome=outcome
        )
        self.events.append(("finish", call_id, {"stage": stage, "hangup_by": hangup_by}))


CallerLookup = Callable[[str], Awaitable[CallerIdentified | None]]
ClosedQueues = Callable[[], frozenset[str]]  # the queues outside their opening hours now
IvrHandler = Callable[[AgiChannel], Awaitable[None]]


@dataclass(frozen=True)
class Speech:
    """What spoken choices need: a recognizer and the recordings folder, as the
    service and as Asterisk see it."""

    recognizer: ChoiceRecognizer | None
    recordings_dir: Path
    asterisk_dir: str


def make_ivr_handler(
    sink: CallSink,
    *,
    writer: OrderedWriter | None = None,
    menu: Menu | None = None,
    lookup: CallerLookup | None = None,
    speech: Speech | None = None,
    closed_queues: ClosedQueues | None = None,
    oncall_dial: str = "",
    counts: NodeCounts | None = None,
    sink_timeout_s: float = SINK_TIMEOUT_S,
) -> IvrHandler:
    """The ``ivr`` script handler reporting to ``sink`` through ``writer``.

    ``writer``: the service's shared write-behind (its store should be ``sink``);
    without one, the handler makes its own around ``sink`` (no journal).
    ``lookup`` (optional) maps the caller's number to a :class:`CallerIdentified`
    (known resident, VIP kind); ``sink_timeout_s`` bounds it. ``speech``: spoken
    choices and problem descriptions (without it: keys only, no descriptions).
    ``closed_queues``: which queues are outside their hours at the call's start.
    ``oncall_dial``: the on-call engineer's dial string for an emergency while
    the repair queue is closed ("" = the emergency goes to the repair queue).
    ``counts``: this process's per-node counters (the metrics).
    """
    writes = writer if writer is not None else OrderedWriter(sink)

    async def handle_ivr(channel: AgiChannel) -> None:
        call = IvrCall(
            channel, writes, menu or default_menu(), lookup=lookup, speech=speech,
            closed_queues=closed_queues() if closed_queues else frozenset(),
            oncall_dial=oncall_dial, counts=counts, sink_timeout_s=sink_timeout_s,
        )
        await call.run()

    return handle_ivr


class IvrCall:
    """One caller's pass through the IVR."""

    def __init__(
        self,
        channel: AgiChannel,
        writer: OrderedWriter,
        menu: Menu,
        *,
        lookup: CallerLookup | None = None,
        speech: Speech | None = None,
        closed_queues: frozenset[str] = frozenset(),
        oncall_dial: str = "",
        counts: NodeCounts | None = None,
        sink_timeout_s: float = SINK_TIMEOUT_S,
    ) -> None:
        self.channel = channel
        self.counts = counts
        self.writer = writer
        self.engine = MenuEngine(menu=menu, closed_queues=closed_queues)
        self.lookup = lookup
        self.oncall_dial = oncall_dial
        self.sink_timeout_s = sink_timeout_s
        # Derived from the channel: the distributor finds the same id if this
        # IVR fails before it could set CC_CALL_ID (see core.call_id_for_channel).
        self.call_id = (call_id_for_channel(channel.unique_id) if channel.unique_id
                        else uuid.uuid4().hex)
        self.listener = Listener(
            recognizer=speech.recognizer, recordings_dir=speech.recordings_dir,
            asterisk_dir=speech.asterisk_dir, timing=menu.timing, call_id=self.call_id,
        ) if speech is not None else None
        self.stage = "greeting"
        self.node = ""  # the node of the action under way (the silent script's own)
        self._reported: tuple[str, str] | None = None  # (stage, node) last written
        self.log = log.bind(
            call_id=self.call_id, uniqueid=channel.unique_id, caller=channel.caller_number
        )

    async def run(self) -> None:
        self._write(
            "open_call",
            caller_number=self.channel.caller_number,
            channel_id=self.channel.unique_id or self.channel.channel_name,
            started_at=datetime.now(UTC),
        )
        try:
            await self.channel.answer()
            await self.channel.set_variable(VAR_CALL_ID, self.call_id)
            await self._identify_caller()
            await self._walk(self.engine.start())
        except AgiHangup as exc:
            self._hung_up(exc)
            # Asterisk still accepts SET VARIABLE on a dead channel (for the h extension).
            await self._best_effort_set(VAR_IVR_RESULT, "hangup")
        except Exception:
            self.log.exception("ivr.failed", stage=self.stage, node=self.engine.node)
            self._flush_events()
            await self._best_effort_set(VAR_IVR_RESULT, "error")
            raise

    async def _walk(self, action: Action) -> None:
        while True:
            self._flush_events()
            if isinstance(action, PlayAndListen):
                action = self.engine.handle(await self._play_and_listen(action))
            elif isinstance(action, RecordDescription):
                action = self.engine.handle(await self._describe(action))
            elif isinstance(action, RouteToQueue):
                return await self._route(action)
            elif isinstance(action, RouteToOnCall):
                return await self._oncall(action)
            elif isinstance(action, HangUp):
                return await self._hang_up(action)
            else:  # pragma: no cover - exhaustive
                raise TypeError(f"unknown IVR action {action!r}")

    def _hung_up(self, exc: AgiHangup) -> None:
        node = self.node or self.engine.node
        self.log.info("ivr.caller_hung_up", stage=self.stage, node=node, reason=exc.reason)
        self._flush_events()
        self._write_events([NodeEvent(node=node, kind="hangup")])
        description = self.listener.description_path() if self.listener else ""
        fields: dict[str, Any] = {"ivr_node": node}
        if description:
            fields["ivr_description"] = description
        self._write("update_call", **fields)
        self._write(
            "finish_call", stage=self.stage, hangup_by=HANGUP_BY_CALLER,
            ended_at=datetime.now(UTC),
        )

    async def _identify_caller(self) -> None:
        if self.lookup is None or not self.channel.caller_number:
            return
        try:
            async with asyncio.timeout(self.sink_timeout_s):
                found = await self.lookup(self.channel.caller_number)
        except Exception as exc:
            self.log.warning("ivr.caller_lookup_failed", error=repr(exc))
            return
        event = found or CallerIdentified(known=False)
        self.engine.handle(event)
        if event.known and event.vip != "none":
            await self.channel.set_variable(VAR_VIP, event.vip)

    def _set_stage(self, stage: str, node: str) -> None:
        self.stage, self.node = stage, node
        if (stage, node) != self._reported:
            self._reported = (stage, node)
            self._write("update_call", stage=stage, ivr_node=node)

    async def _play(self, prompts: tuple[str, ...], escape: str = DTMF_KEYS) -> str:
        for prompt in prompts:
            digit = await self.channel.stream_file(SOUNDS + prompt, escape)
            if digit:
                return digit
        return ""

    async def _play_and_listen(self, action: PlayAndListen) -> DigitPressed | Any:
        self._set_stage(action.stage, action.node)
        digit = await self._play(action.prompts)
        if digit:
            return DigitPressed(digit)
        self._set_stage("menu", action.node)
        await self.channel.set_variable(VAR_IVR_LISTENING, action.node)
        if self.listener is None:
            key = await self.channel.wait_for_digit(action.timeout_ms)
            return DigitPressed(key) if key else NoInput()
        return await self.listener.listen(
            self.channel, action.node, action.grammar, action.timeout_ms
        )

    async def _describe(self, action: RecordDescription) -> DescriptionRecorded:
        self._set_stage("menu", action.node)
        skipped = await self._play(action.prompts, escape="#")  # "#": nothing to add
        if self.listener is None or skipped:
            return DescriptionRecorded()
        await self.channel.set_variable(VAR_IVR_LISTENING, action.node)
        return await self.listener.describe(self.channel, action)

    async def _route(self, action: RouteToQueue) -> None:
        self.stage = "queue"
        self._reported = ("queue", "")
        self.log.info(
            "ivr.routed", queue=action.queue, choice=action.choice, digits=action.digits,
            reason=action.reason, keys=self.engine.pressed, spoken=self.engine.spoken,
        )
        fields: dict[str, Any] = {
            "stage": "queue", "ivr_digits": action.digits, "ivr_intent": action.choice,
            "queue": action.queue, "priority": int(action.priority),
            "ivr_node": self.engine.node,
        }
        if action.description:
            fields["ivr_description"] = action.description
        self._write("update_call", **fields)
        await self._play(action.announce, escape="")
        await self._set_route_variables(action.queue, action.digits, action.choice,
                                        action.priority)
        await self.channel.set_variable(VAR_IVR_RESULT, "ok")

    async def _set_route_variables(self, queue: str, digits: str, choice: str,
                                   priority: int) -> None:
        await self.channel.set_variable(VAR_QUEUE, queue)
        await self.channel.set_variable(VAR_IVR_DIGITS, digits)
        await self.channel.set_variable(VAR_IVR_INTENT, choice)
        await self.channel.set_variable(VAR_PRIORITY, int(priority))

    async def _oncall(self, action: RouteToOnCall) -> None:
        """An emergency while the repair queue is closed: the dialplan dials the on-call
        engineer and, if nobody answers, still queues the call as a P1 repair."""
        queue = "repair"
        self.stage = "queue"
        self.log.warning("ivr.emergency_oncall", choice=action.choice, dial=bool(self.oncall_dial))
        self._write("update_call", stage="queue", ivr_digits=action.digits,
                    ivr_intent=action.choice, queue=queue, priority=int(action.priority),
                    ivr_node=self.engine.node)
        await self._set_route_variables(queue, action.digits, action.choice, action.priority)
        if not self.oncall_dial:
            await self.channel.set_variable(VAR_IVR_RESULT, "ok")
            return
        await self._play(action.announce, escape="")
        await self.channel.set_variable(VAR_ONCALL_DIAL, self.oncall_dial)
        await self.channel.set_variable(VAR_IVR_RESULT, RESULT_ONCALL)

    async def _hang_up(self, action: HangUp) -> None:
        """The IVR ends the call itself: the silent line, or a message left after hours."""
        node = self.engine.node if action.reason == "closed" else "silent"
        self.log.info("ivr.ended_call", reason=action.reason, node=node)
        fields: dict[str, Any] = {"ivr_node": node, "end_reason": action.reason}
        if action.description:
            fields["ivr_description"] = action.description
        self._write("update_call", **fields)
        self._write(
            "finish_call", stage="menu", hangup_by=None, ended_at=datetime.now(UTC),
            outcome="callback" if action.reason == "closed" else "ivr",
        )
        await self._play(action.prompts, escape="")
        await self.channel.set_variable(VAR_IVR_RESULT, "hangup")
        await self.channel.hangup()

    def _flush_events(self) -> None:
        self._write_events(self.engine.drain_events())

    def _write_events(self, events: list[NodeEvent]) -> None:
        if self.counts is not None:
            self.counts.add(events)
        if events:
            self._write("record_ivr_events", [
                {"node": e.node, "kind": e.kind, "via": e.via, "choice": e.choice}
                for e in events
            ], at=datetime.now(UTC))

    def _write(self, method: str, *args: Any, **fields: Any) -> None:
        """Hand a write for this call to the writer; returns at once, never fails the call."""
        try:
            self.writer.submit(self.call_id, method, self.call_id, *args, **fields)
        except Exception as exc:  # a programming error; the call still goes on
            self.log.error("ivr.write_refused", method=method, stage=self.stage, error=repr(exc))

    async def _best_effort_set(self, name: str, value: str) -> None:
        try:
            async with asyncio.timeout(BEST_EFFORT_TIMEOUT_S):
                await self.channel.set_variable(name, value)
        except (AgiError, TimeoutError, OSError) as exc:
            self.log.debug("ivr.set_variable_skipped", name=name, error=repr(exc))
