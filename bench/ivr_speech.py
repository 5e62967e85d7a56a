"""Spoken IVR menu choices: accuracy and decoding time of the grammar recogniser
(``callcenter ivr recognize``, the same function) on the shared IVR clips.

The clips (``../shared/scenarios/ivr/*.wav``, 8 kHz) are a test set: only the
``id`` and ``intent`` columns of ``labels.tsv`` are read, and the grammars
(``grammars/families.yaml``) were written without them.

Printed: accuracy (goal 95 %), a confusion table, decoding time per utterance
(p50, p95, mean: resampling and both decodes, the grammar one and the free
second opinion, side by side in the pool; after the model was loaded and the
grammars compiled, which is timed apart) and the real-time factor (decoding time
/ audio time), then the wall time of all clips through the asyncio path with its
worker pool. Then the grammar decode alone (``second_opinion=None``, the
recogniser before the second opinion: accuracy, timing) and without its
out-of-grammar check either (``max_unseen_share=None``). Beside it, measured in
the same run, the baseline: free large-vocabulary decoding of the same clips
(``callcenter.asr.decoder.Transcriber``, the same model and feed rate) followed
by the same phrase matching, without a confidence threshold.

    flock /tmp/cc-e2e.lock .venv/bin/python bench/ivr_speech.py [--menu main]
        [--clips DIR] [--workers 2] [--details]

``--own`` measures on the project's own data instead, where every setting was
chosen (before = the grammar decode alone, after = with the second opinion):
``tests/data/ivr/*.tsv`` synthesised with espeak-ng in three voices (0.5 s of
line noise around each), 2-3 s pieces of ``../shared/realspeech`` (human, none
of them a menu choice, both grammars), and the clauses of the caller turns of
``../shared/scenarios/dev`` (neural TTS, cut at the pauses, labelled by the
phrase match of their text, both grammars). About 25 minutes on two cores.

    flock /tmp/cc-e2e.lock .venv/bin/python bench/ivr_speech.py --own [--work DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procstat import pct  # noqa: E402

from callcenter.asr.decoder import Transcriber  # noqa: E402
from callcenter.audio import read_mono, resample, write_wav  # noqa: E402
from callcenter.ivr.grammars import NO_CHOICE, SAFETY_CHOICES, MenuGrammar  # noqa: E402
from callcenter.ivr.speech import (  # noqa: E402
    FEED_RATE,
    MenuRecognizer,
    Recognition,
    recognition_entries,
)
from callcenter.prompts import ToolPlace  # noqa: E402
from callcenter.sandbox.asterisk import AsteriskSandbox  # noqa: E402
from callcenter.settings import SHARED_DIR, get_settings  # noqa: E402

CLIPS = SHARED_DIR / "scenarios" / "ivr"
GOAL_ACCURACY = 0.95
OWN_DATA = ROOT / "tests" / "data" / "ivr"
OWN_FILES = {"own utterances": "own_utterances.tsv", "long choices": "own_long_choices.tsv",
             "own non-choices": "own_non_choices.tsv"}
# espeak-ng voice, speed (words per minute), pitch, and the line noise's level
# below the speech (dB): three speakers, the last on a noisy line
VOICES = (("cmn", 150, 50, 40.0), ("cmn+f3", 175, 65, 40.0), ("cmn+m3", 125, 35, 20.0))
REAL_SPEECH = SHARED_DIR / "realspeech" / "wav8k"
PIECE_S = (2.0, 2.5, 3.0)
DEV_CALLS = SHARED_DIR / "scenarios" / "dev"
CLAUSE_END = re.compile(r"[，。！？…、；：,.!?]+")


@dataclass(frozen=True, slots=True)
class Decoded:
    id: str
    want: str
    got: str
    decode_ms: float
    audio_ms: float
    confidence: float = 1.0
    text: str = ""
    free_text: str | None = None


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
                               entry["audio_ms"], entry["confidence"], entry["text"],
                               entry["free_text"]))
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
            free = "" if d.free_text is None else f", free {d.free_text!r}"
            print(f"  {d.id}: label {d.want}, got {d.got} ({d.confidence:.2f}) "
                  f"heard {d.text!r}{free}{flag}")


# -- the project's own sets (--own) -------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnItem:
    set: str
    menu: str
    want: str
    path: Path


def espeak_place() -> ToolPlace:
    """espeak-ng on PATH, else in the built Asterisk sandbox root (chroot)."""
    import shutil

    if shutil.which("espeak-ng"):
        return ToolPlace()
    root = AsteriskSandbox(cache_dir=get_settings().cache_dir).root
    if not (root / "usr/bin/espeak-ng").is_file():
        raise SystemExit("--own needs espeak-ng (on PATH or in the Asterisk sandbox)")
    return ToolPlace(root)


def synthesised(place: ToolPlace, text: str, voice: tuple[str, int, int, float],
                work: Path) -> Path:
    """``text`` said by an espeak-ng voice, at 8 kHz, with line noise around it."""
    name, speed, pitch, noise_db = voice
    key = hashlib.sha1(f"{text}|{voice}".encode()).hexdigest()[:16]
    out = work / "espeak" / f"{key}.wav"
    if out.is_file():
        return out
    with place.scratch() as (here, there):
        (here / "text.txt").write_text(text + "\n", encoding="utf-8")
        place.run(["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch),
                   "-w", f"{there}/speech.wav", "-f", f"{there}/text.txt"])
        samples, rate = read_mono(here / "speech.wav")
    speech = resample(samples, rate, 8000).astype(np.float64)
    padded = np.concatenate([np.zeros(4000), speech, np.zeros(4000)])
    level = float(np.sqrt(np.mean(speech**2))) or 1000.0
    noise = np.random.default_rng(int(key[:8], 16)).normal(0, level / 10 ** (noise_db / 20),
                                                          len(padded))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_wav(out, np.clip(padded + noise, -32768, 32767).astype(np.int16), 8000)
    return out


def own_rows(name: str) -> list[list[str]]:
    with (OWN_DATA / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.reader((line for line in fh if not line.startswith("#")),
                               delimiter="\t"))


def synthesised_items(work: Path) -> Iterator[OwnItem]:
    place = espeak_place()
    for set_name, file_name in OWN_FILES.items():
        for menu, want, text in own_rows(file_name):
            for voice in VOICES:
                yield OwnItem(set_name, menu, want, synthesised(place, text, voice, work))


def real_speech_items(work: Path) -> Iterator[OwnItem]:
    """Pieces of 2, 2.5 and 3 s (in turn) from two starting points of each clip."""
    count = 0
    for clip in sorted(REAL_SPEECH.glob("*.wav")):
        samples, rate = read_mono(clip)
        for first in (0.0, 0.8):
            at = first
            while at + PIECE_S[count % 3] <= len(samples) / rate:
                length = PIECE_S[count % 3]
                out = work / "realspeech" / f"{clip.stem}_{round(at * 10):03d}.wav"
                out.parent.mkdir(parents=True, exist_ok=True)
                write_wav(out, samples[round(at * rate): round((at + length) * rate)], rate)
                for menu in ("main", "repair"):
                    yield OwnItem("realspeech pieces", menu, NO_CHOICE, out)
                at += length
                count += 1


def pauses(samples: np.ndarray, rate: int, frame_s: float = 0.02,
           min_s: float = 0.12) -> tuple[list[float], float, float]:
    """Middles of the pauses inside the speech, and where the speech starts and ends."""
    hop = int(frame_s * rate)
    frames = samples[: len(samples) // hop * hop].astype(np.float64).reshape(-1, hop)
    energy = np.sqrt(np.mean(frames**2, axis=1))
    quiet = energy < max(np.percentile(energy, 95) * 0.05, 60)
    voiced = np.nonzero(~quiet)[0]
    if len(voiced) == 0:
        return [], 0.0, 0.0
    middles, run = [], 0
    for i in range(voiced[0], voiced[-1] + 1):
        if quiet[i]:
            run += 1
            continue
        if run * frame_s >= min_s:
            middles.append((i - run / 2) * frame_s)
        run = 0
    return middles, voiced[0] * frame_s, (voiced[-1] + 1) * frame_s


def clause_bounds(clauses: Sequence[str], samples: np.ndarray, rate: int
                  ) -> list[float] | None:
    """Where each clause starts and ends: the pauses nearest the places the clauses'
    lengths in characters predict. None when the turn has too few pauses."""
    middles, start, end = pauses(samples, rate)
    if len(middles) < len(clauses) - 1:
        return None
    total, said, cuts = sum(map(len, clauses)), 0, []
    for clause in clauses[:-1]:
        said += len(clause)
        predicted = start + (end - start) * said / total
        free = [m for m in middles if m not in cuts]
        cuts.append(min(free, key=lambda m: abs(m - predicted)))
    return [start, *sorted(cuts), end]


def dev_clause_items(grammars: dict[str, MenuGrammar], work: Path) -> Iterator[OwnItem]:
    for meta_path in sorted(DEV_CALLS.glob("*/meta.json")):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        leg, rate = read_mono(meta_path.parent / "caller.wav")
        turns = [t for t in meta["timeline"] if t["who"] == "caller"]
        for t_index, turn in enumerate(turns):
            piece = leg[max(0, int((turn["start"] - 0.3) * rate)): int((turn["end"] + 0.3) * rate)]
            clauses = [c for c in CLAUSE_END.split(turn["text"]) if c]
            bounds = clause_bounds(clauses, piece, rate)
            for c_index, clause in enumerate(clauses if bounds else []):
                assert bounds is not None
                start, end = bounds[c_index], bounds[c_index + 1]
                if not 0.08 <= (end - start) / len(clause) <= 0.6:
                    continue  # a cut that cannot hold this clause
                out = work / "clauses" / f"{meta['id']}_{t_index:02d}_{c_index}.wav"
                out.parent.mkdir(parents=True, exist_ok=True)
                write_wav(out, piece[max(0, int((start - 0.25) * rate)):
                                     int((end + 0.25) * rate)], rate)
                for menu in ("main", "repair"):
                    yield OwnItem("dev-call clauses", menu, grammars[menu].match(clause), out)


def is_choice_figures(pairs: Sequence[tuple[str, str]]) -> str:
    """(wanted, got) pairs: precision and recall of "is a choice", choices right,
    non-choices taken for a choice."""
    said = [got for want, got in pairs if want != NO_CHOICE]
    right = sum(got == want for want, got in pairs if want != NO_CHOICE)
    taken = sum(got != NO_CHOICE for want, got in pairs if want == NO_CHOICE)
    accepted = sum(got != NO_CHOICE for got in said)
    precision = f"{accepted / (accepted + taken):.3f}" if accepted + taken else "-"
    recall = f"{accepted / len(said):.3f}" if said else "-"
    return (f"P {precision:>5} R {recall:>5}  right {right:>3}/{len(said):<3}  "
            f"non-choices taken {taken:>3}/{len(pairs) - len(said)}")


def own_report(results: Sequence[tuple[OwnItem, Recognition, Recognition]]) -> None:
    groups: dict[str, list[tuple[OwnItem, Recognition, Recognition]]] = defaultdict(list)
    for result in results:
        groups[result[0].set].append(result)
        if result[0].want in SAFETY_CHOICES:
            voice = "espeak" if result[0].set in OWN_FILES else "dev calls"
            groups[f"emergencies ({voice})"].append(result)
    for name, rows in groups.items():
        print(f"\n== {name}: {len(rows)} utterances ==")
        for label, which in (("before", 1), ("after ", 2)):
            pairs = [(item.want, heard[which - 1].choice) for item, *heard in rows]
            times = [heard[which - 1].decode_ms for _, *heard in rows]
            print(f"  {label}  {is_choice_figures(pairs)};  decode p50 "
                  f"{pct(times, 0.5):.0f} ms, p95 {pct(times, 0.95):.0f} ms")


def own_main(work: Path) -> int:
    with MenuRecognizer(allow_network=False) as after, \
            MenuRecognizer(allow_network=False, second_opinion=None) as before:
        after.warm_up()
        before.warm_up()
        items = [*synthesised_items(work), *real_speech_items(work),
                 *dev_clause_items(after.grammars, work)]
        print(f"{len(items)} utterances; work folder {work}")
        results = []
        for n, item in enumerate(items, 1):
            results.append((item, before.recognize_file(item.path, item.menu),
                            after.recognize_file(item.path, item.menu)))
            if n % 200 == 0:
                print(f"  {n}/{len(items)}", file=sys.stderr, flush=True)
    own_report(results)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--menu", default="main", help="the grammar the clips answer")
    parser.add_argument("--clips", type=Path, default=CLIPS)
    parser.add_argument("--workers", type=int, default=2, help="for the asyncio figure")
    parser.add_argument("--details", action="store_true", help="every utterance")
    parser.add_argument("--own", action="store_true",
                        help="the project's own sets instead of the IVR clips")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ivr-speech-own"),
                        help="--own: where the synthesised and cut audio goes")
    args = parser.parse_args()
    if args.own:
        return own_main(args.work)
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
        report("grammar recogniser + free second opinion", system, choices, args.details)
        confirmed = sum(d.free_text is not None for d in system)
        print(f"free decode run to the end for {confirmed}/{len(system)} utterances "
              "(stopped early where the grammar decode settled it)")
        paths = [args.clips / f"{clip}.wav" for clip in labels]
        wall = asyncio.run(pooled_wall_s(recognizer, args.menu, paths))
        print(f"asyncio path, {args.workers} workers: {len(paths)} utterances in {wall:.2f} s")
        recognizer.second_opinion = None
        grammar_only = system_run(recognizer, args.menu, args.clips, labels)
        print(f"grammar decode alone (no second opinion): accuracy {accuracy(grammar_only):.1%}, "
              f"none recognised as none {_none_kept(grammar_only)}; {timing_line(grammar_only)}")
        recognizer.max_unseen_share = None
        unchecked = system_run(recognizer, args.menu, args.clips, labels)
        print(f"grammar decode alone without its out-of-grammar check: accuracy "
              f"{accuracy(unchecked):.1%}, none recognised as none {_none_kept(unchecked)}")
    report("baseline: free decoding + phrase matching", baseline_run(grammar, args.clips, labels),
           choices, args.details)
    return 0 if accuracy(system) >= GOAL_ACCURACY else 1


if __name__ == "__main__":
    raise SystemExit(main())
