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
from typing import Any, Protocol

import structlog

from callcenter.agi.channel import AgiChannel, AgiError, AgiHangup
from callcenter.constants import (
    VAR_CALL_ID,
    VAR_IVR_DIGITS,
    VAR_IVR_INTENT,
    VAR_IVR_RESULT,
    VAR_PRIORITY,
    VAR_QUEUE,
    VAR_VIP,
)
from callcenter.core import call_id_for_channel
from callcenter.db.writer import OrderedWriter
from callcenter.ivr.engine import (
    Action,
    CallerIdentified,
    DigitPressed,
    HangUp,
    Menu,
    MenuEngine,
    NoInput,
    PlayAndCollect,
    RouteToQueue,
    default_menu,
)

log = structlog.get_logger(__name__)

# How long the caller lookup may take before the call goes on without it.
SINK_TIMEOUT_S = 2.0
BEST_EFFORT_TIMEOUT_S = 1.0
HANGUP_BY_CALLER = "caller"


class CallSink(Protocol):
    """Where the IVR reports a call's progress (a database in production)."""

    async def open_call(
        self, call_id: str, *, caller_number: str, channel_id: str, started_at: datetime
    ) -> None: ...

    async def update_call(self, call_id: str, **fields: object) -> None: ...

    async def finish_call(
        self, call_id: str, *, stage: str, hangup_by: str | None, ended_at: datetime
    ) -> object: ...


@dataclass
class MemoryCallSink:
    """A :class:`CallSink` kept in memory, for tests and the demo."""

    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

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

    async def finish_call(
        self, call_id: str, *, stage: str, hangup_by: str | None, ended_at: datetime | None = None
    ) -> None:
        self.calls.setdefault(call_id, {}).update(
            stage=stage, hangup_by=hangup_by, finished=True, ended_at=ended_at
        )
        self.events.append(("finish", call_id, {"stage": stage, "hangup_by": hangup_by}))


CallerLookup = Callable[[str], Awaitable[CallerIdentified | None]]
IvrHandler = Callable[[AgiChannel], Awaitable[None]]


def make_ivr_handler(
    sink: CallSink,
    *,
    writer: OrderedWriter | None = None,
    menu: Menu | None = None,
    lookup: CallerLookup | None = None,
    sink_timeout_s: float = SINK_TIMEOUT_S,
) -> IvrHandler:
    """The ``ivr`` script handler reporting to ``sink`` through ``writer``.

    ``writer``: the service's shared write-behind (its store should be ``sink``);
    without one, the handler makes its own around ``sink`` (no journal).
    ``lookup`` (optional) maps the caller's number to a
    :class:`CallerIdentified` (known resident, VIP kind) for the priority;
    ``sink_timeout_s`` bounds it.
    """
    writes = writer if writer is not None else OrderedWriter(sink)

    async def handle_ivr(channel: AgiChannel) -> None:
        call = IvrCall(
            channel, writes, menu or default_menu(), lookup=lookup, sink_timeout_s=sink_timeout_s
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
        sink_timeout_s: float = SINK_TIMEOUT_S,
    ) -> None:
        self.channel = channel
        self.writer = writer
        self.engine = MenuEngine(menu=menu)
        self.lookup = lookup
        self.sink_timeout_s = sink_timeout_s
        # Derived from the channel: the distributor finds the same id if this
        # IVR fails before it could set CC_CALL_ID (see core.call_id_for_channel).
        self.call_id = (call_id_for_channel(channel.unique_id) if channel.unique_id
                        else uuid.uuid4().hex)
        self.stage = "greeting"
        self._reported_stage: str | None = None
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
            action: Action = self.engine.start()
            while True:
                if isinstance(action, PlayAndCollect):
                    digit = await self._play_and_collect(action)
                    action = self.engine.handle(DigitPressed(digit) if digit else NoInput())
                elif isinstance(action, RouteToQueue):
                    await self._route(action)
                    return
                elif isinstance(action, HangUp):
                    await self._hang_up(action)
                    return
                else:  # pragma: no cover - exhaustive
                    raise TypeError(f"unknown IVR action {action!r}")
        except AgiHangup as exc:
            self.log.info("ivr.caller_hung_up", stage=self.stage, reason=exc.reason)
            self._write(
                "finish_call", stage=self.stage, hangup_by=HANGUP_BY_CALLER,
                ended_at=datetime.now(UTC),
            )
            # Asterisk still accepts SET VARIABLE on a dead channel (for the h extension).
            await self._best_effort_set(VAR_IVR_RESULT, "hangup")
        except Exception:
            self.log.exception("ivr.failed", stage=self.stage)
            await self._best_effort_set(VAR_IVR_RESULT, "error")
            raise

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

    async def _set_stage(self, stage: str) -> None:
        self.stage = stage
        if stage != self._reported_stage:
            self._reported_stage = stage
            self._write("update_call", stage=stage)

    async def _play_and_collect(self, action: PlayAndCollect) -> str:
        await self._set_stage(action.stage)
        for prompt in action.prompts:
            digit = await self.channel.stream_file(prompt, action.escape_digits)
            if digit:
                return digit
        await self._set_stage("menu")
        return await self.channel.wait_for_digit(action.timeout_ms)

    async def _route(self, action: RouteToQueue) -> None:
        self.stage = self._reported_stage = "queue"
        self.log.info(
            "ivr.routed",
            queue=action.queue,
            intent=action.intent,
            digits=action.digits,
            reason=action.reason,
            keys=self.engine.pressed,
        )
        self._write(
            "update_call",
            stage="queue",
            ivr_digits=action.digits,
            ivr_intent=action.intent,
            queue=action.queue,
            priority=int(action.priority),
        )
        await self.channel.set_variable(VAR_QUEUE, action.queue)
        await self.channel.set_variable(VAR_IVR_DIGITS, action.digits)
        await self.channel.set_variable(VAR_IVR_INTENT, action.intent)
        await self.channel.set_variable(VAR_PRIORITY, int(action.priority))
        await self.channel.set_variable(VAR_IVR_RESULT, "ok")

    async def _hang_up(self, action: HangUp) -> None:
        for prompt in action.prompts:
            await self.channel.stream_file(prompt)
        await self.channel.set_variable(VAR_IVR_RESULT, "ok")
        await self.channel.hangup()

    def _write(self, method: str, **fields: Any) -> None:
        """Hand a write for this call to the writer; returns at once, never fails the call."""
        try:
            self.writer.submit(self.call_id, method, self.call_id, **fields)
        except Exception as exc:  # a programming error; the call still goes on
            self.log.error("ivr.write_refused", method=method, stage=self.stage, error=repr(exc))

    async def _best_effort_set(self, name: str, value: str) -> None:
        try:
            async with asyncio.timeout(BEST_EFFORT_TIMEOUT_S):
                await self.channel.set_variable(name, value)
        except (AgiError, TimeoutError, OSError) as exc:
            self.log.debug("ivr.set_variable_skipped", name=name, error=repr(exc))
