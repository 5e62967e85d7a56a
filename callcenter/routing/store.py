"""What the routing Stasis application needs from persistence.

``RoutingStore`` is the whole contract (PostgreSQL: ``callcenter.db.store.PgStore``);
``MemoryRoutingStore`` implements it in memory for tests and demos.

Every call state change is written through the store before the routing app
takes its next ARI action, so a restarted service can reconcile from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from callcenter.routing.policy import AGENT_STATES, AgentInfo, AgentState

# Fields update_call accepts from the routing app.
ROUTING_CALL_FIELDS = frozenset(
    {
        "stage",  # 'queue' | 'ringing' | 'conversation'
        "queue",  # queue name (callcenter.constants.QUEUES)
        "priority",  # int, higher served first
        "channel_id",  # the caller's ARI channel id
        "agent_id",  # the agent that answered (or is ringing)
        "queued_at",  # datetime (UTC) the caller entered the queue
        "answered_at",  # datetime (UTC) the agent answered
        "hangup_by",  # 'caller' | 'agent' | None
    }
)

# Stages the routing app owns (it re-adopts or finishes such calls on reconcile).
ROUTING_STAGES = ("queue", "ringing", "conversation")
# Stages of a caller still inside the IVR: reconcile leaves such a call alone while
# its channel lives, and finishes it (the caller hung up while we were away) when not.
IVR_STAGES = ("greeting", "menu")
# The stages of an unfinished call that active_calls returns.
ACTIVE_STAGES = IVR_STAGES + ROUTING_STAGES


class RoutingStore(Protocol):
    """Persistence used by ``RoutingApp``. All methods are coroutines."""

    async def open_call(self, call_id: str, *, caller_number: str, channel_id: str) -> None:
        """Create the call row if it does not exist (fallback calls without CC_CALL_ID)."""

    async def update_call(self, call_id: str, **fields: Any) -> None:
        """Set some of ``ROUTING_CALL_FIELDS`` on the call; unknown names are an error."""

    async def add_leg(
        self,
        call_id: str,
        leg: str,
        *,
        channel_id: str | None,
        recording_name: str | None = None,
        agent_id: str | None = None,
    ) -> None:
        """Record a leg ('caller'|'agent'): its channel and recording path.

        ``recording_name`` is relative to the recordings folder, with extension
        (e.g. ``<call_id>/caller.wav``).
        """

    async def finish_call(self, call_id: str, *, stage: str, hangup_by: str | None) -> bool:
        """End the call once (stage where it ended, who hung up) and queue its
        processing. Returns False when it was already finished."""
        ...

    async def agents(self) -> list[AgentInfo]:
        """All agents with their current state (logged-out ones included)."""
        ...

    async def set_agent_state(self, agent_id: str, state: str) -> None:
        """Set an agent's state (one of ``policy.AGENT_STATES``) and its state_since."""

    async def count_no_answer(self, agent_id: str) -> None:
        """Count one unanswered offer (ring timeout, busy, unreachable) for the agent."""

    async def active_calls(self) -> list[dict[str, Any]]:
        """Calls not finished yet whose stage is one of ``ACTIVE_STAGES`` (IVR stages
        included), as rows with at least: ``id`` (the call id), ``stage``,
        ``channel_id`` (caller's), ``queue``, ``priority``, ``queued_at``,
        ``agent_id``, ``caller_number``; optional ``leg_channels`` ({leg: channel id},
        dict or JSON text) and ``hangup_by``."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class MemoryCall:
    id: str
    caller_number: str = ""
    channel_id: str | None = None
    stage: str = "greeting"
    queue: str | None = None
    priority: int = 0
    agent_id: str | None = None
    queued_at: datetime | None = None
    answered_at: datetime | None = None
    hangup_by: str | None = None
    finished: bool = False
    finished_stage: str | None = None
    legs: dict[str, dict[str, Any]] = field(default_factory=dict)


class MemoryRoutingStore:
    """In-memory ``RoutingStore`` that also keeps a log of every write (``log``)."""

    def __init__(self, agents: list[AgentInfo] | None = None) -> None:
        self.calls: dict[str, MemoryCall] = {}
        self._agents: dict[str, AgentInfo] = {a.id: a for a in agents or []}
        self.no_answer: dict[str, int] = {}
        self.finished: list[tuple[str, str, str | None]] = []
        self.log: list[tuple[str, Any]] = []

    # calls ------------------------------------------------------------------------------

    async def open_call(self, call_id: str, *, caller_number: str, channel_id: str) -> None:
        self.log.append(("open_call", call_id))
        self.calls.setdefault(
            call_id, MemoryCall(call_id, caller_number=caller_number, channel_id=channel_id)
        )

    def _call(self, call_id: str) -> MemoryCall:
        # The IVR normally opened the call; tolerate calls it did not (like an upsert).
        return self.calls.setdefault(call_id, MemoryCall(call_id))

    async def update_call(self, call_id: str, **fields: Any) -> None:
        unknown = set(fields) - ROUTING_CALL_FIELDS
        if unknown:
            raise ValueError(f"update_call: unknown fields {sorted(unknown)}")
        self.log.append(("update_call", (call_id, dict(fields))))
        call = self._call(call_id)
        for name, value in fields.items():
            setattr(call, name, value)

    async def add_leg(
        self,
        call_id: str,
        leg: str,
        *,
        channel_id: str | None,
        recording_name: str | None = None,
        agent_id: str | None = None,
    ) -> None:
        if leg not in ("caller", "agent"):
            raise ValueError(f"add_leg: unknown leg {leg!r}")
        self.log.append(("add_leg", (call_id, leg, channel_id, recording_name)))
        self._call(call_id).legs[leg] = {
            "channel_id": channel_id,
            "recording_name": recording_name,
            "agent_id": agent_id,
        }

    async def finish_call(self, call_id: str, *, stage: str, hangup_by: str | None) -> bool:
        call = self._call(call_id)
        self.log.append(("finish_call", (call_id, stage, hangup_by)))
        if call.finished:
            return False
        call.finished = True
        call.finished_stage = stage
        call.stage = stage
        if hangup_by is not None or call.hangup_by is None:
            call.hangup_by = hangup_by
        self.finished.append((call_id, stage, call.hangup_by))
        return True

    async def active_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "stage": c.stage,
                "channel_id": c.channel_id,
                "queue": c.queue,
                "priority": c.priority,
                "queued_at": c.queued_at,
                "agent_id": c.agent_id,
                "caller_number": c.caller_number,
                "hangup_by": c.hangup_by,
                "leg_channels": {leg: d["channel_id"] for leg, d in c.legs.items()},
            }
            for c in self.calls.values()
            if not c.finished and c.stage in ACTIVE_STAGES
        ]

    # agents -----------------------------------------------------------------------------

    def add_agent(self, agent: AgentInfo) -> None:
        self._agents[agent.id] = agent

    async def agents(self) -> list[AgentInfo]:
        return [replace(a) for a in self._agents.values()]

    def agent(self, agent_id: str) -> AgentInfo:
        return self._agents[agent_id]

    async def set_agent_state(self, agent_id: str, state: str) -> None:
        self.log.append(("set_agent_state", (agent_id, state)))
        agent = self._agents[agent_id]
        agent.state = _agent_state(state)
        agent.idle_since = _now()

    async def count_no_answer(self, agent_id: str) -> None:
        self.log.append(("count_no_answer", agent_id))
        self.no_answer[agent_id] = self.no_answer.get(agent_id, 0) + 1


def _agent_state(state: str) -> AgentState:
    for known in AGENT_STATES:
        if known == state:
            return known
    raise ValueError(f"unknown agent state {state!r}")
