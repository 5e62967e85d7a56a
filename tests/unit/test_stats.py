"""Supervisor figures with the spec's metric names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callcenter.stats import (
    CallTimes,
    StateChange,
    interval_figures,
    occupancy,
    period_figures,
    time_in_state,
)

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _call(wait: float | None, talk: float | None, queued: bool = True) -> CallTimes:
    answered = T0 + timedelta(seconds=wait) if wait is not None else None
    ended = (answered + timedelta(seconds=talk)) if answered and talk is not None else (
        T0 + timedelta(seconds=60))
    return CallTimes(T0 if queued else None, answered, ended)


def test_figures_follow_the_spec_definitions() -> None:
    calls = [_call(5, 100), _call(15, 200), _call(40, 300), _call(None, None),
             _call(None, None, queued=False)]  # the last never asked for an agent
    figures = period_figures(calls, threshold_s=20)
    assert figures["calls_for_agent"] == 4 and figures["answered"] == 3
    assert figures["answer_rate"] == 75.0
    # answered within X / answered (the definition): 2 of 3
    assert figures["service_level"] == 66.7 and figures["service_level_threshold_s"] == 20
    assert figures["abandon_rate"] == 25.0
    assert figures["asa"] == 20.0
    assert figures["aht"] == 200.0


def test_no_calls_gives_no_figures_rather_than_zero() -> None:
    figures = period_figures([])
    assert figures["answer_rate"] is None and figures["asa"] is None
    assert figures["calls_for_agent"] == 0


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_sl2_and_short_abandons() -> None:
    calls = [
        CallTimes(_at(0), _at(10), _at(100), "repair", "answered"),   # within 20 s
        CallTimes(_at(0), _at(30), _at(100), "repair", "answered"),   # late
        CallTimes(_at(0), None, _at(3), "repair", "abandoned"),       # short abandon
        CallTimes(_at(0), None, _at(12), "repair", "abandoned"),      # abandoned within 20 s
        CallTimes(_at(0), None, _at(50), "repair", "abandoned"),      # abandoned late
        CallTimes(_at(0), None, _at(300), "repair", "callback"),      # call-back: not abandoned
    ]
    f = period_figures(calls, threshold_s=20, short_abandon_s=5)
    assert f["abandoned"] == 3 and f["short_abandons"] == 1 and f["callbacks"] == 1
    assert f["abandon_rate"] == 50.0  # 3 of 6
    assert f["service_level"] == 50.0  # 1 of 2 answered
    # (1 answered within + 1 abandoned within) / (2 answered + 2 counted abandons)
    assert f["sl2"] == 50.0


def test_time_in_state_and_occupancy() -> None:
    changes = [
        StateChange("a", "available", _at(-100)),  # the state the interval opens in
        StateChange("a", "on_call", _at(60)),
        StateChange("a", "wrap_up", _at(240)),
        StateChange("a", "paused", _at(270)),
        StateChange("a", "available", _at(570)),
    ]
    spent = time_in_state(changes, _at(0), _at(900))
    assert spent["a"] == {"available": 60 + 330, "on_call": 180, "wrap_up": 30, "paused": 300}
    assert occupancy(spent["a"]) == round(100 * 210 / 600, 1)


def test_interval_figures_per_queue() -> None:
    calls = [
        CallTimes(_at(10), _at(15), _at(70), "repair", "answered"),
        CallTimes(_at(20), None, _at(60), "complaint", "abandoned"),
        CallTimes(_at(1000), _at(1030), _at(1100), "repair", "answered"),
    ]
    rows = interval_figures(calls, [], _at(0), _at(1800))
    assert len(rows) == 2
    assert rows[0]["all"]["calls_for_agent"] == 2
    assert rows[0]["queues"]["repair"]["asa"] == 5.0
    assert rows[0]["queues"]["complaint"]["abandon_rate"] == 100.0
    assert rows[1]["queues"]["repair"]["service_level"] == 0.0
    assert rows[0]["occupancy"] is None  # no agent history
