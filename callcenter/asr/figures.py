"""Transcription figures (pure): jobs by state, and over the calls processed in a
window: audio seconds, real-time factor (decode CPU seconds per audio second),
throughput, and the lag from hang-up to result.

The rows come from the job queue (``process_call`` jobs by status) and from the
calls' "processed" events, whose data the worker fills (``audio_s``, ``decode_s``,
``cpu_s``); events written before the worker kept figures count in ``calls`` and
the lag only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

JOB_STATES = ("queued", "picked", "failed")  # waiting, being processed, held for a person


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def transcription_figures(
    jobs: Mapping[str, int],
    processed: Iterable[tuple[datetime, datetime | None, Mapping[str, Any]]],
) -> dict[str, Any]:
    """``jobs``: process_call jobs per status; ``processed``: (processed at, the
    call's end, the event's data) per call processed in the window."""
    audio = decode = cpu = 0.0
    calls, lags = 0, []
    for at, ended, data in processed:
        calls += 1
        audio += float(data.get("audio_s") or 0.0)
        decode += float(data.get("decode_s") or 0.0)
        cpu += float(data.get("cpu_s") or 0.0)
        if ended is not None:
            lags.append(max(0.0, (at - ended).total_seconds()))
    return {
        "jobs": {state: int(jobs.get(state, 0)) for state in JOB_STATES},
        "calls": calls,
        "audio_s": round(audio, 1),
        "decode_s": round(decode, 1),
        "real_time_factor": round(cpu / audio, 4) if audio else None,
        "audio_s_per_decode_s": round(audio / decode, 2) if decode else None,
        "lag_s": {"p50": _quantile(lags, 0.5), "p95": _quantile(lags, 0.95),
                  "max": max(lags) if lags else None},
    }
