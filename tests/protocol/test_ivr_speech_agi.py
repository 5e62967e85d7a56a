"""Spoken choices and problem descriptions over a real FastAGI socket.

A fake Asterisk answers ``RECORD FILE`` the way Asterisk does (a key ends it
with the key's code; otherwise it writes the WAV and answers result=0) and
writes the recording where Asterisk would, in a folder the test maps to the
service's recordings folder. The recognizer is a stand-in that returns the
choices a test lists: what is tested here is the capture loop, the protocol
and what lands on the call; the real recognizer has its own tests
(tests/unit/test_ivr_speech.py) and the real Asterisk path its end-to-end ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from callcenter.agi.server import FastAgiServer
from callcenter.audio import write_wav
from callcenter.constants import VAR_IVR_DIGITS, VAR_IVR_INTENT, VAR_PRIORITY, VAR_QUEUE
from callcenter.db.writer import OrderedWriter
from callcenter.ivr.handler import MemoryCallSink, Speech, make_ivr_handler
from callcenter.ivr.speech import Recognition
from tests.protocol.test_fastagi import FakeAsterisk, fast_writer, only_call

ASTERISK_DIR = "/var/spool/asterisk/recording"
RATE = 8000


@dataclass
class ScriptedRecognizer:
    """Returns the listed choices in order; records which grammar and file it got."""

    choices: list[str] = field(default_factory=list)
    heard: list[tuple[str, Path]] = field(default_factory=list)

    async def recognize_choice(self, grammar: str, wav: Path) -> Recognition:
        self.heard.append((grammar, wav))
        choice = self.choices.pop(0) if self.choices else "none"
        return Recognition(choice=choice, confidence=0.9, text=choice, decode_ms=0.0,
                           audio_ms=1000.0)


def voice(seconds: float) -> np.ndarray:
    """Loud enough to be speech for the capture loop (not for a recognizer)."""
    rng = np.random.default_rng(7)
    return (rng.standard_normal(int(RATE * seconds)) * 4000).astype(np.int16)


@dataclass
class SpeakingAsterisk(FakeAsterisk):
    """``records``: per RECORD FILE, "key:<d>", "speech", "silence" or "HANGUP"."""

    records: list[str] = field(default_factory=list)
    recordings: Path = Path()

    def respond(self, name: str, args: list[str]) -> str | None:
        if name != "RECORD" or self.dead:
            return super().respond(name, args)
        step = self.records.pop(0) if self.records else "silence"
        if step.startswith("key:"):
            return f"200 result={ord(step[4:])} (dtmf) endpos=800"
        path = self.recordings / (args[1].removeprefix(ASTERISK_DIR + "/") + ".wav")
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = voice(1.2) if step != "silence" else np.zeros(RATE, np.int16)
        write_wav(path, samples, RATE)
        if step == "HANGUP":
            self.dead = True
            return "HANGUP"
        if step == "speech to the limit":
            # Asterisk then answers with the ms its last wait for a frame had left.
            return "200 result=16 (timeout) endpos=40000"
        return "200 result=0 (timeout) endpos=9600"


@dataclass
class Rig:
    server: FastAgiServer
    sink: MemoryCallSink
    recognizer: ScriptedRecognizer
    writer: OrderedWriter
    recordings: Path

    async def call(self, peer: SpeakingAsterisk) -> SpeakingAsterisk:
        """One call; returns once the server finished it and its writes landed."""
        peer.recordings = self.recordings
        await peer.call(self.server.port)
        assert await self.server.wait_idle(5)
        assert await self.writer.flush(5)
        return peer


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    sink, recognizer = MemoryCallSink(), ScriptedRecognizer()
    writer = fast_writer(sink)
    speech = Speech(recognizer=recognizer, recordings_dir=tmp_path, asterisk_dir=ASTERISK_DIR)
    server = FastAgiServer("127.0.0.1", 0, {"ivr": make_ivr_handler(sink, writer=writer,
                                                                    speech=speech)},
                           header_timeout_s=0.5, command_timeout_s=2.0)
    await server.start()
    try:
        yield Rig(server, sink, recognizer, writer, tmp_path)
    finally:
        await server.stop(timeout_s=2.0)
        await writer.close(timeout_s=1.0)


def record_args(peer: FakeAsterisk) -> list[list[str]]:
    return [args for name, args in peer.commands if name == "RECORD"]


# "speech to the limit": the recording ran to max_ms, and Asterisk's result is then
# the ms its last wait left over, not a key.
@pytest.mark.parametrize("step", ["speech", "speech to the limit"])
async def test_a_spoken_choice_routes_to_its_queue(rig: Rig, step: str) -> None:
    rig.recognizer.choices = ["consultation"]
    peer = await rig.call(SpeakingAsterisk(records=[step]))
    got = peer.vars_set()
    assert (got[VAR_QUEUE], got[VAR_IVR_DIGITS], got[VAR_IVR_INTENT]) == (
        "consultation", "", "consultation")
    (args,) = record_args(peer)
    # RECORD FILE <file> wav <every key> <wait ms> 0 s=<end silence>
    assert args[1].startswith(f"{ASTERISK_DIR}/ivr/") and args[2] == "wav"
    assert args[3] == "0123456789*#" and int(args[4]) <= 5000 and args[-1] == "s=2"
    assert rig.recognizer.heard[0][0] == "main"
    assert rig.recognizer.heard[0][1].is_file()  # the utterance is kept as evidence
    assert ("main", "choice", "speech") in [(e["node"], e["kind"], e["via"])
                                            for _, e in rig.sink.node_events]


async def test_silence_before_speaking_is_waited_through(rig: Rig) -> None:
    rig.recognizer.choices = ["agent"]
    peer = await rig.call(SpeakingAsterisk(records=["silence", "speech"]))
    assert peer.vars_set()[VAR_QUEUE] == "general"
    assert len(record_args(peer)) == 2
    assert len(rig.recognizer.heard) == 1  # the silent recording was never decoded
    assert not list(rig.recordings.rglob("main-1.wav"))  # ... and not kept


async def test_a_key_during_listening_wins(rig: Rig) -> None:
    peer = await rig.call(SpeakingAsterisk(records=["key:3"]))
    assert peer.vars_set()[VAR_QUEUE] == "consultation"
    assert rig.recognizer.heard == []


async def test_an_emergency_said_in_the_repair_menu_is_p1(rig: Rig) -> None:
    rig.recognizer.choices = ["repair", "gas_leak"]
    peer = await rig.call(SpeakingAsterisk(records=["speech", "speech"]))
    got = peer.vars_set()
    assert (got[VAR_QUEUE], got[VAR_PRIORITY], got[VAR_IVR_INTENT]) == ("repair", "2", "gas_leak")
    assert [g for g, _ in rig.recognizer.heard] == ["main", "repair"]


async def test_speech_not_understood_is_apologised_for(rig: Rig) -> None:
    rig.recognizer.choices = ["none", "consultation"]
    peer = await rig.call(SpeakingAsterisk(records=["speech", "speech"]))
    played = [a[0] for n, a in peer.commands if n == "STREAM FILE"]
    assert "callcenter/not_understood" in played
    assert peer.vars_set()[VAR_QUEUE] == "consultation"


async def test_a_complaint_records_a_description_after_a_tone(rig: Rig) -> None:
    peer = await rig.call(SpeakingAsterisk(plan=["2"], records=["speech"]))
    (args,) = record_args(peer)
    assert args[1].endswith("/description") and args[3] == "#" and args[4] == "30000"
    assert "BEEP" in args and args[-1] == "s=3"
    _, row = only_call(rig.sink)
    assert row["queue"] == "complaint"
    assert (rig.recordings / row["ivr_description"]).is_file()


async def test_a_hang_up_during_the_description_keeps_it(rig: Rig) -> None:
    await rig.call(SpeakingAsterisk(plan=["2"], records=["HANGUP"]))
    _, row = only_call(rig.sink)
    assert (row["ivr_node"], row["hangup_by"], row["finished"]) == ("describe", "caller", True)
    assert (rig.recordings / row["ivr_description"]).is_file()
    assert rig.sink.node_events[-1][1]["kind"] == "hangup"


