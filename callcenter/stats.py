"""Supervisor figures over a period, with the spec's metric names (pure).

answer_rate     calls answered by an agent / calls that asked for an agent, in %
service_level   share of those answered within ``threshold_s`` (default 20 s), in %
abandon_rate    share of those that ended before an agent answered, in %
asa             average speed of answer: queue entry -> agent answer, seconds
aht             average handle time: agent answer -> call end, seconds
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from statistics import fmean
from typing import Any


@dataclass(frozen=True, slots=True)
class CallTimes:
    queued_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _mean(values: list[float]) -> float | None:
    return round(fmean(values), 1) if values else None


def period_figures(calls: list[CallTimes], *, threshold_s: float = 20.0) -> dict[str, Any]:
    """Figures for calls that asked for an agent (reached the queue) in a period."""
    asked = [c for c in calls if c.queued_at is not None]
    answered = [c for c in asked if c.answered_at is not None]
    waits = [(c.answered_at - c.queued_at).total_seconds() for c in answered
             if c.answered_at and c.queued_at]
    handled = [(c.ended_at - c.answered_at).total_seconds() for c in answered
               if c.ended_at and c.answered_at]
    abandoned = [c for c in asked if c.answered_at is None and c.ended_at is not None]
    return {
        "calls_for_agent": len(asked),
        "answered": len(answered),
        "answer_rate": _percent(len(answered), len(asked)),
        "service_level": _percent(sum(1 for w in waits if w <= threshold_s), len(asked)),
        "service_level_threshold_s": threshold_s,
        "abandon_rate": _percent(len(abandoned), len(asked)),
        "asa": _mean(waits),
        "aht": _mean(handled),
    }
