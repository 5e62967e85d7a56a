"""Spoken IVR menu choices: accuracy and decoding time of the grammar recogniser
(``callcenter ivr recognize``, the same function) on the shared IVR clips.

The clips (``../shared/scenarios/ivr/*.wav``, 8 kHz) are a test set: only the
``id`` and ``intent`` columns of ``labels.tsv`` are read, and the grammars
(``grammars/families.yaml``) were written without them.

Printed: accuracy (goal 95 %), a confusion table, decoding time per utterance
(p50, p95, mean; after the grammars were compiled once, which is timed apart)
and the real-time factor (decoding time / audio time, one thread), then the
wall time of all clips through the asyncio path with its worker pool, and the
accuracy without the out-of-grammar check (``max_unseen_share=None``). Beside it,
measured in the same run, the baseline: free large-vocabulary decoding of the
same clips (``callcenter.asr.decoder.Transcriber``, the same model and feed
rate) followed by the same phrase matching, without a confidence threshold.

    flock /tmp/cc-e2e.lock .venv/bin/python bench/ivr_speech.py [--menu main]
        [--clips DIR] [--workers 2] [--details]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procstat import pct  # noqa: E402

from callcenter.asr.decoder import Transcriber  # noqa: E402
from callcenter.audio import read_mono, resample  # noqa: E402
from callcenter.ivr.grammars import NO_CHOICE, MenuGrammar  # noqa: E402
from callcenter.ivr.speech import FEED_RATE, MenuRecognizer, recognition_entries  # noqa: E402
from callcenter.settings import SHARED_DIR  # noqa: E402

CLIPS = SHARED_DIR / "scenarios" / "ivr"
GOAL_ACCURACY = 0.95


@dataclass(frozen=True, slots=True)
class Decoded:
    id: str
    want: str
    got: str
    decode_ms: float
    audio_ms: float
    confidence: float = 1.0
    text: str = ""


def read_labels(clips: Path) -> dict[str, str]:
    """id -> intent; the text column is never read (the phrases must not see it)."""
    with (clips / "labels.tsv").open(encoding="utf-8", newline="") as fh:
        return {row[0]: row[2] for row in csv.reader(fh, delimiter="\t") if len(row) >= 3}


def system_run(recognizer: MenuRecognizer, menu: str, clips: Path, labels: dict[str, str]
               ) -> list[Decoded]:
    paths = [clips / f"{clip}.wav" for clip in labels]
    decoded = []
    for entry in recognition_entries(recognizer, menu, paths):
        clip = Path(entry["file"]).stem
        if "error" in entry:
            print(f"{clip}: {entry['error']}", file=sys.stderr)
            decoded.append(Decoded(clip, labels[clip], "error", 0.0, 0.0))
            continue
        decoded.append(Decoded(clip, labels[clip], entry["choice"], entry["decode_ms"],
                               entry["audio_ms"], entry["confidence"], entry["text"]))
    return decoded


def baseline_run(grammar: MenuGrammar, clips: Path, labels: dict[str, str]) -> list[Decoded]:
    transcriber = Transcriber(feed_rate=FEED_RATE, allow_network=False)
    decoded = []
    for clip, want in labels.items():
        samples, rate = read_mono(clips / f"{clip}.wav")
        started = time.perf_counter()
        fed = resample(samples, rate, FEED_RATE)
        text = " ".join(s.text for s in transcriber.transcribe(fed, FEED_RATE, "caller"))
        decode_ms = (time.perf_counter() - started) * 1000
        decoded.append(Decoded(clip, want, grammar.match(text), decode_ms,
                               len(samples) * 1000 / rate, text=text))
    return decoded


async def pooled_wall_s(recognizer: MenuRecognizer, menu: str, paths: Sequence[Path]) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(recognizer.recognize_choice(menu, p) for p in paths))
    return time.perf_counter() - started


def accuracy(decoded: Sequence[Decoded]) -> float:
    return sum(d.got == d.want for d in decoded) / len(decoded)


def _none_kept(decoded: Sequence[Decoded]) -> str:
    nones = [d for d in decoded if d.want == NO_CHOICE]
    return f"{sum(d.got == NO_CHOICE for d in nones)}/{len(nones)}"


def confusion(decoded: Sequence[Decoded], labels: Sequence[str]) -> str:
    counts = Counter((d.want, d.got) for d in decoded)
    used = [x for x in labels if any(x in k for k in counts)]
    width = max(8, *(len(x) + 1 for x in used))
    lines = ["  rows = label, columns = recognised",
             "  " + " " * width + "".join(f"{x[:width - 1]:>{width}}" for x in used)]
    for want in used:
        cells = "".join(f"{counts.get((want, got), 0) or '.':>{width}}" for got in used)
        lines.append(f"  {want:<{width}}{cells}")
    return "\n".join(lines)


def timing_line(decoded: Sequence[Decoded]) -> str:
    times = [d.decode_ms for d in decoded]
    rtf = sum(times) / sum(d.audio_ms for d in decoded)
    return (f"decode per utterance: p50 {pct(times, 0.5):.0f} ms, p95 {pct(times, 0.95):.0f} ms,"
            f" mean {statistics.fmean(times):.0f} ms; real-time factor {rtf:.3f}")


def report(title: str, decoded: Sequence[Decoded], choices: Sequence[str], details: bool) -> None:
    acc = accuracy(decoded)
    mark = "ok" if acc >= GOAL_ACCURACY else "BELOW GOAL"
    print(f"\n== {title}: {len(decoded)} utterances ==")
    print(f"accuracy {acc:.1%} (goal {GOAL_ACCURACY:.0%}: {mark})")
    print(confusion(decoded, [*choices, NO_CHOICE, "error"]))
    print(timing_line(decoded))
    if details:
        for d in decoded:
            flag = "" if d.got == d.want else "  WRONG"
            print(f"  {d.id}: label {d.want}, got {d.got} ({d.confidence:.2f}) "
                  f"heard {d.text!r}{flag}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--menu", default="main", help="the grammar the clips answer")
    parser.add_argument("--clips", type=Path, default=CLIPS)
    parser.add_argument("--workers", type=int, default=2, help="for the asyncio figure")
    parser.add_argument("--details", action="store_true", help="every utterance")
    args = parser.parse_args()
    if not (args.clips / "labels.tsv").is_file():
        print(f"no labelled clips at {args.clips}", file=sys.stderr)
        return 2
    labels = read_labels(args.clips)
    with MenuRecognizer(workers=args.workers, allow_network=False) as recognizer:
        started = time.perf_counter()
        recognizer.warm_up()
        warm_s = time.perf_counter() - started
        grammar = recognizer.grammars[args.menu]
        choices = list(grammar.choices)
        print(f"grammar {args.menu!r}: {len(grammar.phrases())} phrases, "
              f"{len(choices)} choices; min_confidence {recognizer.min_confidence}; "
              f"model load and grammar compilation {warm_s:.2f} s")
        system = system_run(recognizer, args.menu, args.clips, labels)
        report("grammar recogniser", system, choices, args.details)
        paths = [args.clips / f"{clip}.wav" for clip in labels]
        wall = asyncio.run(pooled_wall_s(recognizer, args.menu, paths))
        print(f"asyncio path, {args.workers} workers: {len(paths)} utterances in {wall:.2f} s")
        recognizer.max_unseen_share = None
        unchecked = system_run(recognizer, args.menu, args.clips, labels)
        print(f"without the out-of-grammar check: accuracy {accuracy(unchecked):.1%}, "
              f"none recognised as none {_none_kept(unchecked)}")
    report("baseline: free decoding + phrase matching", baseline_run(grammar, args.clips, labels),
           choices, args.details)
    return 0 if accuracy(system) >= GOAL_ACCURACY else 1


if __name__ == "__main__":
    raise SystemExit(main())
