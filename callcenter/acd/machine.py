"""The automatic call distributor as a pure state machine: events in, commands out.

It owns the state of every live call and every agent. Nothing here does I/O or
reads a clock: each event says when it happened, and the machine answers with
commands (``callcenter.acd.commands``) that the executor performs (ARI, store
writes, timers). ``handle`` never raises for a surprising event; it logs and
leaves the state consistent.

A call: queued -> ringing (one offer, or several with ring_all) -> connected
-> ending -> gone. Another exit is ``callback`` (the maximum wait passed, or
nobody is logged in): a prompt, then the call ends with a call-back ticket.
An agent: logged_out, available, ringing, on_call, wrap_up, paused (reason).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from callcenter.acd import commands as cmd
from callcenter.acd import events as ev
from callcenter.acd.queues import GENERAL_QUEUE, QueueConfig, Rule
from callcenter.acd.strategies import Candidate, choose, skill_level
from callcenter.constants import CONTEXT_SURVEY, VAR_BRIDGED, VAR_CALL_ID, VAR_CALLER_CHANNEL
from callcenter.core import call_id_for_channel
from callcenter.sip.accounts import web_endpoint

log = logging.getLogger("callcenter.acd")

AGENT_STATES = ("logged_out", "available", "ringing", "on_call", "wrap_up", "paused")
# Hang-up causes of an offer that mean the phone is not there at all (not "did not answer").
UNREACHABLE_CAUSES = frozenset({3, 20, 27, 38})
# Announcements say numbers up to this; beyond it they say this number.
MAX_SPOKEN_NUMBER = 30
DEFAULT_AHT_S = 180.0


class CallState(StrEnum):
    QUEUED = "queued"
    RINGING = "ringing"
    CONNECTED = "connected"
    CALLBACK = "callback"  # hearing the call-back prompt before the line closes
    ENDING = "ending"  # waiting for the agent channel to close (the recording with it)


# The store's stage of a call in each live state.
STAGE = {
    CallState.QUEUED: "queue",
    CallState.RINGING: "ringing",
    CallState.CONNECTED: "conversation",
    CallState.CALLBACK: "queue",
}


def recording_path(call_id: str, leg: str) -> str:
    """Where a leg's recording lands, relative to the recordings folder. The
    ``cc-agent`` dialplan (docker/asterisk/extensions.conf) writes the same names."""
    return f"{call_id}/{leg}.wav"


def bridge_id_of(call_id: str) -> str:
    # Deterministic, so a restarted service finds the bridge of a call it re-adopts.
    return f"{call_id}-bridge"


@dataclass
class Agent:
    id: str
    name: str
    endpoint: str
    skills: dict[str, int]
    state: str = "logged_out"
    reason: str | None = None
    since: datetime | None = None
    calls_answered: int = 0
    call_id: str | None = None  # the call it rings for or talks on
    pending: tuple[str, str | None] | None = None  # ("pause"|"logout", reason) after the call
    wrap_up: tuple[str, datetime] | None = None  # (call id, until) while in wrap-up
    queues_off: frozenset[str] = frozenset()  # queues they have skills for but left

    def serves(self, queue: QueueConfig) -> int | None:
        """The agent's skill level for the queue, or None: no skill, or they left it."""
        return None if queue.name in self.queues_off else skill_level(self.skills, queue)


@dataclass
class Call:
    call_id: str
    channel_id: str
    channel_name: str
    caller_number: str
    queue: str
    priority: int
    queued_at: datetime
    state: CallState = CallState.QUEUED
    offers: dict[str, str] = field(default_factory=dict)  # agent channel -> agent id
    agent_id: str | None = None
    agent_channel: str | None = None
    answered_at: datetime | None = None
    media: str | None = None  # "moh" | "ring" | "playing" | None
    playback_id: str | None = None
    played: int = 0  # playbacks so far (unique playback ids)
    offers_made: int = 0  # agent channels so far (unique channel ids)
    max_wait_due: bool = False
    visited: list[str] = field(default_factory=list)  # queues before an overflow
    stage: str = "queue"  # where it ended (set when ending)
    hangup_by: str | None = None
    outcome: str | None = None
    ended_at: datetime | None = None
    closing: set[str] = field(default_factory=set)  # channels whose end we wait for
    to_survey: bool = False  # the caller was sent on to the satisfaction survey


