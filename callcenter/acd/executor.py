"""Performs the ACD machine's commands: ARI requests, store writes, timers.

- ARI commands run in lanes, one per call: a lane's commands run in order, lanes
  run side by side, so one slow request never holds up another call's events or
  actions. A lane exists only while it has work.
- Store writes go to the ordered write-behind (``Writer``): per key in order,
  retried through a database outage, never awaited on the event path.
- Timers feed ``TimerFired`` back into the machine; starting a timer with a key
  that is running replaces it.
- Failures the machine must know about (an originate, music on hold, a
  playback, a bridge) come back as ``CommandFailed``; a 404 means the channel
  left, which its own events report as well.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from callcenter.acd import commands as cmd
from callcenter.acd import events as ev
from callcenter.ari.client import AriClient, AriError, AriNotFound

log = logging.getLogger("callcenter.acd")

# The dialplan context an answered agent channel runs (recording, then the app).
AGENT_CONTEXT = "cc-agent"
# Failures of these commands are reported back to the machine.
async def _online(client: AriClient, endpoint: str) -> bool:
    """Whether an endpoint (``PJSIP/<user>-web``) has a registered contact now."""
    try:
        found = await client.get(f"/endpoints/{endpoint}")
    except AriError:  # unknown or unreachable: ring the usual phone
        return False
    return isinstance(found, dict) and found.get("state") == "online"


REPORTED = (cmd.Originate, cmd.StartMoh, cmd.Play, cmd.Bridge)


class Writer(Protocol):
    def submit(self, key: str, method: str, /, *args: Any, **kwargs: Any) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


class Executor:
    def __init__(
        self,
        client: AriClient,
        writer: Writer,
        feed: Callable[[ev.Event], None],
        *,
        on_change: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.client = client
        self.writer = writer
        self.feed = feed
        self.on_change = on_change
        self.clock = clock
        self._lanes: dict[str, deque[cmd.AriCommand]] = {}
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._timers: dict[tuple[str, ...], asyncio.TimerHandle] = {}
        self.ari_failures = 0

    def run(self, commands: list[cmd.Command]) -> None:
        """Start every command; returns at once (nothing here waits on I/O)."""
        for command in commands:
            if isinstance(command, cmd.Write):
                self.writer.submit(command.key, command.method, *command.args, **command.kwargs)
            elif isinstance(command, cmd.StartTimer):
                self._start_timer(command)
            elif isinstance(command, cmd.CancelTimer):
                handle = self._timers.pop(command.key, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(command, cmd.Changed):
                if self.on_change is not None:
                    self.on_change(command.what)
            else:
                self._enqueue(command)

    # ---- timers --------------------------------------------------------------------

    def _start_timer(self, command: cmd.StartTimer) -> None:
        old = self._timers.pop(command.key, None)
        if old is not None:
            old.cancel()
        due = self.clock() + timedelta(seconds=command.delay_s)
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(command.key, None)
            self.feed(ev.TimerFired(due, command.key))

        self._timers[command.key] = loop.call_later(max(0.0, command.delay_s), fire)

    def cancel_all(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # ---- lanes ---------------------------------------------------------------------

    def _enqueue(self, command: cmd.AriCommand) -> None:
        lane = self._lanes.get(command.lane)
        if lane is not None:
            lane.append(command)
            return
        self._lanes[command.lane] = deque([command])
        task = asyncio.create_task(self._drain(command.lane), name=f"acd-lane-{command.lane}")
        self._lane_tasks.add(task)
        task.add_done_callback(self._lane_tasks.discard)

    async def _drain(self, name: str) -> None:
        lane = self._lanes[name]
        try:
            while lane:
                await self._perform(lane[0])
                lane.popleft()
        finally:
            self._lanes.pop(name, None)

    async def idle(self) -> None:
        """Wait until every lane has run out of work (tests, shutdown)."""
        while self._lane_tasks:
            await asyncio.gather(*list(self._lane_tasks), return_exceptions=True)

    async def _perform(self, command: cmd.AriCommand) -> None:
        try:
            await self._ari(command)
        except AriNotFound as exc:
            log.debug("%s: gone (%s)", type(command).__name__, exc)
            self._report(command, gone=True, error=str(exc))
        except AriError as exc:
            self.ari_failures += 1
            log.warning("%s failed: %s", type(command).__name__, exc)
            self._report(command, gone=False, error=str(exc))
        except Exception as exc:  # a bug must not kill the lane (nor the other calls)
            self.ari_failures += 1
            log.exception("%s failed", type(command).__name__)
            self._report(command, gone=False, error=repr(exc))

    def _report(self, command: cmd.AriCommand, *, gone: bool, error: str) -> None:
        if isinstance(command, REPORTED):
            self.feed(ev.CommandFailed(self.clock(), command, gone=gone, error=error))

    async def _ari(self, c: cmd.AriCommand) -> None:
        client = self.client
        if isinstance(c, cmd.Answer):
            await client.answer(c.channel_id)
        elif isinstance(c, cmd.StartMoh):
            await client.start_moh(c.channel_id, c.moh_class)
        elif isinstance(c, cmd.StopMoh):
            await client.stop_moh(c.channel_id)
        elif isinstance(c, cmd.StartRinging):
            await client.ring(c.channel_id)
        elif isinstance(c, cmd.Play):
            await client.play(c.channel_id, c.playback_id, list(c.media))
        elif isinstance(c, cmd.StopPlayback):
            await client.stop_playback(c.playback_id)
        elif isinstance(c, cmd.Originate):
            endpoint = c.endpoint
            if c.prefer is not None and await _online(client, c.prefer):
                endpoint = c.prefer
            await client.originate_to_dialplan(
                endpoint, context=AGENT_CONTEXT, timeout_s=c.timeout_s, caller_id=c.caller_id,
                variables=c.variables, channel_id=c.channel_id,
            )
        elif isinstance(c, cmd.Hangup):
            await client.hangup(c.channel_id, c.reason)
        elif isinstance(c, cmd.ContinueInDialplan):
            await client.continue_in_dialplan(c.channel_id, c.context)
        elif isinstance(c, cmd.Bridge):
            try:
                await client.create_bridge("mixing", bridge_id=c.bridge_id)
            except AriError as exc:
                if exc.status != 409:  # 409: the call's bridge exists (re-adopted): use it
                    raise
            await client.add_to_bridge(c.bridge_id, list(c.channel_ids))
        elif isinstance(c, cmd.DestroyBridge):
            await client.destroy_bridge(c.bridge_id)
        elif isinstance(c, cmd.SetVar):
            await client.set_var(c.channel_id, c.name, c.value)
