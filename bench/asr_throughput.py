"""Transcription throughput: the same call legs through a plain Vosk loop and through
the service's pipeline, in one run, on one thread each.

- plain: what a first script does: a new ``KaldiRecognizer`` per leg, the whole
  leg in 0.5 s chunks (4,000 frames at 8 kHz), final result;
- pipeline: ``callcenter.asr.decoder.Transcriber`` as the worker runs it (one
  recognizer per process, reset between legs, the narrower decoder search of
  ``asr/search.py``; whole legs, as the service's default, or with ``--vad`` only
  the voiced stretches).

Prints audio-seconds per CPU-second for both and their ratio (goals: >= 1.0x
without VAD, >= 1.8x with it), and the character error rate of both on
../shared/realspeech at 16 and 8 kHz (goal: the pipeline at most 0.5 points worse).

    .venv/bin/python bench/asr_throughput.py              # 6 dev calls, about 4 minutes
    .venv/bin/python bench/asr_throughput.py --vad --calls 12
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from asr_cer import edit_distance, normalize

from callcenter.asr.decoder import Transcriber, load_model
from callcenter.audio import read_mono
from callcenter.settings import SHARED_DIR

PLAIN_CHUNK_FRAMES = 4000
GOAL_RATIO = {False: 1.0, True: 1.8}
GOAL_CER_POINTS = 0.5

Leg = tuple[str, np.ndarray, int]  # name, samples, rate


class PlainVosk:
    """The baseline: one recognizer per leg, fed in 0.5 s chunks."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def text(self, samples: np.ndarray, rate: int) -> str:
        import vosk

        rec = vosk.KaldiRecognizer(self.model, float(rate))
        data = samples.astype("<i2").tobytes()
        step = PLAIN_CHUNK_FRAMES * 2
        parts = []
        for i in range(0, len(data), step):
            if rec.AcceptWaveform(data[i : i + step]):
                parts.append(json.loads(rec.Result()).get("text", ""))
        parts.append(json.loads(rec.FinalResult()).get("text", ""))
        return "".join(parts)


@dataclass
class Run:
    label: str
    audio_s: float
    cpu_s: float

    @property
    def speed(self) -> float:
        return self.audio_s / max(self.cpu_s, 1e-9)


def dev_legs(calls: int) -> list[Leg]:
    folders = sorted(p for p in (SHARED_DIR / "scenarios" / "dev").iterdir() if p.is_dir())
    legs = []
    for folder in folders[:calls]:
        for leg in ("caller", "agent"):
            samples, rate = read_mono(folder / f"{leg}.wav")
            legs.append((f"{folder.name}/{leg}", samples, rate))
    return legs


def timed(label: str, legs: Sequence[Leg], text: Callable[[np.ndarray, int], str]) -> Run:
    began = time.process_time()
    for _name, samples, rate in legs:
        text(samples, rate)
    return Run(label, sum(len(s) / r for _n, s, r in legs), time.process_time() - began)


def realspeech(sub: str) -> list[tuple[str, np.ndarray, int]]:
    base = SHARED_DIR / "realspeech"
    clips = []
    for line in (base / "refs.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip():
            clip, ref = line.split("\t")[:2]
            samples, rate = read_mono(base / sub / f"{clip}.wav")
            clips.append((ref, samples, rate))
    return clips


def cer(clips: Sequence[tuple[str, np.ndarray, int]],
        text: Callable[[np.ndarray, int], str]) -> float:
    errors = chars = 0
    for ref, samples, rate in clips:
        want, got = normalize(ref), normalize(text(samples, rate))
        errors += edit_distance(want, got)
        chars += len(want)
    return 100.0 * errors / max(chars, 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=6, help="dev calls (both legs each)")
    parser.add_argument("--vad", action=argparse.BooleanOptionalAction, default=None,
                        help="the pipeline skips silence (default: as the service does, "
                             "CALLCENTER_ASR_SKIP_SILENCE, off); --no-vad: whole legs")
    args = parser.parse_args(argv)
    if args.vad is None:
        from callcenter.settings import Settings

        args.vad = Settings().asr_skip_silence

    pipeline = Transcriber(allow_network=False, use_vad=args.vad)
    plain = PlainVosk(load_model(pipeline.model_path))

    def piped(samples: np.ndarray, rate: int) -> str:
        return "".join(s.text for s in pipeline.transcribe(samples, rate, "caller"))

    legs = dev_legs(args.calls)
    print(f"{len(legs)} legs of {args.calls} dev calls, "
          f"{sum(len(s) / r for _n, s, r in legs):.0f} s of audio; model "
          f"{pipeline.model_path.name}; pipeline VAD {'on' if args.vad else 'off'}, search "
          f"{pipeline.search.tag if pipeline.search else 'the model conf'} (plain: the model "
          "conf)", flush=True)
    piped(legs[0][1][: legs[0][2]], legs[0][2])  # both warm: the model's pages are in
    plain.text(legs[0][1][: legs[0][2]], legs[0][2])
    # Alternated, twice, so that neither side has the machine's quieter half.
    runs: dict[str, list[Run]] = {"plain": [], "pipeline": []}
    for _ in range(2):
        runs["plain"].append(timed("plain", legs, plain.text))
        runs["pipeline"].append(timed("pipeline", legs, piped))
    speed = {k: sum(r.audio_s for r in v) / sum(r.cpu_s for r in v) for k, v in runs.items()}
    ratio = speed["pipeline"] / speed["plain"]
    print(f"\naudio-seconds per CPU-second: plain Vosk loop {speed['plain']:.2f}, "
          f"pipeline {speed['pipeline']:.2f}; ratio {ratio:.2f}x "
          f"(goal >= {GOAL_RATIO[args.vad]:.1f}x {'with' if args.vad else 'without'} VAD): "
          f"{'ok' if ratio >= GOAL_RATIO[args.vad] else 'MISSED'}")
    for name, rs in runs.items():
        print(f"  {name}: " + ", ".join(f"{r.speed:.2f}" for r in rs) + " per run")

    worst = 0.0
    for sub in ("wav16k", "wav8k"):
        clips = realspeech(sub)
        base, ours = cer(clips, plain.text), cer(clips, piped)
        worst = max(worst, ours - base)
        print(f"CER realspeech {sub} ({len(clips)} clips): plain {base:.1f} %, "
              f"pipeline {ours:.1f} % ({ours - base:+.1f} points)")
    print(f"verdict: CER at most {GOAL_CER_POINTS} points worse: "
          f"{'ok' if worst <= GOAL_CER_POINTS else 'MISSED'} (worst {worst:+.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