class Machine:
    def __init__(
        self,
        queues: dict[str, QueueConfig],
        *,
        ring_timeout_s: float = 15.0,
        ring_grace_s: float = 3.0,
        wrap_up_s: float = 5.0,
        settle_s: float = 3.0,
        rng: random.Random | None = None,
    ) -> None:
        self.queues = queues
        self.ring_timeout_s = ring_timeout_s
        self.ring_grace_s = ring_grace_s
        self.wrap_up_s = wrap_up_s
        self.settle_s = settle_s
        self.rng = rng or random.Random(0)
        self.calls: dict[str, Call] = {}
        self.agents: dict[str, Agent] = {}
        self.channels: dict[str, tuple[str, str]] = {}  # channel -> (call id, caller|offer|agent)
        self.last_offered: dict[str, str] = {}  # queue -> agent id (round_robin)
        self.handled_s: list[float] = []  # recent handle times, for estimated waits
        self._out: list[cmd.Command] = []

    # ---- entry point ---------------------------------------------------------------

    def handle(self, event: ev.Event) -> list[cmd.Command]:
        self._out = []
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is None:
            log.warning("acd: no handler for %s", type(event).__name__)
        else:
            handler(event)
        out, self._out = self._out, []
        return out

    def _emit(self, *commands: cmd.Command) -> None:
        self._out.extend(commands)

    # ---- callers -------------------------------------------------------------------

    def _on_CallerArrived(self, e: ev.CallerArrived) -> None:
        if e.channel_id in self.channels:
            return  # already tracked (reconcile adopted it first)
        # Without the IVR's id (it failed before handing it over): the same derivation.
        call_id = e.call_id or call_id_for_channel(e.channel_id)
        if call_id in self.calls:
            log.warning("acd: call %s arrived twice (channel %s): ignored", call_id, e.channel_id)
            return
        queue = e.queue if e.queue in self.queues else GENERAL_QUEUE
        call = Call(call_id, e.channel_id, e.channel_name, e.caller_number, queue, e.priority,
                    queued_at=e.at)
        self._track(call)
        # The IVR normally opened the row already; opening is idempotent, and a call
        # the IVR could not record (a database outage) is opened here.
        self._write(call, "open_call", call_id, caller_number=e.caller_number,
                    channel_id=e.channel_id)
        self._write(call, "update_call", call_id, stage="queue", queue=queue,
                    priority=e.priority, channel_id=e.channel_id, queued_at=e.at)
        if not e.answered:
            self._emit(cmd.Answer(call_id, e.channel_id))
        log.info("call %s queued in %s (priority %d, %s)", call_id, queue, e.priority, e.kind)
        self._emit(cmd.Changed("calls"))
        self._start_waiting(call, e.at)

    def _track(self, call: Call) -> None:
        self.calls[call.call_id] = call
        self.channels[call.channel_id] = (call.call_id, "caller")

    def _start_waiting(self, call: Call, at: datetime) -> None:
        """Music on hold, the queue's timers, then an agent if one is free."""
        queue = self.queues[call.queue]
        self._moh(call)
        self._emit(cmd.StartTimer(("max_wait", call.call_id), queue.max_wait_s))
        if queue.announce_every_s > 0:
            self._emit(cmd.StartTimer(("announce", call.call_id), queue.announce_every_s))
        if queue.when_no_agents.action != "wait" and not self._anyone_logged_in(queue):
            self._apply(call, queue.when_no_agents, at)
            return
        self._dispatch(at)

    def _moh(self, call: Call) -> None:
        call.media = "moh"
        self._emit(cmd.StartMoh(call.call_id, call.channel_id, self.queues[call.queue].moh_class))

    def _silence_waiting_audio(self, call: Call) -> None:
        if call.media == "moh":
            self._emit(cmd.StopMoh(call.call_id, call.channel_id))
        elif call.media == "playing" and call.playback_id:
            self._emit(cmd.StopPlayback(call.call_id, call.playback_id))
        call.media = None
        call.playback_id = None

    def _anyone_logged_in(self, queue: QueueConfig) -> bool:
        return any(a.state != "logged_out" and a.serves(queue) is not None
                   for a in self.agents.values())

    # ---- dispatch ------------------------------------------------------------------

    def _waiting_in_order(self) -> list[Call]:
        waiting = [c for c in self.calls.values() if c.state == CallState.QUEUED]
        return sorted(waiting, key=lambda c: (-c.priority, c.queued_at, c.call_id))

    def _dispatch(self, at: datetime) -> None:
        """Offer waiting calls to free agents: highest priority first, FIFO within it;
        a call nobody can take does not hold up the calls behind it."""
        free = {a.id: a for a in self.agents.values() if a.state == "available"}
        if not free:
            return  # the usual case under load: nothing to sort
        for call in self._waiting_in_order():
            if not free:
                return
            queue = self.queues[call.queue]
            candidates = []
            for agent in free.values():
                level = agent.serves(queue)
                if level is not None:
                    candidates.append(Candidate(agent.id, level, agent.since or at,
                                                agent.calls_answered))
            chosen = choose(queue, candidates, last_offered=self.last_offered.get(queue.name),
                            rng=self.rng)
            if chosen:
                self._offer(call, [free.pop(agent_id) for agent_id in chosen], at)

    def _offer(self, call: Call, agents: list[Agent], at: datetime) -> None:
        call.state = CallState.RINGING
        for agent in agents:
            call.offers_made += 1
            channel_id = f"{call.call_id}-agent-{call.offers_made}"
            call.offers[channel_id] = agent.id
            self.channels[channel_id] = (call.call_id, "offer")
            agent.call_id = call.call_id
            self._set_agent(agent, "ringing", None, at, call.call_id)
            self.last_offered[call.queue] = agent.id
            number = call.caller_number
            self._emit(cmd.Originate(
                call.call_id, channel_id, agent.id, agent.endpoint, call.call_id,
                timeout_s=self.ring_timeout_s,
                caller_id=f'"{call.queue}" <{number}>' if number else None,
                variables={VAR_CALL_ID: call.call_id, VAR_CALLER_CHANNEL: call.channel_name},
                prefer=web_endpoint(agent.endpoint),  # the browser softphone, if registered
            ))
            log.info("call %s: ringing agent %s", call.call_id, agent.id)
        self._emit(cmd.StartTimer(("ring", call.call_id), self.ring_timeout_s + self.ring_grace_s))
        single = agents[0].id if len(agents) == 1 else None
        self._write(call, "update_call", call.call_id, stage="ringing", agent_id=single,
                    ringing_at=at)
        self._emit(cmd.Changed("calls"))

    def _offer_failed(self, call: Call, channel_id: str, reason: str, at: datetime) -> None:
        """One offer ended without an answer: the agent pauses, the call waits again."""
        agent_id = call.offers.pop(channel_id, None)
        self.channels.pop(channel_id, None)
        agent = self.agents.get(agent_id or "")
        if agent is not None and agent.state == "ringing" and agent.call_id == call.call_id:
            agent.call_id = None
            self._set_agent(agent, "paused", reason, at, call.call_id)
            log.info("call %s: agent %s did not answer (%s): paused", call.call_id, agent.id,
                     reason)
        if call.offers or call.state != CallState.RINGING:
            return
        self._requeue(call, at)

    def _requeue(self, call: Call, at: datetime) -> None:
        call.state = CallState.QUEUED
        self._emit(cmd.CancelTimer(("ring", call.call_id)))
        self._write(call, "update_call", call.call_id, stage="queue", agent_id=None)
        if call.max_wait_due:
            call.max_wait_due = False
            self._apply(call, self.queues[call.queue].on_max_wait, at)
        else:
            self._dispatch(at)
        self._emit(cmd.Changed("calls"))

    def _cancel_offers(self, call: Call, at: datetime) -> None:
        """Withdraw every ringing offer (someone else answered, or the caller left):
        not the agents' fault, so they are simply available again."""
        for channel_id, agent_id in list(call.offers.items()):
            self.channels.pop(channel_id, None)
            self._emit(cmd.Hangup(call.call_id, channel_id))
            agent = self.agents.get(agent_id)
            if agent is not None and agent.state == "ringing" and agent.call_id == call.call_id:
                agent.call_id = None
                self._become_free(agent, at)
        call.offers.clear()

    # ---- the agent answers ---------------------------------------------------------

    def _on_AgentAnswered(self, e: ev.AgentAnswered) -> None:
        call = self.calls.get(e.call_id)
        if call is None or call.state != CallState.RINGING or e.channel_id not in call.offers:
            # The caller left, another agent was faster, or the offer timed out.
            log.info("agent channel %s for call %s not wanted: hanging up", e.channel_id,
                     e.call_id)
            self._emit(cmd.Hangup(e.call_id or "orphans", e.channel_id))
            return
        agent_id = call.offers.pop(e.channel_id)
        self._cancel_offers(call, e.at)
        agent = self.agents.get(agent_id)
        self._connect(call, agent_id, e.channel_id, e.at)
        if agent is not None:
            agent.calls_answered += 1
            agent.call_id = call.call_id
            self._set_agent(agent, "on_call", None, e.at, call.call_id)

    def _connect(self, call: Call, agent_id: str, channel_id: str, at: datetime) -> None:
        call.state = CallState.CONNECTED
        call.agent_id = agent_id
        call.agent_channel = channel_id
        call.answered_at = at
        self.channels[channel_id] = (call.call_id, "agent")
        for timer in ("ring", "max_wait", "announce"):
            self._emit(cmd.CancelTimer((timer, call.call_id)))
        self._silence_waiting_audio(call)
        lane = call.call_id
        self._emit(cmd.Bridge(lane, bridge_id_of(call.call_id), (call.channel_id, channel_id)))
        for channel in (call.channel_id, channel_id):
            self._emit(cmd.SetVar(lane, channel, VAR_BRIDGED, "1"))
        self._write(call, "update_call", call.call_id, stage="conversation", agent_id=agent_id,
                    answered_at=at)
        # Both legs are recorded by one MixMonitor started on the agent channel at
        # answer (before it entered the app): they start together, at ``at``.
        for leg, leg_channel in (("caller", call.channel_id), ("agent", channel_id)):
            self._write(call, "add_leg", call.call_id, leg, channel_id=leg_channel,
                        recording_name=recording_path(call.call_id, leg),
                        agent_id=agent_id if leg == "agent" else None, started_at=at)
        log.info("call %s: agent %s answered", call.call_id, agent_id)
        self._emit(cmd.Changed("calls"))

    # ---- channels leave ------------------------------------------------------------

    def _on_ChannelGone(self, e: ev.ChannelGone) -> None:
        entry = self.channels.get(e.channel_id)
        if entry is None:
            return
        call = self.calls.get(entry[0])
        if call is None:
            self.channels.pop(e.channel_id, None)
            return
        role = entry[1]
        if call.state == CallState.ENDING:
            if e.destroyed:
                self._closed(call, e.channel_id)
            return
        if role == "offer":
            reason = "unreachable" if e.cause in UNREACHABLE_CAUSES else "no_answer"
            self._offer_failed(call, e.channel_id, reason, e.at)
        elif role == "caller" and call.to_survey:
            # Left for the survey: the caller's channel lives on in the dialplan.
            self._end(call, e.at, hangup_by=None, gone={e.channel_id})
        elif role == "caller":
            self._end(call, e.at, hangup_by="caller", gone={e.channel_id} if e.destroyed else set())
        elif role == "agent":
            self._end(call, e.at, hangup_by="agent", gone={e.channel_id} if e.destroyed else set())

    def _end(self, call: Call, at: datetime, *, hangup_by: str | None,
             gone: set[str] | None = None, outcome: str | None = None) -> None:
        """The call is over: release the agent, hang up what is left, and finish the
        row once the agent channel (and with it the recording) has closed."""
        was = call.state
        call.stage = STAGE.get(was, "queue")
        call.hangup_by = hangup_by
        call.ended_at = at
        call.outcome = outcome or call.outcome or (
            "answered" if was == CallState.CONNECTED else "abandoned")
        call.state = CallState.ENDING
        for timer in ("ring", "max_wait", "announce"):
            self._emit(cmd.CancelTimer((timer, call.call_id)))
        self._cancel_offers(call, at)
        lane = call.call_id
        gone = gone or set()
        if was == CallState.CONNECTED:
            agent = self.agents.get(call.agent_id or "")
            if agent is not None and agent.call_id == call.call_id:
                agent.call_id = None
                self._wrap_up(agent, call, at)
            if call.answered_at is not None:
                self.handled_s = [*self.handled_s[-49:], (at - call.answered_at).total_seconds()]
            self._emit(cmd.DestroyBridge(lane, bridge_id_of(call.call_id)))
        leaver = {"caller": call.channel_id, "agent": call.agent_channel}.get(hangup_by or "")
        for channel in (call.channel_id, call.agent_channel):
            if channel and channel not in gone and channel != leaver:
                self._emit(cmd.Hangup(lane, channel))
        if call.agent_channel and call.agent_channel not in gone:
            call.closing.add(call.agent_channel)  # its MixMonitor closes the recordings
        log.info("call %s: ended in %s (%s), hangup by %s", call.call_id, call.stage,
                 call.outcome, hangup_by)
        if call.closing:
            self._emit(cmd.StartTimer(("settle", call.call_id), self.settle_s))
        else:
            self._finish(call)
        self._emit(cmd.Changed("calls"))

    def _closed(self, call: Call, channel_id: str) -> None:
        call.closing.discard(channel_id)
        if not call.closing:
            self._emit(cmd.CancelTimer(("settle", call.call_id)))
            self._finish(call)

    def _finish(self, call: Call) -> None:
        self._write(call, "finish_call", call.call_id, stage=call.stage, hangup_by=call.hangup_by,
                    ended_at=call.ended_at, outcome=call.outcome)
        self.calls.pop(call.call_id, None)
        for channel, (call_id, _) in list(self.channels.items()):
            if call_id == call.call_id:
                self.channels.pop(channel, None)

    # ---- agents --------------------------------------------------------------------

    def _set_agent(self, agent: Agent, state: str, reason: str | None, at: datetime,
                   call_id: str | None = None) -> None:
        if agent.state == state and agent.reason == reason:
            return
        was = agent.state
        agent.state, agent.reason, agent.since = state, reason, at
        if state != "wrap_up":
            agent.wrap_up = None
        self._emit(
            cmd.Write(f"agent:{agent.id}", "record_agent_state", (agent.id,),
                      {"from_state": was, "to_state": state, "reason": reason, "at": at,
                       "call_id": call_id}),
            cmd.Changed("agents"),
        )

    def _wrap_up(self, agent: Agent, call: Call, at: datetime) -> None:
        queue = self.queues.get(call.queue)
        seconds = queue.wrap_up_s if queue and queue.wrap_up_s is not None else self.wrap_up_s
        if seconds <= 0:
            self._become_free(agent, at)
            return
        self._set_agent(agent, "wrap_up", None, at, call.call_id)
        agent.wrap_up = (call.call_id, at + timedelta(seconds=seconds))
        self._emit(cmd.StartTimer(("wrap_up", agent.id), seconds))

    def _become_free(self, agent: Agent, at: datetime) -> None:
        """After a call or a withdrawn offer: a pause or logout asked for meanwhile
        applies now, otherwise the agent is available and may get a call at once."""
        pending, agent.pending = agent.pending, None
        if pending is not None:
            action, reason = pending
            self._set_agent(agent, "logged_out" if action == "logout" else "paused", reason, at)
            return
        self._set_agent(agent, "available", None, at)
        self._dispatch(at)

    def _on_AgentsLoaded(self, e: ev.AgentsLoaded) -> None:
        for spec in e.agents:
            agent = self.agents.get(spec.id)
            if agent is None:
                state = spec.state if spec.state in AGENT_STATES else "logged_out"
                self.agents[spec.id] = Agent(spec.id, spec.name, spec.endpoint, dict(spec.skills),
                                             state, spec.reason, spec.since or e.at,
                                             queues_off=spec.queues_off)
            else:
                # Definitions only: the queues an agent left are the machine's own (the
                # store's copy may lag behind a leave whose write is still under way).
                agent.name, agent.endpoint, agent.skills = spec.name, spec.endpoint, dict(
                    spec.skills)
        known = {spec.id for spec in e.agents}
        for agent_id, agent in list(self.agents.items()):
            if agent_id not in known and agent.call_id is None:
                del self.agents[agent_id]  # removed from the store while idle
        self._emit(cmd.Changed("agents"))
        self._dispatch(e.at)

    def _on_AgentRequest(self, e: ev.AgentRequest) -> None:
        agent = self.agents.get(e.agent_id)
        if agent is None:
            log.warning("agent request %s for unknown agent %s", e.action, e.agent_id)
            return
        log.info("agent %s: %s (%s) by %s", agent.id, e.action, e.reason or "-", e.by)
        if e.action in ("login", "unpause"):
            agent.pending = None
            if agent.state in ("logged_out", "paused"):
                self._set_agent(agent, "available", None, e.at)
                self._dispatch(e.at)
        elif e.action in ("logout", "pause"):
            target = "logged_out" if e.action == "logout" else "paused"
            reason = e.reason if e.action == "pause" else None
            if agent.state in ("available", "paused", "logged_out"):
                if agent.state != "logged_out" or target == "logged_out":
                    self._set_agent(agent, target, reason, e.at)
            elif agent.state == "ringing":
                call = self.calls.get(agent.call_id or "")
                self._withdraw(agent, call, target, reason, e.at)
            else:  # on a call or in wrap-up: after it
                agent.pending = (e.action, reason)
        elif e.action == "survey":
            self._to_survey(agent)
        elif e.action == "ready" and agent.state == "wrap_up":
            self._emit(cmd.CancelTimer(("wrap_up", agent.id)))
            self._become_free(agent, e.at)
        elif e.action in ("join", "leave") and e.reason in self.queues:
            # In or out of one queue; a call already offered or on the line goes on.
            was = agent.queues_off
            agent.queues_off = (was - {e.reason} if e.action == "join" else was | {e.reason})
            if agent.queues_off != was:
                self._emit(cmd.Write(f"agent:{agent.id}", "set_agent_queues_off", (agent.id,),
                                     {"queues": sorted(agent.queues_off)}),
                           cmd.Changed("agents"))
                self._dispatch(e.at)

    def _to_survey(self, agent: Agent) -> None:
        """The agent ends the conversation by sending the caller to the survey: the
        caller's channel continues in the dialplan (its StasisEnd ends the call,
        without hanging the caller up)."""
        call = self.calls.get(agent.call_id or "")
        if call is None or call.state != CallState.CONNECTED or call.to_survey:
            log.warning("survey: agent %s has no call in conversation", agent.id)
            return
        call.to_survey = True
        self._emit(cmd.ContinueInDialplan(call.call_id, call.channel_id, CONTEXT_SURVEY))

    def _withdraw(self, agent: Agent, call: Call | None, target: str, reason: str | None,
                  at: datetime) -> None:
        """A ringing agent logs out or pauses: stop ringing them, the call waits again."""
        agent.call_id = None
        self._set_agent(agent, target, reason, at)
        if call is None:
            return
        for channel_id, agent_id in list(call.offers.items()):
            if agent_id == agent.id:
                call.offers.pop(channel_id)
                self.channels.pop(channel_id, None)
                self._emit(cmd.Hangup(call.call_id, channel_id))
        if not call.offers and call.state == CallState.RINGING:
            self._requeue(call, at)

    # ---- timers --------------------------------------------------------------------

    def _on_TimerFired(self, e: ev.TimerFired) -> None:
        kind, key = e.key[0], e.key[1] if len(e.key) > 1 else ""
        if kind == "wrap_up":
            agent = self.agents.get(key)
            if agent is not None and agent.state == "wrap_up":
                self._become_free(agent, e.at)
            return
        call = self.calls.get(key)
        if call is None:
            return
        if kind == "ring" and call.state == CallState.RINGING:
            for channel_id in list(call.offers):
                self._emit(cmd.Hangup(call.call_id, channel_id))
                self._offer_failed(call, channel_id, "no_answer", e.at)
        elif kind == "max_wait":
            if call.state == CallState.QUEUED:
                self._apply(call, self.queues[call.queue].on_max_wait, e.at)
            elif call.state == CallState.RINGING:
                call.max_wait_due = True  # let the ringing agent answer first
        elif kind == "announce" and call.state in (CallState.QUEUED, CallState.RINGING):
            self._announce(call)
        elif kind == "settle" and call.state == CallState.ENDING:
            log.warning("call %s: channels %s did not close in time", call.call_id,
                        sorted(call.closing))
            call.closing.clear()
            self._finish(call)
        elif kind == "callback" and call.state == CallState.CALLBACK:
            self._end(call, e.at, hangup_by=None, outcome="callback")

    def _announce(self, call: Call) -> None:
        """Position and estimated wait, then music again (re-armed each time)."""
        queue = self.queues[call.queue]
        self._emit(cmd.StartTimer(("announce", call.call_id), queue.announce_every_s))
        if call.media == "playing" or call.state != CallState.QUEUED:
            return
        position = self.position(call)
        minutes = self.estimated_wait_s(call) / 60.0
        spoken_minutes = max(1, min(MAX_SPOKEN_NUMBER, round(minutes)))
        media = (
            "sound:callcenter/position_before",
            f"sound:callcenter/num_{min(position, MAX_SPOKEN_NUMBER)}",
            "sound:callcenter/position_after",
            "sound:callcenter/wait_before",
            f"sound:callcenter/num_{spoken_minutes}",
            "sound:callcenter/wait_after",
        )
        self._play(call, media)

    def _play(self, call: Call, media: tuple[str, ...]) -> None:
        if call.media == "moh":
            self._emit(cmd.StopMoh(call.call_id, call.channel_id))
        call.played += 1
        call.playback_id = f"{call.call_id}-play-{call.played}"
        call.media = "playing"
        self._emit(cmd.Play(call.call_id, call.channel_id, call.playback_id, media))

    def _on_PlaybackFinished(self, e: ev.PlaybackFinished) -> None:
        call = next((c for c in self.calls.values() if c.playback_id == e.playback_id), None)
        if call is None:
            return
        call.playback_id = None
        call.media = None
        if call.state == CallState.CALLBACK:
            self._end(call, e.at, hangup_by=None, outcome="callback")
        elif call.state in (CallState.QUEUED, CallState.RINGING):
            self._moh(call)

    # ---- overflow and call-back ----------------------------------------------------

    def _apply(self, call: Call, rule: Rule, at: datetime) -> None:
        """The maximum wait passed, or nobody serves the queue: overflow or call back."""
        target = rule.target
        if rule.action == "overflow" and target and target not in call.visited:
            log.info("call %s: overflow %s -> %s", call.call_id, call.queue, target)
            call.visited.append(call.queue)
            call.queue = target
            self._write(call, "update_call", call.call_id, queue=target)
            queue = self.queues[target]
            self._emit(cmd.StartTimer(("max_wait", call.call_id), queue.max_wait_s))
            if queue.when_no_agents.action != "wait" and not self._anyone_logged_in(queue):
                self._apply(call, queue.when_no_agents, at)
            else:
                self._dispatch(at)
            self._emit(cmd.Changed("calls"))
            return
        if rule.action == "wait":
            self._dispatch(at)
            return
        log.info("call %s: call-back (waited since %s)", call.call_id, call.queued_at.isoformat())
        call.state = CallState.CALLBACK
        call.outcome = "callback"
        for timer in ("max_wait", "announce"):
            self._emit(cmd.CancelTimer((timer, call.call_id)))
        self._silence_waiting_audio(call)
        self._play(call, ("sound:callcenter/callback",))
        # Whatever happens to the prompt, the line closes.
        self._emit(cmd.StartTimer(("callback", call.call_id), 30.0))
        self._emit(cmd.Changed("calls"))

    # ---- ARI commands that failed --------------------------------------------------

    def _on_CommandFailed(self, e: ev.CommandFailed) -> None:
        c = e.command
        if isinstance(c, cmd.Originate):
            call = self.calls.get(c.call_id)
            if call is not None and c.channel_id in call.offers:
                self._offer_failed(call, c.channel_id, "no_answer" if e.gone else "unreachable",
                                   e.at)
            return
        call = self.calls.get(getattr(c, "lane", ""))
        if call is None or call.state == CallState.ENDING or e.gone:
            return  # a channel that left is reported by its own events
        if isinstance(c, cmd.StartMoh) and call.media == "moh":
            call.media = "ring"  # never silence: ringback instead
            self._emit(cmd.StartRinging(call.call_id, call.channel_id))
        elif isinstance(c, cmd.Play) and c.playback_id == call.playback_id:
            self._on_PlaybackFinished(ev.PlaybackFinished(e.at, c.playback_id))
        elif isinstance(c, cmd.Bridge):
            log.error("call %s: bridging failed: %s", call.call_id, e.error)
            self._end(call, e.at, hangup_by=None, outcome="failed")

    # ---- reconcile -----------------------------------------------------------------

    def _on_Reconcile(self, e: ev.Reconcile) -> None:
        """Align with what Asterisk and the store hold after a (re)connection."""
        live = e.channels
        for call in list(self.calls.values()):
            self._reconcile_call(call, live, e.at)
        for row in e.rows:
            if row.call_id not in self.calls:
                self._reconcile_row(row, live, e.at)
        for channel in live.values():
            if channel.id in self.channels or channel.stasis_args is None:
                continue
            kind = channel.stasis_args[0] if channel.stasis_args else "inbound"
            if kind != "agent":  # whatever else is in the app is a caller: serve them
                self._on_CallerArrived(caller_arrived(channel, e.at))
            else:
                log.info("reconcile: hanging up orphan %s (%s)", channel.id, channel.stasis_args)
                self._emit(cmd.Hangup("orphans", channel.id))
        busy = {c.agent_id for c in self.calls.values() if c.state == CallState.CONNECTED}
        busy |= {a for c in self.calls.values() for a in c.offers.values()}
        for agent in self.agents.values():
            if agent.state in ("ringing", "on_call") and agent.id not in busy:
                log.info("reconcile: agent %s %s without a call", agent.id, agent.state)
                agent.call_id = None
                self._become_free(agent, e.at)
            elif agent.state == "wrap_up":
                agent.wrap_up = (agent.wrap_up[0] if agent.wrap_up else "",
                                 e.at + timedelta(seconds=self.wrap_up_s))
                self._emit(cmd.StartTimer(("wrap_up", agent.id), self.wrap_up_s))
        self._dispatch(e.at)

    def _reconcile_call(self, call: Call, live: dict[str, ev.LiveChannel], at: datetime) -> None:
        if call.state == CallState.ENDING:
            for closing in list(call.closing):
                if closing not in live:
                    self._closed(call, closing)
            return
        if call.channel_id not in live:
            self._end(call, at, hangup_by="caller", gone={call.channel_id})
            return
        if call.state == CallState.RINGING:
            for channel_id in list(call.offers):
                channel = live.get(channel_id)
                if channel is None:
                    self._offer_failed(call, channel_id, "no_answer", at)
                elif channel.state == "Up" and channel.stasis_args is not None:
                    self._on_AgentAnswered(ev.AgentAnswered(at, channel_id, call.call_id))
                    return
        elif call.state == CallState.CONNECTED and call.agent_channel not in live:
            self._end(call, at, hangup_by="agent", gone={call.agent_channel or ""})

    def _reconcile_row(self, row: ev.ActiveRow, live: dict[str, ev.LiveChannel],
                       at: datetime) -> None:
        caller = live.get(row.channel_id)
        strays = [c for c in live if c.startswith(f"{row.call_id}-agent-")]
        if row.stage in ("greeting", "menu"):
            if caller is None:  # hung up inside the IVR while we were away
                self._emit(cmd.Write(row.call_id, "finish_call", (row.call_id,),
                                     {"stage": row.stage, "hangup_by": None, "ended_at": at,
                                      "outcome": "ivr"}))
            return
        if row.stage == "conversation" and caller is not None and row.agent_channel_id in live:
            self._adopt_conversation(row, caller, at)
            return
        for channel in strays:
            if caller is None or channel != row.agent_channel_id or row.stage != "conversation":
                self._emit(cmd.Hangup(row.call_id, channel))
        if caller is None or caller.stasis_args is None:
            if caller is not None:  # an answered call whose agent left: close it
                self._emit(cmd.Hangup(row.call_id, caller.id))
            hangup_by = "agent" if row.stage == "conversation" and caller is not None else None
            outcome = "answered" if row.stage == "conversation" else "abandoned"
            self._emit(cmd.Write(row.call_id, "finish_call", (row.call_id,),
                                 {"stage": row.stage, "hangup_by": hangup_by, "ended_at": at,
                                  "outcome": outcome}))
            return
        # Still waiting: queue it again, keeping when it first queued (its wait counts).
        call = Call(row.call_id, row.channel_id, caller.name, row.caller_number or
                    caller.caller_number, row.queue if row.queue in self.queues else GENERAL_QUEUE,
                    row.priority, queued_at=row.queued_at or at)
        self._track(call)
        self._write(call, "update_call", call.call_id, stage="queue", agent_id=None)
        log.info("reconcile: re-queueing waiting caller of %s", call.call_id)
        self._start_waiting(call, at)

    def _adopt_conversation(self, row: ev.ActiveRow, caller: ev.LiveChannel,
                            at: datetime) -> None:
        """A conversation that went on while we were away: follow it to its end
        (the bridge and the recording live in Asterisk, not in us)."""
        call = Call(row.call_id, row.channel_id, caller.name, row.caller_number,
                    row.queue if row.queue in self.queues else GENERAL_QUEUE, row.priority,
                    queued_at=row.queued_at or at, state=CallState.CONNECTED,
                    agent_id=row.agent_id, agent_channel=row.agent_channel_id,
                    answered_at=row.answered_at or at)
        self._track(call)
        if row.agent_channel_id:
            self.channels[row.agent_channel_id] = (call.call_id, "agent")
        agent = self.agents.get(row.agent_id or "")
        if agent is not None:
            agent.call_id = call.call_id
            self._set_agent(agent, "on_call", None, agent.since or at, call.call_id)
        log.info("reconcile: re-adopted conversation %s", call.call_id)

    # ---- helpers -------------------------------------------------------------------

    def _write(self, call: Call, method: str, *args: object, **kwargs: object) -> None:
        self._emit(cmd.Write(call.call_id, method, args, dict(kwargs)))

    # ---- figures (read-only) -------------------------------------------------------

    def position(self, call: Call) -> int:
        """1 for the next caller of its queue to be served."""
        same = [c for c in self._waiting_in_order() if c.queue == call.queue]
        return next((i for i, c in enumerate(same, 1) if c is call), len(same) + 1)

    def estimated_wait_s(self, call: Call) -> float:
        """Position x average handle time / agents serving the queue (logged in)."""
        queue = self.queues[call.queue]
        serving = sum(1 for a in self.agents.values()
                      if a.state not in ("logged_out", "paused")
                      and a.serves(queue) is not None)
        aht = sum(self.handled_s) / len(self.handled_s) if self.handled_s else DEFAULT_AHT_S
        return self.position(call) * aht / max(1, serving)

    def waiting_calls(self) -> Iterable[Call]:
        return (c for c in self.calls.values()
                if c.state in (CallState.QUEUED, CallState.RINGING, CallState.CALLBACK))


def caller_arrived(channel: ev.LiveChannel, at: datetime) -> ev.CallerArrived:
    """A caller channel found in the app (by reconcile) as an arrival event; its Stasis
    arguments carry the IVR's choices: ``inbound,<call_id>,<queue>,<priority>``."""
    args = channel.stasis_args or ()
    kind = args[0] if args else "inbound"
    call_id = args[1] if len(args) > 1 else ""
    queue = args[2] if len(args) > 2 and args[2] else GENERAL_QUEUE
    return ev.CallerArrived(at, channel.id, channel.name, call_id, channel.caller_number, queue,
                            parse_priority(args[3] if len(args) > 3 else None),
                            answered=channel.state == "Up", kind=kind)


def parse_priority(value: str | None, default: int = 0) -> int:
    try:
        return int(str(value).strip()) if value is not None else default
    except ValueError:
        return default
