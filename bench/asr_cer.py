"""Character error rate and real-time factor of the Vosk transcription pipeline.

Measures, in one run:
- ../shared/realspeech: real human speech, 16 kHz and its 8 kHz copy (refs.tsv);
- a few ../shared/scenarios/dev calls: both legs against the meta.json timeline text,
  fed to Vosk at 8 kHz as recorded and upsampled to 16 kHz;
and prints the baseline from ../shared/realspeech/README.md beside the figures.

    .venv/bin/python bench/asr_cer.py            # default: 3 calls, about 2 minutes
    .venv/bin/python bench/asr_cer.py --calls 0  # all 45 calls (about 10+ minutes)
    .venv/bin/python bench/asr_cer.py --examples 5 --vad
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callcenter.asr.decoder import Transcriber
from callcenter.audio import read_mono
from callcenter.core import LegName
from callcenter.settings import SHARED_DIR

BASELINE = (
    "baseline (shared/realspeech/README.md, plain Vosk small-cn): "
    "CER 5.6 % at 16 kHz and 5.6 % at 8 kHz; RTF about 0.40-0.47 on one core "
    "(short clips pay ~1 s fixed cost)"
)
DEFAULT_CALLS = ("d007", "d013", "d020")


def normalize(text: str) -> str:
    """Characters that count for CER: no spaces, no punctuation or symbols."""
    return "".join(
        ch for ch in text if not ch.isspace() and unicodedata.category(ch)[0] not in "PSZ"
    )


def edit_distance(ref: str, hyp: str) -> int:
    prev = list(range(len(hyp) + 1))
    for i, rc in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, hc in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rc != hc))
        prev = cur
    return prev[-1]


@dataclass
class Item:
    name: str
    ref: str
    hyp: str = ""
    audio_s: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0


@dataclass
class Tally:
    label: str
    items: list[Item]

    @property
    def cer(self) -> float:
        errors = sum(edit_distance(normalize(i.ref), normalize(i.hyp)) for i in self.items)
        chars = sum(len(normalize(i.ref)) for i in self.items)
        return errors / max(1, chars)

    @property
    def rtf(self) -> float:
        return sum(i.cpu_s for i in self.items) / max(1e-9, sum(i.audio_s for i in self.items))

    def line(self) -> str:
        audio = sum(i.audio_s for i in self.items)
        return (
            f"{self.label:<34} CER {self.cer * 100:5.1f} %   RTF {self.rtf:.3f} (CPU s / audio s)"
            f"   {len(self.items)} items, {audio:.0f} s audio"
        )


def run_items(items: list[Item], fn: Callable[[Item], str], workers: int) -> None:
    def one(item: Item) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        item.hyp = fn(item)
        item.wall_s = time.perf_counter() - t0
        item.cpu_s = time.thread_time() - c0

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, items))


def realspeech(tr: Transcriber, sub: str, workers: int) -> Tally:
    base = SHARED_DIR / "realspeech"
    items = []
    for line in (base / "refs.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip():
            clip, ref = line.split("\t")[:2]
            items.append(Item(str(base / sub / f"{clip}.wav"), ref))

    def fn(item: Item) -> str:
        x, rate = read_mono(item.name)
        item.audio_s = len(x) / rate
        return "".join(s.text for s in tr.transcribe(x, rate, "caller"))

    run_items(items, fn, workers)
    return Tally(f"realspeech {sub}", items)


def scenario(tr: Transcriber, calls: list[str], leg: LegName, label: str, workers: int) -> Tally:
    base = SHARED_DIR / "scenarios" / "dev"
    items = []
    for call in calls:
        meta = json.loads((base / call / "meta.json").read_text(encoding="utf-8"))
        ref = "".join(t["text"] for t in meta["timeline"] if t["who"] == leg)
        items.append(Item(str(base / call / f"{leg}.wav"), ref))

    def fn(item: Item) -> str:
        x, rate = read_mono(item.name)
        item.audio_s = len(x) / rate
        return "".join(s.text for s in tr.transcribe(x, rate, leg))

    run_items(items, fn, workers)
    return Tally(label, items)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--calls",
        type=int,
        default=-1,
        help="scenario calls to use: 0 = all, default: 3 fixed ones",
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--vad", action="store_true", help="decode only voiced stretches (default: whole leg)"
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=0,
        help="print this many per-turn reference/recognised pairs per leg",
    )
    parser.add_argument("--skip-realspeech", action="store_true")
    args = parser.parse_args()  # fmt: skip

    all_calls = sorted(p.name for p in (SHARED_DIR / "scenarios" / "dev").iterdir() if p.is_dir())
    if args.calls == 0:
        calls = all_calls
    elif args.calls < 0:
        calls = [c for c in DEFAULT_CALLS if c in all_calls]
    else:
        calls = all_calls[: args.calls]

    t0 = time.perf_counter()
    tr8 = Transcriber(use_vad=args.vad)
    load_s = time.perf_counter() - t0
    tr16 = Transcriber(feed_rate=16000, use_vad=args.vad)
    vad = "on" if args.vad else "off"
    print(
        f"model {tr8.model_path.name} loaded in {load_s:.2f} s; VAD {vad}; "
        f"{args.workers} worker threads; calls {', '.join(calls)}"
    )

    tallies: list[Tally] = []
    if not args.skip_realspeech:
        tallies.append(realspeech(tr8, "wav16k", args.workers))
        tallies.append(realspeech(tr8, "wav8k", args.workers))
    for leg in ("agent", "caller"):
        tallies.append(scenario(tr8, calls, leg, f"scenario {leg} 8k as recorded", args.workers))
        tallies.append(scenario(tr16, calls, leg, f"scenario {leg} upsampled to 16k", args.workers))

    print()
    for tally in tallies:
        print(tally.line())
    print(BASELINE)

    # One call, both legs, as the service would do it (sequentially, one thread).
    call = calls[0]
    t1 = time.perf_counter()
    legs: tuple[LegName, ...] = ("caller", "agent")
    for leg in legs:
        tr8.transcribe_file(SHARED_DIR / "scenarios" / "dev" / call / f"{leg}.wav", leg)
    wall = time.perf_counter() - t1
    x, rate = read_mono(SHARED_DIR / "scenarios" / "dev" / call / "agent.wav")
    print(f"one call {call} ({len(x) / rate:.1f} s, both legs, 8k, one thread): {wall:.2f} s wall")

    if args.examples:
        print_examples(tr8, calls, args.examples)
    print(f"total bench time {time.perf_counter() - t0:.1f} s")
    return 0


def print_examples(tr: Transcriber, calls: list[str], per_leg: int) -> None:
    """Per-turn reference vs recognised text: the recognised words overlapping each turn."""
    base = SHARED_DIR / "scenarios" / "dev"
    for call in calls:
        meta = json.loads((base / call / "meta.json").read_text(encoding="utf-8"))
        print(f"\n== {call} {meta['title']}")
        for leg in ("agent", "caller"):
            segs = tr.transcribe_file(base / call / f"{leg}.wav", leg)
            words = [w for s in segs for w in s.words]
            shown = 0
            for turn in meta["timeline"]:
                if turn["who"] != leg or shown >= per_leg:
                    continue
                got = "".join(w.w for w in words if w.end > turn["start"] and w.start < turn["end"])
                ref = normalize(turn["text"])
                if ref != got:
                    print(f"  {leg:<6} true: {ref}\n  {'':<6} asr:  {got}")
                    shown += 1


if __name__ == "__main__":
    sys.exit(main())
