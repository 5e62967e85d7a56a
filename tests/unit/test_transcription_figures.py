"""Transcription figures from job counts and processed events (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callcenter.asr.figures import transcription_figures

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_rates_and_lags_over_the_processed_calls() -> None:
    processed = [
        (T0 + timedelta(seconds=9), T0, {"audio_s": 100.0, "decode_s": 5.0, "cpu_s": 4.0}),
        (T0 + timedelta(seconds=30), T0, {"audio_s": 50.0, "decode_s": 5.0, "cpu_s": 2.0}),
        (T0 + timedelta(seconds=3), None, {}),  # an old event without figures, no end
    ]
    f = transcription_figures({"queued": 7, "picked": 2, "successful": 40}, processed)
    assert f["jobs"] == {"queued": 7, "picked": 2, "failed": 0}
    assert (f["calls"], f["audio_s"], f["decode_s"]) == (3, 150.0, 10.0)
    assert (f["real_time_factor"], f["audio_s_per_decode_s"]) == (0.04, 15.0)
    assert f["lag_s"] == {"p50": 30.0, "p95": 30.0, "max": 30.0}


def test_nothing_processed_has_no_rates() -> None:
    f = transcription_figures({}, [])
    assert f["calls"] == 0 and f["real_time_factor"] is None
    assert f["lag_s"] == {"p50": None, "p95": None, "max": None}
