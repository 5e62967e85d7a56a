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
            if skill_level(agent.skills, queue) is not None:
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
