"""Which available agents a waiting call is offered to (pure).

Each strategy orders the eligible agents; the machine takes the first (or, for
``ring_all``, every one). With ``prefer_level`` only the agents with the best
skill level for the queue are considered, so a specialist gets the call before a
generalist whenever one is free.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from callcenter.acd.queues import QueueConfig


@dataclass(frozen=True, slots=True)
class Candidate:
    """An available agent as a strategy sees it."""

    agent_id: str
    level: int  # the agent's level in the queue's skills (lowest of them); 1 for general
    idle_since: datetime  # when the agent last became available
    calls_answered: int  # since logging in


def skill_level(skills: dict[str, int], queue: QueueConfig) -> int | None:
    """The agent's level for the queue, or None when they may not take its calls."""
    if not queue.skills:
        return max(skills.values(), default=1) if skills else 1
    levels = []
    for skill, minimum in queue.skills.items():
        level = skills.get(skill)
        if level is None or level < minimum:
            return None
        levels.append(level)
    return min(levels)


def choose(
    queue: QueueConfig,
    candidates: Sequence[Candidate],
    *,
    last_offered: str | None,
    rng: random.Random,
) -> list[str]:
    """The agent ids to ring for one call of ``queue``, best first (empty: nobody)."""
    if not candidates:
        return []
    pool = list(candidates)
    if queue.prefer_level:
        best = max(c.level for c in pool)
        pool = [c for c in pool if c.level == best]
    if queue.strategy == "ring_all":
        return sorted(c.agent_id for c in pool)
    if queue.strategy == "random":
        return [rng.choice(sorted(pool, key=lambda c: c.agent_id)).agent_id]
    if queue.strategy == "round_robin":
        ids = sorted(c.agent_id for c in pool)
        after = [i for i in ids if last_offered is not None and i > last_offered]
        return [(after or ids)[0]]
    if queue.strategy == "fewest_calls":
        return [min(pool, key=lambda c: (c.calls_answered, c.idle_since, c.agent_id)).agent_id]
    return [min(pool, key=lambda c: (c.idle_since, c.agent_id)).agent_id]  # longest_idle
