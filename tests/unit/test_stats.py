"""Supervisor figures with the spec's metric names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callcenter.stats import CallTimes, period_figures

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
    assert figures["service_level"] == 50.0 and figures["service_level_threshold_s"] == 20
    assert figures["abandon_rate"] == 25.0
    assert figures["asa"] == 20.0
    assert figures["aht"] == 200.0


def test_no_calls_gives_no_figures_rather_than_zero() -> None:
    figures = period_figures([])
    assert figures["answer_rate"] is None and figures["asa"] is None
    assert figures["calls_for_agent"] == 0
