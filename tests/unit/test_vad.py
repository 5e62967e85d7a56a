"""Silero voice activity on real call legs: every turn the speaker took is kept
(with its edges), the other side's turns are mostly skipped, and line noise is
not speech (test_asr.py decodes only the kept stretches)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from callcenter.asr.vad import DEFAULT_VAD, speech_spans
from callcenter.audio import read_mono, resample
from callcenter.settings import SHARED_DIR

CALL = SHARED_DIR / "scenarios" / "dev" / "d007"


def _turns(who: str) -> list[tuple[float, float]]:
    meta = json.loads((CALL / "meta.json").read_text(encoding="utf-8"))
    return [(t["start"], t["end"]) for t in meta["timeline"] if t["who"] == who]


def _covered(span: tuple[float, float], spans: list[tuple[float, float]]) -> float:
    """The share of ``span`` inside ``spans``."""
    inside = sum(max(0.0, min(e, span[1]) - max(s, span[0])) for s, e in spans)
    return inside / (span[1] - span[0])


@pytest.fixture(scope="module")
def agent_leg() -> tuple[np.ndarray, int]:
    if not CALL.is_dir():
        pytest.skip("shared scenarios not available")
    return read_mono(CALL / "agent.wav")


@pytest.mark.parametrize("rate", [8000, 16000, 11025])
def test_the_speakers_turns_are_kept_and_the_other_sides_skipped(
    agent_leg: tuple[np.ndarray, int], rate: int
) -> None:
    samples, recorded = agent_leg
    if rate != recorded:
        samples = resample(samples, recorded, rate)
    spans = speech_spans(samples, rate)
    assert spans == sorted(spans)
    assert all(b - a > 0 for a, b in spans)
    assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))
    for turn in _turns("agent"):
        assert _covered(turn, spans) > 0.95, turn
    kept = sum(b - a for a, b in spans)
    assert kept < 0.8 * len(samples) / rate  # the caller's turns are silence here
    # Each stretch starts early enough for the recognizer to hear silence first.
    first_turn = _turns("agent")[0]
    assert spans[0][0] <= first_turn[0] - DEFAULT_VAD.pad_before_s / 2


def test_line_noise_and_silence_are_not_speech() -> None:
    rate = 8000
    rng = np.random.default_rng(3)
    assert speech_spans(rng.normal(0, 30, 10 * rate).astype(np.int16), rate) == []
    assert speech_spans(np.zeros(rate * 3, np.int16), rate) == []
    assert speech_spans(np.zeros(100, np.int16), rate) == []  # shorter than a window
