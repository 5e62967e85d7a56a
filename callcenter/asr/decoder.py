"""Vosk transcription of one call leg into segments with word times.

The model is loaded once per process and shared (Vosk models are read-only and
thread-safe). A recognizer is built once and reused, leg after leg (``Reset()``
between them): building one per leg cost about a quarter more CPU for the same
words. Each ``transcribe`` takes an idle recognizer for its sample rate (or
builds one), so one Transcriber serves several threads at once and holds at most
as many recognizers as ran together.

``use_vad=True`` (``Settings.asr_skip_silence``, off by default) decodes
only the stretches Silero's voice activity model finds (``asr/vad.py``; about
half of each dev leg), back to back in one stream, each word's time mapped back
to its place in the leg; otherwise the whole leg is decoded, and Vosk's empty
results on the near-silent stretches (while the other side talks) are dropped.
Measured (bench/asr_throughput.py, the narrower search of ``asr/search.py``):
2.04x a plain Vosk loop's audio-seconds per CPU-second (1.61x with whole legs);
realspeech CER 5.6 / 5.9 % at 16 / 8 kHz, as whole; dev calls CER 15.28 % against
15.57 %, QA agreement 95.9 against 95.6 %, urgency 91.1 % either way, category
93.3 against 95.6 %, addresses 84.4 against 88.9 % (bench/asr_accuracy.py,
2026-12-03, both decoded deterministically: ``DITHER``). The second pass reads
the whole leg's audio either way; only where its windows fall follows the first
pass's utterances. Off by default because whole legs give the addresses and the
category more often; the CPU is not the reason: after a burst of 100 calls through
one worker (bench/analysis_burst.py, 2026-12-03, a quiet machine) the first call's
result came 4.6 s after hang-up against 4.3 s alone (1.07x) with silence skipped,
5.6 against 5.0 s (1.11x) with whole legs. (A 1.94x measured once before was a
loaded machine: the same bench, alone, did not repeat it.)

``numbers``, ``addresses`` and ``names`` are the second pass (``asr/numbers.py``):
the stretches where a number, an address or the caller's name is given, decoded
again with a grammar of number, address or name words (on 15 dev calls, 0.6 % of
real time on one core, 1.4 % with the address windows read three times:
``ADDRESS_SHIFTS_S``).
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from callcenter.asr.model import cached_vocabulary, resolve_model
from callcenter.asr.numbers import (
    DIGITS_GRAMMAR,
    Cues,
    address_grammar,
    address_windows,
    name_grammar,
    name_windows,
    number_windows,
    surname_stand_ins,
    with_surnames,
)
from callcenter.asr.search import (
    NARROW,
    SEARCHES,
    DecoderSearch,
    feature_rate,
    model_with_search,
)
from callcenter.asr.vad import DEFAULT_VAD, VadSettings, speech_spans
from callcenter.audio import read_mono, resample
from callcenter.core import LegName, Segment, Word

if TYPE_CHECKING:
    from callcenter.settings import Settings

log = logging.getLogger(__name__)

_FRAME_S = 0.03  # the model's output frame (Vosk word times are multiples of it)
CHUNK_S = 0.5  # audio fed per AcceptWaveform call (0.2 s cost 3-4 % more CPU, same words)
MIN_RATE = 8000
_RESAMPLED_LEGS = 2  # a call's two legs: both first passes run before the second ones

# The dither Kaldi would add (asr/search.py turns its own off): noise of this
# standard deviation in sample units, from a generator seeded the same for every
# leg, so that a leg decodes to the same words every time. Without any, stretches
# of digital silence (zeros) have no log energy and the model heard words in
# them (a greeting said at 0.5 s began at 0.0).
DITHER = 1.0
DITHER_SEED = 0

_models: dict[Path, Any] = {}
_models_lock = threading.Lock()


def load_model(path: Path) -> Any:
    """The vosk.Model for ``path``, loaded once per process."""
    import vosk

    key = Path(path).resolve()
    with _models_lock:
        model = _models.get(key)
        if model is None:
            vosk.SetLogLevel(-1)
            model = vosk.Model(str(key))
            _models[key] = model
        return model


class Transcriber:
    """Speech to segments for one leg at a time.

    ``feed_rate``: the rate audio is given to Vosk at. None: the model's own
    (16 kHz), to which 8 kHz telephone legs are upsampled, because the dither
    (``DITHER``) must cover the model's whole band; a number resamples to it.
    ``use_vad``: decode only the stretches with speech (``vad`` tunes how they are
    found). ``search``: how wide the decoder searches (``asr/search.py``; None: the
    model's own conf), or ``settings``'s ``asr_search`` when settings are given.
    ``allow_network``: whether resolving the model may download it.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        settings: Settings | None = None,
        feed_rate: int | None = None,
        use_vad: bool = False,
        vad: VadSettings = DEFAULT_VAD,
        search: DecoderSearch | None = NARROW,
        allow_network: bool = True,
    ) -> None:
        from callcenter.settings import default_cache_dir

        if model_path is None:
            model_path = resolve_model(settings, allow_network=allow_network)
        self.model_path = Path(model_path)
        self.search = SEARCHES[settings.asr_search] if settings else search
        cache_dir = settings.cache_dir if settings else default_cache_dir()
        try:
            folder = model_with_search(self.model_path, self.search, cache_dir)
        except OSError as exc:
            # Slower, not broken: calls are still transcribed.
            log.warning("no model folder for the decoder search in %s (%s): decoding with "
                        "the model's folder as shipped (its slower search, and dither)",
                        cache_dir, exc)
            self.search, folder = None, self.model_path
        self.model = load_model(folder)
        self.feed_rate = feed_rate or feature_rate(folder)
        self.use_vad = use_vad
        self.vad = vad
        # (sample rate, grammar) -> the recognizers not in use
        self._idle: dict[tuple[int, str | None], list[_Recognizer]] = {}
        self._idle_lock = threading.Lock()
        self._resampled = threading.local()  # .legs: see _fed
        self.built = 0  # recognizers built so far (a figure for tests and benches)

    def transcribe(self, samples: npt.NDArray[np.int16], rate: int, leg: LegName) -> list[Segment]:
        """Segments (utterances) of a mono int16 signal, times in seconds from its start."""
        x = np.asarray(samples, dtype=np.int16)
        if x.ndim != 1:
            raise ValueError("transcribe needs a mono (1-D) signal")
        if rate < MIN_RATE:
            raise ValueError(f"sample rate {rate} Hz is too low for speech recognition")
        if len(x) == 0:
            return []
        x, rate = self._fed(x, rate)
        total = len(x) / rate
        if self.use_vad:
            spans = [
                (int(a * rate), min(len(x), round(b * rate)))
                for a, b in speech_spans(x, rate, self.vad)
            ]
        else:
            spans = [(0, len(x))]
        return self._decode(x, rate, spans, leg, total)

    def numbers(self, samples: npt.NDArray[np.int16], rate: int, leg: LegName,
                segments: Sequence[Segment]) -> list[Segment]:
        """The second pass for personal numbers (``asr/numbers.py``): where the
        call's first pass (``segments``, both legs) shows a number being given on
        ``leg``, its audio decoded again with a grammar of digit words. Segments
        of digits and ``[unk]`` words, times in the leg."""
        windows = number_windows(segments, leg, len(samples) / rate)
        return self._second_pass(samples, rate, leg, DIGITS_GRAMMAR, windows)

    def addresses(self, samples: npt.NDArray[np.int16], rate: int, leg: LegName,
                  segments: Sequence[Segment], cues: Cues, shift_s: float = 0.0
                  ) -> list[Segment]:
        """The second pass for the address: where an address is being given on
        ``leg``, decoded with a grammar of number and address words and the
        estate's building names (``cues.building_names``); ``shift_s`` moves each
        window's start (``asr/numbers.ADDRESS_SHIFTS_S``)."""
        windows = address_windows(segments, leg, len(samples) / rate, cues, shift_s)
        return self._second_pass(samples, rate, leg, address_grammar(cues.building_names),
                                 windows)

    def names(self, samples: npt.NDArray[np.int16], rate: int, leg: LegName,
              segments: Sequence[Segment], cues: Cues) -> list[Segment]:
        """The second pass for the caller's surname: where they give their name,
        decoded with a grammar of the surnames (``cues.surnames``) and the words
        they are given with (我姓刘, 免贵姓王)."""
        windows = name_windows(segments, leg, len(samples) / rate, cues)
        if not windows:
            return []
        stand_ins = self._surname_stand_ins(cues)
        surnames = [s for s in cues.surnames if s not in stand_ins.values()]
        heard = self._second_pass(samples, rate, leg, name_grammar([*surnames, *stand_ins]),
                                  windows)
        return with_surnames(heard, stand_ins)

    def _surname_stand_ins(self, cues: Cues) -> Mapping[str, str]:
        """``surname_stand_ins`` for this model's words (none if they cannot be read)."""
        vocabulary = self._vocabulary()
        if vocabulary is None:
            return {}
        return _stand_ins(vocabulary, cues.surnames, cues.surname_readings)

    def _vocabulary(self) -> frozenset[str] | None:
        """The model's words (read once per process), None when they cannot be read."""
        try:
            return cached_vocabulary(self.model_path)
        except (OSError, ValueError):
            return None

    def _second_pass(self, samples: npt.NDArray[np.int16], rate: int, leg: LegName,
                     grammar: str, windows: list[tuple[float, float]]) -> list[Segment]:
        """``windows`` (seconds in the leg) through a recognizer for ``grammar``."""
        if not windows:
            return []
        x, rate = self._fed(np.asarray(samples, dtype=np.int16), rate)
        spans = [(int(a * rate), min(len(x), round(b * rate))) for a, b in windows]
        return self._decode(x, rate, spans, leg, len(x) / rate, grammar=grammar)

    def _fed(self, x: npt.NDArray[np.int16], rate: int) -> tuple[npt.NDArray[np.int16], int]:
        """The signal and its rate as Vosk is given them (``feed_rate``). A leg is
        resampled once for its first pass and all its second passes: the thread's
        last legs are kept (a 2-minute leg costs 0.15-0.9 s of CPU to resample,
        by its length's factors)."""
        if self.feed_rate == rate:
            return x, rate
        recent: list[tuple[npt.NDArray[np.int16], int, npt.NDArray[np.int16]]] = getattr(
            self._resampled, "legs", [])
        for source, source_rate, fed in recent:
            if source is x and source_rate == rate:
                return fed, self.feed_rate
        fed = resample(x, rate, self.feed_rate)
        # Holding the source keeps its id from being reused by another array.
        self._resampled.legs = [(x, rate, fed), *recent[: _RESAMPLED_LEGS - 1]]
        return fed, self.feed_rate

    def transcribe_file(self, path: str | Path, leg: LegName) -> list[Segment]:
        samples, rate = read_mono(path)
        return self.transcribe(samples, rate, leg)

    def _decode(
        self,
        x: npt.NDArray[np.int16],
        rate: int,
        spans: list[tuple[int, int]],
        leg: LegName,
        total: float,
        *,
        grammar: str | None = None,
    ) -> list[Segment]:
        """The spans through an idle recognizer for ``rate`` and ``grammar`` (None:
        the model's whole language), see ``_Recognizer.feed``."""
        rec = self._take_recognizer(rate, grammar)
        # One that failed mid-leg is not reused: it may hold that leg's adaptation.
        segments = rec.feed(x, rate, spans, leg, total)
        with self._idle_lock:
            self._idle.setdefault((rate, grammar), []).append(rec)
        return segments

    def _take_recognizer(self, rate: int, grammar: str | None) -> _Recognizer:
        """An idle recognizer for ``rate`` and ``grammar``, reset, or a new one."""
        with self._idle_lock:
            idle = self._idle.get((rate, grammar))
            rec = idle.pop() if idle else None
        if rec is not None:
            rec.vosk.Reset()
            return rec
        import vosk

        built = (vosk.KaldiRecognizer(self.model, float(rate)) if grammar is None
                 else vosk.KaldiRecognizer(self.model, float(rate), self._heard(grammar)))
        built.SetWords(True)
        with self._idle_lock:
            self.built += 1
        return _Recognizer(built)

    def _heard(self, grammar: str) -> str:
        """``grammar`` with each phrase spelt in this model's words (免贵 is 免 贵 to
        it), and without those it has no words for: Vosk would leave them out too,
        but warn on its console for each one, each time a recognizer is built."""
        from callcenter.ivr.grammars import segment

        vocabulary = self._vocabulary()
        if vocabulary is None:
            log.warning("could not read the speech model's words in %s: grammars are used "
                        "as they are", self.model_path)
            return grammar
        kept, unheard = [], []
        for phrase in json.loads(grammar):
            try:
                kept.append(phrase if phrase.startswith("[") else
                            " ".join(segment(phrase.replace(" ", ""), vocabulary)))
            except ValueError:
                unheard.append(phrase)
        if unheard:
            log.info("%d grammar phrases have words the speech model lacks and cannot be "
                     "heard: %s", len(unheard), "、".join(unheard))
        return json.dumps(kept, ensure_ascii=False)


