"""What the caller does after a prompt: a key, an utterance, or nothing.

Why AGI ``RECORD FILE`` with silence detection (and not EAGI or an ARI
snoop/external-media stream): EAGI's audio descriptor exists only for AGI
scripts Asterisk starts itself, not over FastAGI; a snoop channel plus an
RTP stream per caller would add two channels and a socket to every call in the
menu (the load figures in ARCHITECTURE.md keep a call's cost close to bare
Asterisk's). ``RECORD FILE`` keeps the whole IVR on the one AGI connection:
DTMF still ends it at once (every key is an escape digit), Asterisk ends it
after ``speech_end_silence_s`` of silence, and the file lands in the recordings
folder the service already shares with Asterisk. The cost is latency: the
utterance is recognised after it ends, not while it is spoken.

Asterisk counts silence from the start of a recording, so a caller who waits
two seconds before speaking would end it. The wait is therefore a loop of
recordings until ``timeout_ms`` has passed; a recording with no speech in it
is deleted and the next one starts at once. A recording still voiced when the
wait ran out is continued, so an utterance begun just before the deadline is
heard whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import structlog

from callcenter.agi.channel import AgiChannel
from callcenter.audio import AudioError, frame_rms_db, read_mono, write_wav
from callcenter.ivr.engine import (
    DescriptionRecorded,
    DigitPressed,
    NoInput,
    RecordDescription,
    SpeechRecognised,
)
from callcenter.ivr.menu import DTMF_KEYS, Timing

log = structlog.get_logger(__name__)

# A frame louder than this is speech: Asterisk's own silence threshold (256 of
# 32768, dsp.conf's default) in dBFS, so both sides agree on what silence is.
SPEECH_DBFS = -42.0
MIN_SPEECH_S = 0.2  # shorter bursts (a click, a breath) are not an utterance
TAIL_S = 0.3  # a recording whose last 0.3 s is voiced was cut mid-utterance
MIN_WAIT_MS = 200  # a shorter remaining wait is not worth another recording
IVR_FOLDER = "ivr"  # under the recordings folder: <call_id>/<node>-<n>.wav


class HeardChoice(Protocol):
    @property
    def choice(self) -> str: ...
    @property
    def confidence(self) -> float: ...
    @property
    def text(self) -> str: ...


class ChoiceRecognizer(Protocol):
    """Recognises one utterance against a menu's grammar (callcenter/ivr/speech.py)."""

    async def recognize_choice(self, grammar: str, wav: Path) -> HeardChoice: ...


def speech_seconds(samples: np.ndarray, rate: int) -> float:
    levels = frame_rms_db(samples, rate)
    return float(np.count_nonzero(levels > SPEECH_DBFS)) * 0.02


def ends_voiced(samples: np.ndarray, rate: int) -> bool:
    tail = samples[-int(rate * TAIL_S):]
    return speech_seconds(tail, rate) >= TAIL_S / 2


@dataclass
class Listener:
    """Records and recognises on behalf of one IVR call.

    ``recordings_dir`` is the folder as the service sees it, ``asterisk_dir`` the
    same folder as Asterisk sees it (they differ in a container or the sandbox).
    """

    recognizer: ChoiceRecognizer | None
    recordings_dir: Path
    asterisk_dir: str
    timing: Timing
    call_id: str
    _sequence: int = 0

    def _next_name(self, node: str) -> str:
        self._sequence += 1
        return f"{IVR_FOLDER}/{self.call_id}/{node}-{self._sequence}"

    async def _record(
        self, channel: AgiChannel, name: str, *, escape: str, max_ms: int, silence_s: int,
        beep: bool = False,
    ) -> tuple[str, Path]:
        (self.recordings_dir / name).parent.mkdir(parents=True, exist_ok=True)
        key = await channel.record_file(f"{self.asterisk_dir}/{name}", escape_digits=escape,
                                        max_ms=max_ms, silence_s=silence_s, beep=beep)
        return key, self.recordings_dir / f"{name}.wav"

    async def listen(self, channel: AgiChannel, node: str, grammar: str | None,
                     timeout_ms: int) -> DigitPressed | SpeechRecognised | NoInput:
        """Wait up to ``timeout_ms`` for a key or (with a recognizer) an utterance."""
        if self.recognizer is None or grammar is None:
            digit = await channel.wait_for_digit(timeout_ms)
            return DigitPressed(digit) if digit else NoInput()
        deadline = time.monotonic() + timeout_ms / 1000
        while (remaining := int((deadline - time.monotonic()) * 1000)) >= MIN_WAIT_MS:
            name = self._next_name(node)
            key, path = await self._record(
                channel, name, escape=DTMF_KEYS, max_ms=remaining,
                silence_s=self.timing.speech_end_silence_s,
            )
            if key:
                _remove(path)
                return DigitPressed(key)
            heard = await self._utterance(channel, node, grammar, path,
                                          cut=time.monotonic() >= deadline)
            if isinstance(heard, DigitPressed | SpeechRecognised):
                return heard
        return NoInput()

    async def _utterance(
        self, channel: AgiChannel, node: str, grammar: str, path: Path, *, cut: bool
    ) -> DigitPressed | SpeechRecognised | None:
        samples, rate = _read_or_empty(path)
        if speech_seconds(samples, rate) < MIN_SPEECH_S:
            _remove(path)
            return None
        if cut and ends_voiced(samples, rate):
            key, rest = await self._record(
                channel, self._next_name(node), escape=DTMF_KEYS,
                max_ms=self.timing.max_utterance_ms, silence_s=self.timing.speech_end_silence_s,
            )
            if key:
                return DigitPressed(key)
            more, more_rate = _read_or_empty(rest)
            if more_rate == rate and len(more):
                samples = np.concatenate([samples, more])
                await asyncio.to_thread(write_wav, path, samples, rate)
            _remove(rest)
        assert self.recognizer is not None
        heard = await self.recognizer.recognize_choice(grammar, path)
        log.info("ivr.speech", node=node, choice=heard.choice, confidence=heard.confidence,
                 text=heard.text)
        return SpeechRecognised(heard.choice, heard.confidence, heard.text)

    async def describe(self, channel: AgiChannel, action: RecordDescription
                       ) -> DescriptionRecorded:
        """The problem description after a tone; "" when nothing was said."""
        name = f"{IVR_FOLDER}/{self.call_id}/description"
        _key, path = await self._record(
            channel, name, escape="#", max_ms=action.max_ms,
            silence_s=action.end_silence_s, beep=True,
        )
        samples, rate = _read_or_empty(path)
        if speech_seconds(samples, rate) < MIN_SPEECH_S:
            _remove(path)
            return DescriptionRecorded()
        return DescriptionRecorded(f"{name}.wav", int(len(samples) * 1000 / rate))

    def description_path(self) -> str:
        """The description's name if its file exists (a caller who hung up mid-way)."""
        name = f"{IVR_FOLDER}/{self.call_id}/description.wav"
        return name if (self.recordings_dir / name).is_file() else ""


def _read_or_empty(path: Path) -> tuple[np.ndarray, int]:
    try:
        return read_mono(path)
    except AudioError:
        return np.zeros(0, dtype=np.int16), 8000


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
