"""What the ACD machine reacts to: ARI happenings, timers, people's requests.

Every event carries ``at``, the time it happened (an ARI event's own timestamp,
a timer's due time), never the time the service got round to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class CallerArrived:
    """A caller entered the Stasis app (``Stasis(hotline,inbound|fallback,...)``)."""

    at: datetime
    channel_id: str
    channel_name: str
    call_id: str  # from the IVR; empty when it could not make one (a fresh id is taken)
    caller_number: str
    queue: str
    priority: int
    answered: bool  # the channel is Up already (the IVR answered)
    kind: str = "inbound"  # inbound | fallback


@dataclass(frozen=True, slots=True)
class AgentAnswered:
    """An agent channel we originated answered and entered the app."""

    at: datetime
    channel_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class ChannelGone:
    """A channel left the app or hung up (StasisEnd, ChannelHangupRequest, ChannelDestroyed)."""

    at: datetime
    channel_id: str
    cause: int | None = None
    destroyed: bool = False  # ChannelDestroyed: the channel no longer exists at all


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    at: datetime
    playback_id: str


@dataclass(frozen=True, slots=True)
class TimerFired:
    at: datetime
    key: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CommandFailed:
    """An ARI command the machine cares about failed (``gone``: 404, the channel left)."""

    at: datetime
    command: Any
    gone: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """An agent's definition and last persisted state, as the store has it."""

    id: str
    name: str
    endpoint: str
    skills: dict[str, int]
    state: str = "logged_out"
    reason: str | None = None
    since: datetime | None = None
    queues_off: frozenset[str] = frozenset()  # queues the agent left (join/leave)


@dataclass(frozen=True, slots=True)
class AgentsLoaded:
    """Agent definitions (at start, and whenever an agent was added or changed).

    ``adopt_state``: take the persisted states too (at start, when nothing is live)."""

    at: datetime
    agents: tuple[AgentSpec, ...]
    adopt_state: bool = False


# What a person may ask for an agent (AgentRequest.action).
AGENT_ACTIONS = ("login", "logout", "pause", "unpause", "ready", "join", "leave", "survey")


@dataclass(frozen=True, slots=True)
class AgentRequest:
    """A person (or their phone) asks to change an agent's state.

    action: login | logout | pause | unpause | ready (end wrap-up now) | join | leave
    (one queue, named by ``reason``) | survey (the caller on the agent's call goes
    to the satisfaction survey, the agent to wrap-up)."""

    at: datetime
    agent_id: str
    action: str
    reason: str | None = None
    by: str = "system"


@dataclass(frozen=True, slots=True)
class LiveChannel:
    id: str
    name: str
    state: str  # Up, Ring, ...
    caller_number: str
    stasis_args: tuple[str, ...] | None  # None: not in our app


@dataclass(frozen=True, slots=True)
class ActiveRow:
    """An unfinished call as the store has it (after a restart of the service)."""

    call_id: str
    stage: str
    channel_id: str
    queue: str
    priority: int
    caller_number: str
    queued_at: datetime | None
    agent_id: str | None
    agent_channel_id: str | None
    answered_at: datetime | None


@dataclass(frozen=True, slots=True)
class Reconcile:
    """After every ARI (re)connection: what Asterisk and the store really hold."""

    at: datetime
    channels: dict[str, LiveChannel]
    rows: tuple[ActiveRow, ...] = field(default_factory=tuple)


Event = (
    CallerArrived | AgentAnswered | ChannelGone | PlaybackFinished | TimerFired | CommandFailed
    | AgentsLoaded | AgentRequest | Reconcile
)