@functools.lru_cache(maxsize=4)
def _stand_ins(vocabulary: frozenset[str], surnames: tuple[str, ...],
               readings: tuple[str, ...]) -> Mapping[str, str]:
    """``surname_stand_ins``, worked out once per model and surname list, not per call
    (it reads the whole vocabulary)."""
    return surname_stand_ins(surnames, vocabulary, readings)


@dataclass(slots=True)
class _Recognizer:
    """A Vosk recognizer and the samples it was fed since it was built (its clock)."""

    vosk: Any
    fed: int = 0

    def feed(self, x: npt.NDArray[np.int16], rate: int, spans: list[tuple[int, int]],
             leg: LegName, total: float) -> list[Segment]:
        """Feed the spans (sample ranges) back to back, an utterance ending after
        each, and map the words' times back to the leg (``_StreamClock``).

        Between spans the utterance is ended with ``Result()``, which keeps the
        recognizer's speaker adaptation; ``FinalResult()`` would drop it with the
        feature pipeline, so that every span started from nothing (the dev calls'
        CER was 16.0 % so, 15.4-15.5 % without). After the last span it is dropped:
        the next leg is another speaker.
        """
        step = int(rate * CHUNK_S)
        noise = np.random.default_rng(DITHER_SEED)
        starts: list[tuple[int, int]] = []  # (stream sample, leg sample) of each span
        results: list[dict[str, Any]] = []
        running = False  # an utterance is open (not ended at a pause Vosk heard)
        for lo, hi in spans:
            if hi - lo < int(0.05 * rate):
                continue
            starts.append((self.fed, lo))
            for i in range(lo, hi, step):
                chunk = _dithered(x[i : min(hi, i + step)], noise)
                running = not self.vosk.AcceptWaveform(chunk.tobytes())
                if not running:
                    results.append(json.loads(self.vosk.Result()))
            self.fed += hi - lo
            if running and (lo, hi) != spans[-1]:
                results.append(json.loads(self.vosk.Result()))
                running = False
        if not starts:
            return []
        results.append(json.loads(self._finish(running, rate)))
        return _segments_from_results(results, leg, clock=_StreamClock.of(starts, rate),
                                      limit=total)

    def _finish(self, running: bool, rate: int) -> str:
        """``FinalResult()``, which drops the feature pipeline (and the speaker's
        adaptation) only while an utterance is open: after a pause Vosk ended, a
        moment of silence opens one, or the next leg would start adapted to this one."""
        if not running:
            pause = np.zeros(int(0.01 * rate), np.int16)
            self.vosk.AcceptWaveform(pause.tobytes())
            self.fed += len(pause)
        return str(self.vosk.FinalResult())


