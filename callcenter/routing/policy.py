"""Pure routing policy: which agent takes a call, which call an agent takes next.

No I/O and no clock of its own: every function gets ``now`` from its caller, so
the rules are tested without Asterisk, a database or sleeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

AgentState = Literal["logged_out", "available", "ringing", "busy", "wrap_up", "paused"]
AGENT_STATES: tuple[AgentState, ...] = (
    "logged_out",
    "available",
    "ringing",
    "busy",
    "wrap_up",
    "paused",
)

# The queue every agent serves, whatever their skills (IVR key 0, fallbacks).
GENERAL_QUEUE = "general"


@dataclass(slots=True)
class AgentInfo:
    """An agent as routing sees it.

    ``skills`` are queue names. ``idle_since`` is when the agent last became
    available (the database's ``state_since``); ``priority``: higher is offered
    calls first when several agents are free.
    """

    id: str
    name: str
    endpoint: str
    skills: tuple[str, ...] = ()
    state: AgentState = "logged_out"
    idle_since: datetime | None = None
    priority: int = 0

    def serves(self, queue: str) -> bool:
        return queue == GENERAL_QUEUE or queue in self.skills


@dataclass(slots=True)
class WaitingCall:
    """A caller waiting in a queue for an agent."""

    call_id: str
    queue: str
    priority: int
    queued_at: datetime
    # Agents that already rang for this call without answering; tried last.
    tried_agents: frozenset[str] = field(default_factory=frozenset)

    def wait_s(self, now: datetime) -> float:
        return max(0.0, (now - self.queued_at).total_seconds())


def _idle_key(agent: AgentInfo) -> tuple[int, float]:
    # Higher priority first, then the longest idle (oldest idle_since) first;
    # an agent without idle_since counts as idle for the longest.
    idle = agent.idle_since.timestamp() if agent.idle_since else float("-inf")
    return (-agent.priority, idle)


def pick_agent(
    queue: str,
    agents: Iterable[AgentInfo],
    now: datetime,
    *,
    exclude: Iterable[str] = (),
) -> AgentInfo | None:
    """The available agent that should take a call of ``queue``, or None.

    Only ``available`` agents with the queue's skill qualify (any agent serves
    the ``general`` queue). Among them: highest agent priority, then the longest
    idle. Agents in ``exclude`` (already tried for this call) are skipped.
    ``now`` is accepted for symmetry and future rules (e.g. minimum rest time).
    """
    del now
    skipped = set(exclude)
    candidates = [
        a for a in agents if a.state == "available" and a.serves(queue) and a.id not in skipped
    ]
    if not candidates:
        return None
    return min(candidates, key=_idle_key)


def _call_key(call: WaitingCall) -> tuple[int, float, str]:
    return (-call.priority, call.queued_at.timestamp(), call.call_id)


def order_waiting(waiting: Iterable[WaitingCall]) -> list[WaitingCall]:
    """Waiting calls in service order: highest priority, then longest wait."""
    return sorted(waiting, key=_call_key)


def next_call(
    waiting: Iterable[WaitingCall], agent: AgentInfo, now: datetime
) -> WaitingCall | None:
    """The waiting call ``agent`` should take next, or None.

    Only calls of queues the agent serves; highest call priority first (VIP and
    P1 callers get a higher CC_PRIORITY), then the longest wait. Calls that
    already rang this agent unanswered come after all others.
    """
    del now
    eligible = [c for c in waiting if agent.serves(c.queue)]
    if not eligible:
        return None
    fresh = [c for c in eligible if agent.id not in c.tried_agents]
    return min(fresh or eligible, key=_call_key)


def queue_stats(
    queues: Sequence[str],
    waiting: Iterable[WaitingCall],
    agents: Iterable[AgentInfo],
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """Live figures per queue: calls waiting, longest wait (s), agents by state.

    An agent counts for every queue they serve (so for ``general`` always).
    """
    waiting = list(waiting)
    agents = list(agents)
    stats: dict[str, dict[str, Any]] = {}
    for queue in queues:
        calls = [c for c in waiting if c.queue == queue]
        serving = [a for a in agents if a.serves(queue)]
        stats[queue] = {
            "waiting": len(calls),
            "longest_wait_s": round(max((c.wait_s(now) for c in calls), default=0.0), 1),
            "agents_available": sum(1 for a in serving if a.state == "available"),
            "agents_busy": sum(1 for a in serving if a.state in ("ringing", "busy", "wrap_up")),
            "agents_logged_in": sum(1 for a in serving if a.state != "logged_out"),
        }
    return stats


def parse_priority(value: str | None, default: int = 0) -> int:
    """CC_PRIORITY as an int; anything unparsable falls back to ``default``."""
    if value is None:
        return default
    try:
        return int(value.strip())
    except ValueError:
        return default
