"""How a leg's spans are fed to a Vosk recognizer (no model: a recording fake)."""

from __future__ import annotations

import json

import numpy as np

from callcenter.asr.decoder import _Recognizer, _StreamClock

RATE = 8000


class FakeVosk:
    """Says every call; its results carry one word at a time given in its stream."""

    def __init__(self, endpoint_at: frozenset[int] = frozenset(), word_at: float = 0.5) -> None:
        self.calls: list[str] = []
        self.accepted = 0  # samples
        self.endpoint_at = endpoint_at  # AcceptWaveform calls (0-based) that end an utterance
        self.word_at = word_at

    def AcceptWaveform(self, data: bytes) -> bool:  # Vosk's names
        index = sum(c.startswith("accept") for c in self.calls)
        self.calls.append(f"accept {len(data) // 2}")
        self.accepted += len(data) // 2
        return index in self.endpoint_at

    def _result(self, name: str) -> str:
        self.calls.append(name)
        now = self.accepted / RATE
        word = {"word": "好", "start": now - self.word_at, "end": now - self.word_at + 0.2}
        return json.dumps({"result": [word], "text": "好"})

    def Result(self) -> str:
        return self._result("result")

    def FinalResult(self) -> str:
        return self._result("final")


def test_the_stream_clock_maps_each_span_back_to_its_place_in_the_leg() -> None:
    # Spans at 2-4 s and 10-11 s of the leg, fed back to back after 1 s fed before.
    clock = _StreamClock.of([(1 * RATE, 2 * RATE), (3 * RATE, 10 * RATE)], RATE)
    assert clock.word(1.0, 1.5) == (2.0, 2.5)
    assert clock.word(2.5, 3.0) == (3.5, 4.0)  # ends right where the next span begins
    assert clock.word(3.25, 3.75) == (10.25, 10.75)
    # The first word of an utterance in the second span, which Vosk starts in the
    # frames before it (the end of the first span), starts with its span.
    assert clock.word(2.97, 3.5) == (10.0, 10.5)


def test_spans_end_utterances_without_dropping_the_adaptation_until_the_leg_ends() -> None:
    vosk = FakeVosk()
    rec = _Recognizer(vosk)
    x = np.zeros(12 * RATE, np.int16)
    segments = rec.feed(x, RATE, [(2 * RATE, 3 * RATE), (8 * RATE, 9 * RATE)], "caller", 12.0)
    # Result() after the first span keeps the speaker's adaptation; FinalResult()
    # after the last, while an utterance is open, drops it for the next leg.
    assert [c for c in vosk.calls if not c.startswith("accept")] == ["result", "final"]
    assert rec.fed == 2 * RATE
    # Each word is back at its place in the leg: 0.5 s before its span's end.
    assert [w.start for s in segments for w in s.words] == [2.5, 8.5]


def test_a_leg_that_ends_on_a_pause_is_still_finished_with_its_adaptation_dropped() -> None:
    # Vosk ends the utterance on the leg's last chunk: FinalResult() would then do
    # nothing, so a moment of silence opens one first.
    vosk = FakeVosk(endpoint_at=frozenset({1}))
    rec = _Recognizer(vosk)
    x = np.zeros(2 * RATE, np.int16)
    rec.feed(x, RATE, [(0, RATE)], "agent", 2.0)
    assert vosk.calls[-3:] == ["result", f"accept {RATE // 100}", "final"]
    assert rec.fed == RATE + RATE // 100
