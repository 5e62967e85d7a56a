"""What the ACD machine asks the executor to do: ARI actions, store writes, timers.

ARI commands carry ``lane`` (the call they belong to): the executor runs one
lane's commands in order and different lanes side by side, so one slow request
never holds up another call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Answer:
    lane: str
    channel_id: str


@dataclass(frozen=True, slots=True)
class StartMoh:
    lane: str
    channel_id: str
    moh_class: str | None


@dataclass(frozen=True, slots=True)
class StopMoh:
    lane: str
    channel_id: str


@dataclass(frozen=True, slots=True)
class StartRinging:
    """Ringback to the caller: what a caller hears when music on hold fails."""

    lane: str
    channel_id: str


@dataclass(frozen=True, slots=True)
class Play:
    lane: str
    channel_id: str
    playback_id: str
    media: tuple[str, ...]  # "sound:callcenter/..." items, played in order


@dataclass(frozen=True, slots=True)
class StopPlayback:
    lane: str
    playback_id: str


@dataclass(frozen=True, slots=True)
class Originate:
    """Ring an agent. The channel runs the ``cc-agent`` dialplan on answer (which
    starts the per-leg recording) and then enters the app as ``agent,<call_id>``."""

    lane: str
    channel_id: str
    agent_id: str
    endpoint: str
    call_id: str
    timeout_s: float
    caller_id: str | None
    variables: dict[str, str] = field(default_factory=dict)
    # Ring this endpoint instead when it is registered now (the agent's browser
    # softphone); the executor asks Asterisk, so presence needs no subscription.
    prefer: str | None = None


@dataclass(frozen=True, slots=True)
class Hangup:
    lane: str
    channel_id: str
    reason: str = "normal"


@dataclass(frozen=True, slots=True)
class ContinueInDialplan:
    """The channel leaves the app for a dialplan context (the survey after a call)."""

    lane: str
    channel_id: str
    context: str


@dataclass(frozen=True, slots=True)
class Bridge:
    """Create the call's mixing bridge and put the channels in it."""

    lane: str
    bridge_id: str
    channel_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DestroyBridge:
    lane: str
    bridge_id: str


@dataclass(frozen=True, slots=True)
class SetVar:
    lane: str
    channel_id: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Write:
    """A store write, run by the ordered write-behind (``key``: the call or agent)."""

    key: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StartTimer:
    key: tuple[str, ...]
    delay_s: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Changed:
    """Live figures changed (subscribers are told; the executor coalesces these)."""

    what: str


AriCommand = (
    Answer | StartMoh | StopMoh | StartRinging | Play | StopPlayback | Originate | Hangup
    | ContinueInDialplan | Bridge | DestroyBridge | SetVar
)
Command = AriCommand | Write | StartTimer | CancelTimer | Changed
