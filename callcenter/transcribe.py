"""``callcenter transcribe FILE...``: recordings to text on this machine (no database).

A mono file is one channel; a stereo call recording is two legs (caller left,
agent right). A file that cannot be read is reported with its reason and the
others go on; the exit status says whether any failed. Progress (files, and the
audio seconds done) goes to stderr on a terminal.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from callcenter.audio import AudioError, read_wav
from callcenter.core import Segment


@dataclass
class FileResult:
    path: Path
    duration_s: float = 0.0
    decode_s: float = 0.0
    channels: dict[str, list[Segment]] = field(default_factory=dict)
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        if self.error:
            return {"file": str(self.path), "error": self.error}
        return {
            "file": str(self.path), "duration_s": round(self.duration_s, 3),
            "decode_s": round(self.decode_s, 3),
            "channels": {name: {"text": "".join(s.text for s in segments),
                                "segments": [_segment_json(s) for s in segments]}
                         for name, segments in self.channels.items()},
        }


def _segment_json(segment: Segment) -> dict[str, Any]:
    return {"start": segment.start, "end": segment.end, "text": segment.text,
            "words": [{"w": w.w, "start": w.start, "end": w.end, "conf": w.conf}
                      for w in segment.words]}


def _channels(path: Path) -> tuple[dict[str, Any], int]:
    frames, rate = read_wav(path)
    if frames.shape[1] == 1:
        return {"mono": frames[:, 0]}, rate
    if frames.shape[1] == 2:
        return {"caller": frames[:, 0], "agent": frames[:, 1]}, rate
    raise AudioError(f"{path}: {frames.shape[1]} channels (a leg is mono, a call stereo)")


def transcribe_files(paths: Sequence[Path], transcriber: Any) -> Iterator[FileResult]:
    """One result per file, in order."""
    for path in paths:
        result = FileResult(path)
        try:
            channels, rate = _channels(path)
        except AudioError as exc:
            result.error = str(exc)
            yield result
            continue
        result.duration_s = max(len(x) for x in channels.values()) / rate
        began = time.perf_counter()
        try:
            for name, samples in channels.items():
                leg = "agent" if name == "agent" else "caller"
                result.channels[name] = transcriber.transcribe(samples, rate, leg)
        except ValueError as exc:  # e.g. a sample rate too low for speech
            result.error, result.channels = f"{path}: {exc}", {}
        result.decode_s = time.perf_counter() - began
        yield result


def write_text(result: FileResult, out: TextIO) -> None:
    if result.error:
        out.write(f"{result.path}: error: {result.error}\n")
        return
    out.write(f"{result.path} ({result.duration_s:.1f} s)\n")
    for name, segments in result.channels.items():
        for s in segments:
            out.write(f"  [{_clock(s.start)}-{_clock(s.end)}] {name}: {s.text}\n")


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:04.1f}"


def run(paths: Sequence[Path], transcriber: Any, *, as_json: bool,
        out: TextIO = sys.stdout) -> int:
    """Transcribe ``paths`` and print them (one JSON object per line with ``as_json``);
    1 if any file failed, else 0."""
    from tqdm import tqdm

    failed = 0
    # Files done, with the audio seconds so far beside them: a file is read once.
    with tqdm(total=len(paths), unit="file", desc="transcribe", file=sys.stderr,
              disable=None) as bar:
        audio_s = 0.0
        for result in transcribe_files(paths, transcriber):
            failed += bool(result.error)
            audio_s += result.duration_s
            bar.set_postfix_str(f"{audio_s:.0f} s of audio")
            bar.update(1)
            if as_json:
                out.write(json.dumps(result.as_json(), ensure_ascii=False) + "\n")
            else:
                write_text(result, out)
            out.flush()
    return 1 if failed else 0
