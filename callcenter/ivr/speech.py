"""Spoken menu choices recognised with Vosk, against one menu's grammar.

The IVR records an utterance (``RECORD FILE``: 8 kHz 16-bit mono WAV) and asks
:class:`MenuRecognizer` which choice of the menu it names. The model is loaded
once per process, on first use (``callcenter.asr.decoder.load_model``, shared
with the transcription worker). Decoding is restricted to the menu's phrases
(``grammars/<menu>.json``, pure part in ``callcenter/ivr/grammars.py``): a
grammar lets the small model pick between a few dozen phrases instead of
100,000 words, which is both more accurate and faster than free decoding
(``bench/ivr_speech.py`` measures both).

Vosk's recognizer compiles the grammar when it is created (tens of
milliseconds), so recognizers are kept in a pool per grammar (and one without a
grammar, for the second opinion below) and reused after ``Reset()``; a pool
holds at most as many as decodes ever ran at once. ``recognize_choice`` runs the
reading, the resampling and both decodes in a bounded thread pool: Vosk releases
the GIL while decoding, so one caller's recognition never holds up the event
loop and at most ``workers`` decodes share the CPU.

Result rules, first the grammar decode's own: ``[unk]`` only or nothing heard ->
``none``; a mean word confidence below ``min_confidence`` (menu.yaml's timing) ->
``none``; words strung together by the grammar's back-off rather than by its
phrases (at least ``MIN_UNSEEN_TRANSITIONS`` word-to-word steps that no phrase
takes, and at least ``max_unseen_share`` of all steps) -> ``none``; else the
choice of :meth:`MenuGrammar.match` (``none`` when no phrase is in the text).

Why the back-off check: word confidences measure how sure Vosk is among the
grammar's words, not whether the speech belongs to the grammar at all. On
2.5 s pieces of the human speech clips of ``../shared/realspeech`` (both
grammars) 20 of 80 pieces were taken for a menu choice with a mean confidence
>= 0.5, each a string of unrelated grammar words; with the check 2 of 80. The
share (0.6) was chosen on those pieces and the project's own utterances.

Then a second opinion (:class:`SecondOpinion`; ``second_opinion=None`` turns it
off): the same audio decoded without a grammar, by the model's whole language
model. Both decodes start together in the pool, so the second adds max(), not
sum(), of the two times; the free one stops early (between two chunks) when the
grammar decode settles the utterance alone: nothing but ``[unk]``, an emergency,
or one whole phrase, nothing around it, every word at least 0.7 sure. Otherwise
an ordinary choice stands only when the free transcript names the same choice,
or holds at least 30 % of the choice phrase's telling characters
(:meth:`MenuGrammar.support`: 我/要 weigh little, a homophone such as 保修 for
报修 still shares 修), or when the free decode heard nothing clearly (mean word
confidence below 0.7: no evidence against). And a ``none`` of the grammar decode
becomes the free transcript's choice when the grammar decode heard 30 % of that
phrase too: a choice said in a long sentence, which the back-off check had
turned down.

Why, measured on the project's own data only, never the IVR test clips
(``bench/ivr_speech.py --own``; before -> after; choices right / choices,
non-choices taken for a choice): 2-3 s pieces of ``../shared/realspeech``
(human, 44 pieces x 2 grammars): 4 -> 1 of 88 taken; clauses cut from the caller
legs of ``../shared/scenarios/dev`` (neural TTS, labelled by their text's phrase
match, x 2 grammars): 25 -> 32 of 33 right, 154 -> 73 of 1859 taken (whole
caller turns there, measured once: 5 -> 27 of 33 right, 18 -> 11 of 513 taken);
``tests/data/ivr/*.tsv`` synthesised with espeak-ng in three voices: own
utterances 269 -> 252 of 414 right (1 -> 1 of 54 taken), long choices 75 -> 72
of 171, own non-choices 9 -> 5 of 210 taken; emergencies 107 -> 109 of 192
(espeak) and 7 -> 8 of 8 (dev clauses). The full language model decodes
espeak-ng's voice badly (its transcript alone names the right choice for 55 of
414 own utterances, against 27 of 33 dev clauses), hence the confidence gate:
replayed on the same decodes, a veto without it keeps 214 rather than 259 of 414
own choices, for 55 rather than 68 of 1859 clauses taken.

Emergencies are never overruled: a false P1 costs a person a minute, a missed
one may cost a life. Overruling them too where the free transcript shares none
of their characters (replayed) loses 4 of 192 synthesised emergencies, for 3
fewer of 118 human pieces and 11 fewer of 1859 clauses taken.

Decode time per utterance (``--own``, one at a time, two workers): grammar
alone p50 40-60 ms, p95 70-180 ms; with the second opinion p50 155 ms, p95
290-400 ms on human and neural speech (dev clauses, realspeech); slower on
espeak-ng's voice, which the free decode searches hard: p50 190 ms, p95 1.5 s
for the own utterances, p50 1.3 s and p95 2.6 s for its 4-6 s sentences.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from callcenter.asr.decoder import load_model
from callcenter.audio import ASR_RATE, AudioError, read_mono, resample
from callcenter.ivr.grammars import (
    GRAMMARS_DIR,
    NO_CHOICE,
    SAFETY_CHOICES,
    UNKNOWN_WORD,
    MenuGrammar,
    load_menu_grammars,
)
from callcenter.ivr.menu import Menu, default_menu

if TYPE_CHECKING:
    from callcenter.settings import Settings

# Every file is resampled (band-limited) to the model's own rate before decoding:
# with a grammar, the project's own synthetic menu utterances were recognised a
# little better so (236 vs 227 of 282) than fed at 8 kHz to Vosk's own
# resampler, and one pool of recognizers per grammar serves files of any rate.
FEED_RATE = ASR_RATE
MIN_INPUT_RATE = 8000
CHUNK_S = 0.2  # audio handed to Vosk per AcceptWaveform call
DEFAULT_WORKERS = 2
# Out of grammar: at least this many word-to-word steps no phrase takes, and at
# least this share of all steps (chosen on the project's own data, see above).
MIN_UNSEEN_TRANSITIONS = 2
DEFAULT_MAX_UNSEEN_SHARE = 0.6
FREE = None  # the pool key of the recognizers without a grammar


@dataclass(frozen=True, slots=True)
class Heard:
    """What one decode heard: its words (``[unk]`` included) and the confidence
    Vosk gives each."""

    words: tuple[str, ...] = ()
    confidences: tuple[float, ...] = ()

    @classmethod
    def from_vosk(cls, results: Iterable[Mapping[str, Any]]) -> Heard:
        pairs = [(str(r["word"]), float(r.get("conf", 0.0))) for r in results if r.get("word")]
        return cls(tuple(w for w, _ in pairs), tuple(c for _, c in pairs))

    @classmethod
    def of(cls, text: str, confidence: float = 1.0) -> Heard:
        """Words separated by spaces, each with the same confidence (for tests)."""
        words = tuple(text.split())
        return cls(words, (confidence,) * len(words))

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def known_confidences(self) -> list[float]:
        return [c for w, c in zip(self.words, self.confidences, strict=True) if w != UNKNOWN_WORD]

    @property
    def confidence(self) -> float:
        """Mean confidence of the words other than ``[unk]``; 0 when there are none."""
        known = self.known_confidences
        return float(np.mean(known)) if known else 0.0


@dataclass(frozen=True, slots=True)
class SecondOpinion:
    """When the free decode (no grammar: the model's whole language model) confirms
    the grammar decode's choice, or names one the grammar decode missed. Pure.

    ``min_support``: the share of the choice phrase's informative characters the
    other transcript must hold (:meth:`MenuGrammar.support`). ``credible_confidence``:
    below this mean word confidence the free decode did not hear clearly and may not
    overrule. ``whole_phrase_confidence``: a grammar decode that heard exactly one
    phrase, nothing around it, every word at least this sure, needs no confirmation.
    The defaults were chosen on the project's own data (module docstring)."""

    min_support: float = 0.3
    credible_confidence: float = 0.7
    whole_phrase_confidence: float = 0.7

    def settled(self, grammar: MenuGrammar, first: str, heard: Heard) -> bool:
        """Whether the grammar decode decides alone, so the free decode can stop:
        nothing but ``[unk]`` heard, an emergency (never overruled), or a whole phrase."""
        if not heard.known_confidences:
            return True
        if first in SAFETY_CHOICES:
            return True
        return first != NO_CHOICE and self._whole_phrase(grammar, heard)

    def decide(self, grammar: MenuGrammar, first: str, heard: Heard, free: Heard) -> str:
        """The choice, given the grammar decode's own verdict ``first``."""
        if first == NO_CHOICE:
            return self._rescued(grammar, heard, free)
        return first if self._confirms(grammar, first, heard, free) else NO_CHOICE

    def _confirms(self, grammar: MenuGrammar, choice: str, heard: Heard, free: Heard) -> bool:
        if self.settled(grammar, choice, heard):
            return True
        if free.confidence < self.credible_confidence:
            return True  # a free decode that heard nothing clearly is no evidence against
        if grammar.match(free.text) == choice:
            return True
        found = grammar.find(heard.text)
        return found is not None and grammar.support(found.phrase, free.text) >= self.min_support

    def _rescued(self, grammar: MenuGrammar, heard: Heard, free: Heard) -> str:
        """A choice the free transcript names where the grammar decode heard its phrase
        too, but strung among other words (a long sentence): the back-off check or
        the confidence threshold had turned the grammar decode down."""
        found = grammar.find(free.text)
        if found is None or not heard.known_confidences:
            return NO_CHOICE
        supported = grammar.support(found.phrase, heard.text) >= self.min_support
        return found.choice if supported else NO_CHOICE

    def _whole_phrase(self, grammar: MenuGrammar, heard: Heard) -> bool:
        known = heard.known_confidences
        return (len(known) == len(heard.words) and grammar.is_phrase(heard.text)
                and min(known) >= self.whole_phrase_confidence)


@dataclass(frozen=True, slots=True)
class Recognition:
    """What one utterance named. ``choice``: a choice id of the grammar or ``none``;
    ``confidence``: mean of the recognised words' confidences (0 when nothing was
    recognised); ``text``: what Vosk heard with the grammar, words separated by
    spaces; ``free_text``: what it heard without one (None: that decode was not
    needed, see :meth:`SecondOpinion.settled`, or is switched off)."""

    choice: str
    confidence: float
    text: str
    decode_ms: float  # resampling and both decodes (side by side), not reading the file
    audio_ms: float
    free_text: str | None = None


@dataclass(frozen=True, slots=True)
class _Decodes:
    """The two decodes of one utterance, running in the pool."""

    grammar: Future[Heard]
    free: Future[Heard | None] | None
    stop_free: threading.Event


class MenuRecognizer:
    """Recognises utterances against the menu file's grammars; thread-safe.

    ``model_path``: the Vosk model folder (default: ``resolve_model``, on first
    use). ``min_confidence``: default the menu file's ``timing.min_confidence``.
    ``workers``: how many decodes run at once (each utterance runs two).
    ``max_unseen_share``: the out-of-grammar check (None: off).
    ``second_opinion``: the free decode's rule (None: grammar decode only).
    Never call the blocking methods from this recognizer's own worker threads.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        settings: Settings | None = None,
        menu: Menu | None = None,
        grammars_dir: Path = GRAMMARS_DIR,
        min_confidence: float | None = None,
        workers: int = DEFAULT_WORKERS,
        max_unseen_share: float | None = DEFAULT_MAX_UNSEEN_SHARE,
        second_opinion: SecondOpinion | None = SecondOpinion(),
        allow_network: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        menu = menu or default_menu()
        self.grammars: dict[str, MenuGrammar] = load_menu_grammars(menu, grammars_dir)
        self.min_confidence = (
            menu.timing.min_confidence if min_confidence is None else min_confidence
        )
        self.max_unseen_share = max_unseen_share
        self.second_opinion = second_opinion
        self._model_path = model_path
        self._settings = settings
        self._allow_network = allow_network
        self._model: Any = None
        self._model_lock = threading.Lock()
        self._pools: dict[str | None, queue.SimpleQueue[Any]] = {
            name: queue.SimpleQueue() for name in [*self.grammars, FREE]
        }
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="ivr-speech")

    # -- the model, lazily ---------------------------------------------------

    @property
    def model_path(self) -> Path:
        self._load_model()
        assert self._model_path is not None
        return self._model_path

    def _load_model(self) -> Any:
        if self._model is None:
            with self._model_lock:  # one thread resolves and loads; the others wait
                if self._model is None:
                    if self._model_path is None:
                        from callcenter.asr.model import resolve_model

                        self._model_path = resolve_model(
                            self._settings, allow_network=self._allow_network
                        )
                    self._model = load_model(self._model_path)
        return self._model

    def warm_up(self) -> None:
        """Load the model and compile every grammar now (at start-up, not on a call)."""
        for key in self._pools:
            self._pools[key].put(self._new_recognizer(key))

    # -- recognition ---------------------------------------------------------

    def recognize_file(self, path: str | Path, grammar: str) -> Recognition:
        """Recognise one WAV file; AudioError (one line) when it is unusable."""
        self._grammar(grammar)  # an unknown grammar fails before any reading
        samples, rate = read_mono(path)
        return self.recognize_samples(samples, rate, grammar)

    def recognize_samples(
        self, samples: npt.NDArray[np.int16], rate: int, grammar: str
    ) -> Recognition:
        """Blocks this thread while the pool decodes (both decodes side by side)."""
        menu_grammar = self._grammar(grammar)
        started = time.perf_counter()
        decodes = self._start_decodes(grammar, self._feed(samples, rate))
        try:
            heard = decodes.grammar.result()
            first = self._first_opinion(menu_grammar, heard)
            self._stop_free_if_settled(menu_grammar, first, heard, decodes)
            free = decodes.free.result() if decodes.free is not None else None
        finally:
            decodes.stop_free.set()
        return self._recognition(menu_grammar, first, heard, free, started, samples, rate)

    async def recognize_choice(self, grammar: str, wav: Path) -> Recognition:
        """:meth:`recognize_file` for the event loop: reading, resampling and both
        decodes run in the worker pool; the loop only awaits them."""
        menu_grammar = self._grammar(grammar)
        loop = asyncio.get_running_loop()
        samples, rate = await loop.run_in_executor(self._executor, read_mono, wav)
        started = time.perf_counter()
        audio = await loop.run_in_executor(self._executor, self._feed, samples, rate)
        decodes = self._start_decodes(grammar, audio)
        try:
            heard = await asyncio.wrap_future(decodes.grammar)
            first = self._first_opinion(menu_grammar, heard)
            self._stop_free_if_settled(menu_grammar, first, heard, decodes)
            free = await asyncio.wrap_future(decodes.free) if decodes.free is not None else None
        finally:
            decodes.stop_free.set()  # a caller who hung up frees the worker at once
        return self._recognition(menu_grammar, first, heard, free, started, samples, rate)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> MenuRecognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------

    def _grammar(self, name: str) -> MenuGrammar:
        try:
            return self.grammars[name]
        except KeyError:
            known = ", ".join(self.grammars)
            raise KeyError(f"unknown grammar {name!r} (the menu file uses {known})") from None

    @staticmethod
    def _feed(samples: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.int16]:
        if rate < MIN_INPUT_RATE:
            raise AudioError(f"sample rate {rate} Hz is too low for speech "
                             f"(at least {MIN_INPUT_RATE})")
        audio = resample(samples, rate, FEED_RATE) if rate != FEED_RATE else samples
        return np.asarray(audio, dtype=np.int16)

    def _start_decodes(self, grammar: str, audio: npt.NDArray[np.int16]) -> _Decodes:
        """Both decodes at once, so that the second opinion adds max(), not sum(), of
        the two times; the grammar decode is queued first (it decides the other's fate)."""
        stop_free = threading.Event()
        grammar_job = self._executor.submit(self._decode_grammar, grammar, audio)
        free_job = (self._executor.submit(self._decode_free, audio, stop_free)
                    if self.second_opinion is not None else None)
        return _Decodes(grammar_job, free_job, stop_free)

    def _stop_free_if_settled(
        self, grammar: MenuGrammar, first: str, heard: Heard, decodes: _Decodes
    ) -> None:
        if self.second_opinion is not None and self.second_opinion.settled(grammar, first, heard):
            decodes.stop_free.set()

    def _new_recognizer(self, key: str | None) -> Any:
        import vosk

        model = self._load_model()
        if key is FREE:
            recognizer = vosk.KaldiRecognizer(model, float(FEED_RATE))
        else:
            recognizer = vosk.KaldiRecognizer(
                model, float(FEED_RATE), self.grammars[key].vosk_grammar())
        recognizer.SetWords(True)
        return recognizer

    def _decode_grammar(self, grammar: str, audio: npt.NDArray[np.int16]) -> Heard:
        heard = self._decode(grammar, audio, None)
        assert heard is not None  # nothing stops a grammar decode
        return heard

    def _decode_free(self, audio: npt.NDArray[np.int16], stop: threading.Event) -> Heard | None:
        return self._decode(FREE, audio, stop)

    def _decode(
        self, key: str | None, audio: npt.NDArray[np.int16], stop: threading.Event | None
    ) -> Heard | None:
        """What one recognizer of pool ``key`` hears in the utterance; None when
        ``stop`` was set before the end (checked between chunks)."""
        pool = self._pools[key]
        try:
            recognizer = pool.get_nowait()
        except queue.Empty:
            recognizer = self._new_recognizer(key)
        results: list[dict[str, Any]] = []
        step = int(FEED_RATE * CHUNK_S)
        for i in range(0, len(audio), step):
            if stop is not None and stop.is_set():
                recognizer.Reset()
                pool.put(recognizer)
                return None
            # Vosk may end an utterance at a pause inside the recording: keep every part
            if recognizer.AcceptWaveform(audio[i : i + step].astype("<i2").tobytes()):
                results += json.loads(recognizer.Result()).get("result") or []
        results += json.loads(recognizer.FinalResult()).get("result") or []
        recognizer.Reset()
        # back into the pool only after a clean decode: one that raised is dropped
        pool.put(recognizer)
        return Heard.from_vosk(results)

    def _first_opinion(self, grammar: MenuGrammar, heard: Heard) -> str:
        """The grammar decode's own verdict: confident enough, not strung together."""
        understood = (heard.confidence >= self.min_confidence
                      and not self._out_of_grammar(grammar, heard.text))
        return grammar.match(heard.text) if understood else NO_CHOICE

    def _out_of_grammar(self, grammar: MenuGrammar, text: str) -> bool:
        if self.max_unseen_share is None:
            return False
        unseen, steps = grammar.unseen_transitions(text)
        return unseen >= MIN_UNSEEN_TRANSITIONS and unseen >= self.max_unseen_share * steps

    def _recognition(
        self, grammar: MenuGrammar, first: str, heard: Heard, free: Heard | None,
        started: float, samples: npt.NDArray[np.int16], rate: int,
    ) -> Recognition:
        decode_ms = (time.perf_counter() - started) * 1000
        choice = first
        if self.second_opinion is not None and free is not None:
            choice = self.second_opinion.decide(grammar, first, heard, free)
        return Recognition(choice=choice, confidence=round(heard.confidence, 3),
                           text=heard.text, decode_ms=round(decode_ms, 1),
                           audio_ms=round(len(samples) * 1000 / rate, 1),
                           free_text=free.text if free is not None else None)


# -- the command line's and the benchmark's loop -----------------------------


def recognition_entries(
    recognizer: MenuRecognizer, grammar: str, paths: Iterable[str | Path]
) -> Iterator[dict[str, Any]]:
    """One JSON-ready entry per file, in order: file, choice, confidence, text,
    free_text, decode_ms (and audio_ms); or file and error for a file that cannot be
    used."""
    for path in paths:
        try:
            heard = recognizer.recognize_file(path, grammar)
        except AudioError as exc:
            yield {"file": str(path), "error": str(exc)}
            continue
        yield {"file": str(path), "choice": heard.choice, "confidence": heard.confidence,
               "text": heard.text, "free_text": heard.free_text,
               "decode_ms": heard.decode_ms, "audio_ms": heard.audio_ms}
