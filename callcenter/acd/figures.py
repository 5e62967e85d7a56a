"""Live figures from the ACD machine's own state (pure, read-only).

Per queue: calls waiting, the longest wait, agents by state (an agent counts for
every queue they may serve). Totals of calls by state, and every agent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from callcenter.acd.machine import AGENT_STATES, CallState, Machine
from callcenter.acd.strategies import skill_level


def live_snapshot(machine: Machine, now: datetime) -> dict[str, Any]:
    waiting = list(machine.waiting_calls())
    queues: dict[str, dict[str, Any]] = {}
    for name, queue in machine.queues.items():
        calls = [c for c in waiting if c.queue == name]
        by_state = dict.fromkeys(AGENT_STATES, 0)
        for agent in machine.agents.values():
            if agent.serves(queue) is not None:
                by_state[agent.state] = by_state.get(agent.state, 0) + 1
        longest = max(((now - c.queued_at).total_seconds() for c in calls), default=0.0)
        queues[name] = {
            "waiting": len(calls),
            "longest_wait_s": round(max(0.0, longest), 1),
            "agents": by_state,
            "agents_available": by_state["available"],
            "agents_busy": by_state["ringing"] + by_state["on_call"] + by_state["wrap_up"],
            "agents_logged_in": sum(n for s, n in by_state.items() if s != "logged_out"),
            "service_level_s": queue.service_level_s,
            "strategy": queue.strategy,
        }
    states = [c.state for c in machine.calls.values()]
    return {
        "at": now.isoformat(),
        "queues": queues,
        "calls": {
            "queued": states.count(CallState.QUEUED),
            "ringing": states.count(CallState.RINGING),
            "conversation": states.count(CallState.CONNECTED),
            "callback": states.count(CallState.CALLBACK),
        },
        "agents": {
            a.id: {"state": a.state, "reason": a.reason,
                   "since": a.since.isoformat() if a.since else None, "call_id": a.call_id,
                   "calls_answered": a.calls_answered}
            for a in sorted(machine.agents.values(), key=lambda a: a.id)
        },
    }


def agent_view(machine: Machine, agent_id: str, now: datetime) -> dict[str, Any] | None:
    """What one agent's console shows live: their state, the call offered to them or
    on the line, the wrap-up time left, and the queues they serve."""
    agent = machine.agents.get(agent_id)
    if agent is None:
        return None
    call = machine.calls.get(agent.call_id or "")
    wrap = None
    if agent.state == "wrap_up" and agent.wrap_up is not None:
        call_id, until = agent.wrap_up
        wrap = {"call_id": call_id or None, "until": until.isoformat(),
                "seconds_left": round(max(0.0, (until - now).total_seconds()), 1)}
    waiting = list(machine.waiting_calls())
    queues = {}
    for name, queue in machine.queues.items():
        if skill_level(agent.skills, queue) is None:
            continue
        mine = [c for c in waiting if c.queue == name]
        longest = max(((now - c.queued_at).total_seconds() for c in mine), default=0.0)
        queues[name] = {"waiting": len(mine), "longest_wait_s": round(max(0.0, longest), 1),
                        "in": name not in agent.queues_off}
    return {
        "agent_id": agent.id, "name": agent.name, "state": agent.state, "reason": agent.reason,
        "since": agent.since.isoformat() if agent.since else None,
        "calls_answered": agent.calls_answered,
        "pending": list(agent.pending) if agent.pending else None,
        "call": None if call is None else {
            "call_id": call.call_id, "caller_number": call.caller_number, "queue": call.queue,
            "priority": call.priority, "queued_at": call.queued_at.isoformat(),
            "ringing": agent.state == "ringing",
            "answered_at": call.answered_at.isoformat() if call.answered_at else None},
        "wrap_up": wrap,
        "queues": queues,
    }
