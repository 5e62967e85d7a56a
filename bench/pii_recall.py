"""Personal numbers found in real calls' audio, beside the first pass alone.

For each dev call, the numbers of seven or more digits said in it (from its
ground-truth timeline, by either side) are the ones to find. The call's two legs
are transcribed (bench/asr_accuracy.py's cache), then the digit pass
(``Transcriber.numbers``) decodes where a number is being given. Reported:

- numbers caught: a labelled number whose time a finding overlaps (so it is
  muted in the copy and its words masked in the transcript);
- digits left legible: of a caught number's digits, how many the masked first
  pass still shows (words the finding's time did not cover);
- findings with no labelled number near them (masked and muted needlessly);
- the baseline in the same run: the first pass alone (``pii.redact`` over its
  text, no digit pass).

The dev calls are a test set: nothing in the digit pass was chosen on them.

    .venv/bin/python bench/pii_recall.py [--jobs 2]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from asr_accuracy import model_path, transcripts  # noqa: E402
from text_accuracy import DEV_DIR, load_calls  # noqa: E402

from callcenter import pii  # noqa: E402
from callcenter.asr.decoder import Transcriber  # noqa: E402
from callcenter.audio import read_mono  # noqa: E402
from callcenter.core import Segment  # noqa: E402

DIGIT_CHARS = "0123456789零〇一幺二两三四五六七八九洞"
SAID_NUMBER = re.compile(f"[{DIGIT_CHARS}，、 -]{{7,}}")
NEAR_S = 1.5  # a finding this close to a labelled number's turn counts as on it


def labelled_numbers(meta: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(leg, start, end) of each turn that says a number of 7+ digits."""
    found = []
    for turn in meta["timeline"]:
        for run in SAID_NUMBER.findall(turn["text"]):
            if sum(ch in DIGIT_CHARS for ch in run) >= 7:
                found.append((turn["who"], float(turn["start"]), float(turn["end"])))
                break
    return found


def overlaps(f: pii.Finding, leg: str, start: float, end: float) -> bool:
    return f.leg == leg and f.start < end + NEAR_S and start - NEAR_S < f.end


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2, help="decoding processes (first pass)")
    args = parser.parse_args()
    if not DEV_DIR.is_dir():
        print(f"no dev calls at {DEV_DIR}", file=sys.stderr)
        return 2
    calls = load_calls()
    timelines = transcripts(calls, args.jobs, refresh=False)
    transcriber = Transcriber(model_path())
    totals = {"labelled": 0, "caught": 0, "caught_first": 0, "spurious": 0,
              "spurious_first": 0, "legible": 0, "digits": 0, "audio_s": 0.0, "cpu_s": 0.0}
    for meta in calls:
        labelled = labelled_numbers(meta)
        timeline = timelines[meta["id"]]
        digits: list[Segment] = []
        for leg in ("caller", "agent"):
            samples, rate = read_mono(DEV_DIR / meta["id"] / f"{leg}.wav")
            began = time.thread_time()
            digits += transcriber.numbers(samples, rate, leg, timeline.segments)
            totals["cpu_s"] += time.thread_time() - began
            totals["audio_s"] += len(samples) / rate
        spoken = pii.number_findings(digits, timeline.segments)
        masked, findings = pii.redact(timeline.segments, spoken)
        _, first_only = pii.redact(timeline.segments)
        totals["labelled"] += len(labelled)
        for leg, start, end in labelled:
            caught = [f for f in findings if overlaps(f, leg, start, end)]
            totals["caught"] += bool(caught)
            totals["caught_first"] += any(overlaps(f, leg, start, end) for f in first_only)
            if caught:
                shown = "".join(s.text for s in masked if s.leg == leg
                                and s.start < end + NEAR_S and start - NEAR_S < s.end)
                turn_digits = sum(ch in DIGIT_CHARS for ch in shown)
                totals["legible"] += turn_digits
                totals["digits"] += 11
        totals["spurious"] += sum(not any(overlaps(f, *n) for n in labelled) for f in findings)
        totals["spurious_first"] += sum(not any(overlaps(f, *n) for n in labelled)
                                        for f in first_only)
        for f in findings:
            if not any(overlaps(f, *n) for n in labelled):
                print(f"  {meta['id']}: a finding with no labelled number: {f}")
    n = totals["labelled"]
    print(f"dev calls: {len(calls)}, numbers of 7+ digits said: {n}")
    print(f"  first pass alone (baseline): caught {totals['caught_first']}/{n},"
          f" findings with no number near: {totals['spurious_first']}")
    print(f"  with the digit pass:         caught {totals['caught']}/{n},"
          f" findings with no number near: {totals['spurious']}")
    print(f"  digit characters still legible near caught numbers: {totals['legible']}"
          f" (about {totals['digits']} digits said)")
    print(f"  digit pass CPU: {totals['cpu_s']:.1f} s for {totals['audio_s']:.0f} s of legs"
          f" ({100 * totals['cpu_s'] / max(1.0, totals['audio_s']):.2f} % of real time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
