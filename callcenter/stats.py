"""Supervisor figures with the spec's metric names (pure).

Over the calls that asked for an agent (reached a queue):
answer_rate     answered by an agent / asked, in %
service_level   answered within X / answered, in % (X reported as service_level_threshold_s)
sl2             (answered within X + abandoned within X) / (answered + abandoned), in %;
                abandons shorter than the short-abandon threshold count in neither
abandon_rate    abandoned / asked, in % (call-backs are not abandons: the caller is served)
asa             average speed of answer: queue entry -> agent answer, seconds
aht             average handle time: agent answer -> call end, seconds
occupancy       agents' time on calls and in wrap-up / their time on calls, in wrap-up,
                ringing or available (paused and logged-out time excluded), in %

``interval_figures`` cuts a period into intervals (15 minutes by default) per queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import fmean
from typing import Any

BUSY_STATES = ("on_call", "wrap_up")
STAFFED_STATES = ("on_call", "wrap_up", "ringing", "available")


@dataclass(frozen=True, slots=True)
class CallTimes:
    queued_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    queue: str | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class StateChange:
    agent_id: str
    to_state: str
    at: datetime


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _mean(values: list[float]) -> float | None:
    return round(fmean(values), 1) if values else None


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return (later - earlier).total_seconds() if later and earlier else None


def _abandoned(call: CallTimes) -> bool:
    return (call.answered_at is None and call.ended_at is not None
            and call.outcome not in ("callback", "failed"))


def period_figures(
    calls: Iterable[CallTimes], *, threshold_s: float = 20.0, short_abandon_s: float = 5.0
) -> dict[str, Any]:
    """Figures for calls that asked for an agent (reached the queue) in a period."""
    asked = [c for c in calls if c.queued_at is not None]
    answered = [c for c in asked if c.answered_at is not None]
    waits = [w for c in answered if (w := _seconds(c.answered_at, c.queued_at)) is not None]
    handled = [h for c in answered if (h := _seconds(c.ended_at, c.answered_at)) is not None]
    abandon_waits = [w for c in asked if _abandoned(c)
                     and (w := _seconds(c.ended_at, c.queued_at)) is not None]
    counted_abandons = [w for w in abandon_waits if w >= short_abandon_s]
    answered_within = sum(1 for w in waits if w <= threshold_s)
    return {
        "calls_for_agent": len(asked),
        "answered": len(answered),
        "abandoned": len(abandon_waits),
        "short_abandons": len(abandon_waits) - len(counted_abandons),
        "callbacks": sum(1 for c in asked if c.outcome == "callback"),
        "answer_rate": _percent(len(answered), len(asked)),
        "service_level": _percent(answered_within, len(answered)),
        "service_level_threshold_s": threshold_s,
        "sl2": _percent(answered_within + sum(1 for w in counted_abandons if w <= threshold_s),
                        len(answered) + len(counted_abandons)),
        "short_abandon_s": short_abandon_s,
        "abandon_rate": _percent(len(abandon_waits), len(asked)),
        "asa": _mean(waits),
        "aht": _mean(handled),
    }


def time_in_state(
    changes: Sequence[StateChange], start: datetime, end: datetime
) -> dict[str, dict[str, float]]:
    """Seconds each agent spent in each state within [start, end).

    ``changes`` must include, per agent, the last change before ``start`` (the state
    the interval opens in); an agent's last state lasts until ``end``."""
    by_agent: dict[str, list[StateChange]] = {}
    for change in sorted(changes, key=lambda c: c.at):
        by_agent.setdefault(change.agent_id, []).append(change)
    out: dict[str, dict[str, float]] = {}
    for agent_id, rows in by_agent.items():
        spent: dict[str, float] = {}
        for row, following in zip(rows, [*rows[1:], None], strict=True):
            since = max(row.at, start)
            until = min(following.at if following else end, end)
            if until > since:
                spent[row.to_state] = spent.get(row.to_state, 0.0) + (until - since).total_seconds()
        out[agent_id] = spent
    return out


def occupancy(spent: dict[str, float]) -> float | None:
    staffed = sum(spent.get(s, 0.0) for s in STAFFED_STATES)
    return _percent_f(sum(spent.get(s, 0.0) for s in BUSY_STATES), staffed)


def _percent_f(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole > 0 else None


def interval_figures(
    calls: Sequence[CallTimes],
    changes: Sequence[StateChange],
    start: datetime,
    end: datetime,
    *,
    interval: timedelta = timedelta(minutes=15),
    threshold_s: float = 20.0,
    short_abandon_s: float = 5.0,
) -> list[dict[str, Any]]:
    """Per interval: the figures of all calls and of each queue (a call counts in the
    interval it queued in), and the agents' occupancy in that interval."""
    rows = []
    at = start
    while at < end:
        until = min(at + interval, end)
        inside = [c for c in calls if c.queued_at is not None and at <= c.queued_at < until]
        queues = sorted({c.queue for c in inside if c.queue})
        spent = time_in_state(changes, at, until)
        totals: dict[str, float] = {}
        for agent in spent.values():
            for state, seconds in agent.items():
                totals[state] = totals.get(state, 0.0) + seconds
        rows.append({
            "start": at.isoformat(),
            "end": until.isoformat(),
            "all": period_figures(inside, threshold_s=threshold_s,
                                  short_abandon_s=short_abandon_s),
            "queues": {q: period_figures([c for c in inside if c.queue == q],
                                         threshold_s=threshold_s, short_abandon_s=short_abandon_s)
                       for q in queues},
            "occupancy": occupancy(totals),
        })
        at = until
    return rows
