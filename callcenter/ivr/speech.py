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
milliseconds), so recognizers are kept in a pool per grammar and reused after
``Reset()``; the pool holds at most as many as decodes ever ran at once.
``recognize_choice`` runs a decode in a bounded thread pool: Vosk releases the
GIL while decoding, so one caller's recognition never holds up the event loop
and at most ``workers`` decodes share the CPU.

Result rules: ``[unk]`` only or nothing heard -> ``none``; a mean word
confidence below ``min_confidence`` (menu.yaml's timing) -> ``none``; words
strung together by the grammar's back-off rather than by its phrases (at least
``MIN_UNSEEN_TRANSITIONS`` word-to-word steps that no phrase takes, and at least
``max_unseen_share`` of all steps) -> ``none``; else the choice of
:meth:`MenuGrammar.match` (``none`` when no phrase is in the text).

Why the back-off check: word confidences measure how sure Vosk is among the
grammar's words, not whether the speech belongs to the grammar at all. On
out-of-grammar speech that is not the IVR test set (2.5 s pieces of the human
speech clips of ``../shared/realspeech``, both grammars) 20 of 80 pieces were
taken for a menu choice with a mean confidence >= 0.5, each a string of
unrelated grammar words; with the check 2 of 80. The price, on the project's own
utterances (``tests/data/ivr/own_utterances.tsv`` synthesised with espeak-ng):
401 -> 392 of 468 right, mostly long utterances with words around the phrase.
The share (0.6) was chosen on those two sets, never on the IVR clips.
"""

from __future__ import annotations

import asyncio
import json
import queue
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
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


@dataclass(frozen=True, slots=True)
class Recognition:
    """What one utterance named. ``choice``: a choice id of the grammar or ``none``;
    ``confidence``: mean of the recognised words' confidences (0 when nothing was
    recognised); ``text``: what Vosk heard, words separated by spaces."""

    choice: str
    confidence: float
    text: str
    decode_ms: float  # resampling and decoding, not reading the file nor waiting for a worker
    audio_ms: float


class MenuRecognizer:
    """Recognises utterances against the menu file's grammars; thread-safe.

    ``model_path``: the Vosk model folder (default: ``resolve_model``, on first
    use). ``min_confidence``: default the menu file's ``timing.min_confidence``.
    ``workers``: how many decodes ``recognize_choice`` runs at once.
    ``max_unseen_share``: the out-of-grammar check (None: off).
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
        self._model_path = model_path
        self._settings = settings
        self._allow_network = allow_network
        self._model: Any = None
        self._model_lock = threading.Lock()
        self._pools: dict[str, queue.SimpleQueue[Any]] = {
            name: queue.SimpleQueue() for name in self.grammars
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
        for name in self.grammars:
            self._pools[name].put(self._new_recognizer(name))

    # -- recognition ---------------------------------------------------------

    def recognize_file(self, path: str | Path, grammar: str) -> Recognition:
        """Recognise one WAV file; AudioError (one line) when it is unusable."""
        self._grammar(grammar)  # an unknown grammar fails before any reading
        samples, rate = read_mono(path)
        return self.recognize_samples(samples, rate, grammar)

    def recognize_samples(
        self, samples: npt.NDArray[np.int16], rate: int, grammar: str
    ) -> Recognition:
        menu_grammar = self._grammar(grammar)
        if rate < MIN_INPUT_RATE:
            raise AudioError(f"sample rate {rate} Hz is too low for speech "
                             f"(at least {MIN_INPUT_RATE})")
        started = time.perf_counter()
        audio = resample(samples, rate, FEED_RATE) if rate != FEED_RATE else samples
        words = self._decode(grammar, np.asarray(audio, dtype=np.int16))
        decode_ms = (time.perf_counter() - started) * 1000
        return self._judge(menu_grammar, words, decode_ms, len(samples) * 1000 / rate)

    async def recognize_choice(self, grammar: str, wav: Path) -> Recognition:
        """:meth:`recognize_file` in the worker pool, for the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.recognize_file, wav, grammar)

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

    def _new_recognizer(self, grammar: str) -> Any:
        import vosk

        recognizer = vosk.KaldiRecognizer(
            self._load_model(), float(FEED_RATE), self.grammars[grammar].vosk_grammar()
        )
        recognizer.SetWords(True)
        return recognizer

    def _decode(self, grammar: str, audio: npt.NDArray[np.int16]) -> list[dict[str, Any]]:
        """The recognised words (Vosk's dicts: word, conf, start, end) of one utterance."""
        pool = self._pools[grammar]
        try:
            recognizer = pool.get_nowait()
        except queue.Empty:
            recognizer = self._new_recognizer(grammar)
        words: list[dict[str, Any]] = []
        step = int(FEED_RATE * CHUNK_S)
        for i in range(0, len(audio), step):
            # Vosk may end an utterance at a pause inside the recording: keep every part
            if recognizer.AcceptWaveform(audio[i : i + step].astype("<i2").tobytes()):
                words += json.loads(recognizer.Result()).get("result") or []
        words += json.loads(recognizer.FinalResult()).get("result") or []
        recognizer.Reset()
        # back into the pool only after a clean decode: one that raised is dropped
        pool.put(recognizer)
        return words

    def _judge(
        self, grammar: MenuGrammar, words: list[dict[str, Any]], decode_ms: float, audio_ms: float
    ) -> Recognition:
        text = " ".join(str(w.get("word", "")) for w in words).strip()
        known = [w for w in words if w.get("word") not in (UNKNOWN_WORD, "")]
        confidence = float(np.mean([float(w.get("conf", 0.0)) for w in known])) if known else 0.0
        understood = confidence >= self.min_confidence and not self._out_of_grammar(grammar, text)
        choice = grammar.match(text) if understood else NO_CHOICE
        return Recognition(choice=choice, confidence=round(confidence, 3), text=text,
                           decode_ms=round(decode_ms, 1), audio_ms=round(audio_ms, 1))


    def _out_of_grammar(self, grammar: MenuGrammar, text: str) -> bool:
        if self.max_unseen_share is None:
            return False
        unseen, steps = grammar.unseen_transitions(text)
        return unseen >= MIN_UNSEEN_TRANSITIONS and unseen >= self.max_unseen_share * steps


# -- the command line's and the benchmark's loop -----------------------------


def recognition_entries(
    recognizer: MenuRecognizer, grammar: str, paths: Iterable[str | Path]
) -> Iterator[dict[str, Any]]:
    """One JSON-ready entry per file, in order: file, choice, confidence, text,
    decode_ms (and audio_ms); or file and error for a file that cannot be used."""
    for path in paths:
        try:
            heard = recognizer.recognize_file(path, grammar)
        except AudioError as exc:
            yield {"file": str(path), "error": str(exc)}
            continue
        yield {"file": str(path), "choice": heard.choice, "confidence": heard.confidence,
               "text": heard.text, "decode_ms": heard.decode_ms, "audio_ms": heard.audio_ms}


# -- the model's vocabulary (for building and checking grammars) -------------

_SYMBOL_TABLE_MAGIC = struct.pack("<i", 2125658996)  # OpenFst's SymbolTable header


def model_vocabulary(model_path: Path) -> frozenset[str]:
    """The words a Vosk model knows: ``graph/words.txt`` when the model ships it,
    else the word symbol table stored inside ``graph/Gr.fst`` or ``graph/HCLG.fst``
    (the small models keep it only there)."""
    words_txt = model_path / "graph" / "words.txt"
    if words_txt.is_file():
        lines = words_txt.read_text(encoding="utf-8").splitlines()
        return frozenset(line.split()[0] for line in lines if line.strip())
    for name in ("Gr.fst", "HCLG.fst"):
        fst = model_path / "graph" / name
        if fst.is_file():
            return _fst_symbols(fst)
    raise FileNotFoundError(f"{model_path}: no graph/words.txt, Gr.fst or HCLG.fst")


def _fst_symbols(path: Path, header_bytes: int = 1 << 16) -> frozenset[str]:
    """The first symbol table of an OpenFst binary file (right after its header)."""
    with path.open("rb") as fh:
        data = fh.read(header_bytes)
        at = data.find(_SYMBOL_TABLE_MAGIC)
        if at < 0:
            raise ValueError(f"{path}: no symbol table in its header")
        fh.seek(at + 4)
        (name_len,) = struct.unpack("<i", fh.read(4))
        fh.seek(name_len + 8, 1)  # the table's name, then its next free key
        (size,) = struct.unpack("<q", fh.read(8))
        words = set()
        for _ in range(size):
            (length,) = struct.unpack("<i", fh.read(4))
            words.add(fh.read(length).decode("utf-8"))
            fh.seek(8, 1)  # the symbol's key
        return frozenset(words)