def _dithered(chunk: npt.NDArray[np.int16], noise: np.random.Generator) -> npt.NDArray[np.int16]:
    """``chunk`` with ``DITHER`` noise added, as little-endian 16-bit samples."""
    added = chunk.astype(np.int32) + np.rint(noise.normal(0.0, DITHER, len(chunk))).astype(np.int32)
    return np.clip(added, -32768, 32767).astype("<i2")


@dataclass(frozen=True, slots=True)
class _StreamClock:
    """A word's times in the recognizer's stream to times in the leg, for spans fed
    back to back."""

    stream_starts: tuple[int, ...]  # stream sample where each span begins, in order
    leg_starts: tuple[int, ...]  # ... and the leg sample it begins at
    rate: int

    @classmethod
    def of(cls, starts: Sequence[tuple[int, int]], rate: int) -> _StreamClock:
        """From (stream sample, leg sample) pairs, one per span."""
        return cls(tuple(s for s, _ in starts), tuple(leg for _, leg in starts), rate)

    def word(self, start_s: float, end_s: float) -> tuple[float, float]:
        """(start, end) in the leg. A word belongs to the span its end is in (less
        one frame: the last word of a span may end right at the next one). An
        utterance's first word takes the frames before it, which in the stream are
        the end of the span before: its start is then that of its own span."""
        at = (end_s - _FRAME_S) * self.rate
        index = max(0, bisect.bisect_right(self.stream_starts, at) - 1)
        stream_start, leg_start = self.stream_starts[index], self.leg_starts[index]

        def leg(stream_s: float) -> float:
            return (max(stream_s * self.rate, stream_start) - stream_start + leg_start) / self.rate

        return leg(start_s), leg(end_s)


def _segments_from_results(
    results: Iterable[dict[str, Any]], leg: LegName, *, clock: _StreamClock, limit: float
) -> list[Segment]:
    """Vosk final results to segments, times through ``clock`` (stream to leg);
    results without words (silence) are dropped."""
    segments: list[Segment] = []
    for res in results:
        words = [
            Word(
                w=str(item["word"]),
                start=round(min(limit, start), 3),
                end=round(min(limit, end), 3),
                conf=round(float(item.get("conf", 1.0)), 3),
            )
            for item in res.get("result") or []
            if str(item.get("word", "")).strip()
            for start, end in [clock.word(float(item["start"]), float(item["end"]))]
        ]
        if not words:
            continue
        segments.append(
            Segment(
                leg=leg,
                start=words[0].start,
                end=words[-1].end,
                text="".join(w.w for w in words),
                words=words,
            )
        )
    return segments
