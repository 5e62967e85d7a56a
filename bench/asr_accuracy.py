"""Ticket and QA accuracy over the 45 dev calls on recognised speech (ASR mode),
next to text mode (ground-truth timelines) for the same calls.

Both legs of every call are transcribed with ``callcenter.asr.decoder.Transcriber``
through ``callcenter.pipeline.transcribe_two_legs`` (the second pass's number,
address and name readings included, as the worker makes them) and analysed with
``callcenter.pipeline.analyze(..., source="asr")``. The system gets only the audio,
``ivr_digits`` and ``caller.phone``; labels and the other caller fields are used for
scoring only. Transcripts are cached as JSON under ``Settings().cache_dir /
"bench-asr"`` (keyed by call id, model name, decoder search, the decoder's own
dither and whether silence was skipped: ``CALLCENTER_ASR_SKIP_SILENCE=true``), so
only the first run decodes (about 12 s of CPU per call; ``--jobs`` runs calls in parallel).

    .venv/bin/python bench/asr_accuracy.py [--jobs 2] [--details] [--refresh]
    .venv/bin/python bench/asr_accuracy.py --show d007   # print a cached transcript
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from text_accuracy import (  # noqa: E402
    DEV_DIR,
    LABELLED_RULES,
    NOW,
    _said,
    _surname,
    _verdict,
    allowed_input,
    facts_of,
    label_of_rule,
    load_calls,
    run_system,
)

from callcenter.core import QaResult, Segment, Ticket, Timeline, Word  # noqa: E402
from callcenter.dialogue import build_timeline  # noqa: E402
from callcenter.pipeline import analyze  # noqa: E402
from callcenter.settings import Settings  # noqa: E402

Result = tuple[Ticket, QaResult | None]


# --- transcripts and their cache ---------------------------------------------------


def cache_dir() -> Path:
    return Settings().cache_dir / "bench-asr"


def model_path() -> Path:
    from callcenter.asr.model import resolve_model

    return Path(resolve_model(None, allow_network=False))


def skip_silence() -> bool:
    """Whether the first pass decodes only the speech the VAD finds: the service's
    own setting (``CALLCENTER_ASR_SKIP_SILENCE``), so a bench reads what it would."""
    return Settings().asr_skip_silence


def cache_file(call_id: str, model_name: str) -> Path:
    from callcenter.asr.decoder import DITHER
    from callcenter.asr.search import NARROW

    vad = "+vad" if skip_silence() else ""
    return cache_dir() / f"{call_id}--{model_name}+{NARROW.tag}-d{DITHER:g}{vad}.json"


def _seg_to_json(seg: Segment) -> dict[str, Any]:
    return {
        "leg": seg.leg,
        "start": seg.start,
        "end": seg.end,
        "text": seg.text,
        "words": [[w.w, w.start, w.end, w.conf] for w in seg.words],
    }


def _seg_from_json(d: dict[str, Any]) -> Segment:
    words = [Word(str(w), float(a), float(b), float(c)) for w, a, b, c in d["words"]]
    return Segment(d["leg"], float(d["start"]), float(d["end"]), str(d["text"]), words)


def _transcribe_call(call_dir: str, model: str, use_vad: bool) -> dict[str, Any]:
    """Worker: both legs of one call, as JSON-ready data (runs in a child process)."""
    from callcenter.asr.decoder import Transcriber
    from callcenter.pipeline import transcribe_two_legs

    t0 = time.perf_counter()
    folder = Path(call_dir)
    timeline, _ = transcribe_two_legs(
        folder / "caller.wav", folder / "agent.wav", Transcriber(Path(model), use_vad=use_vad)
    )
    return {
        "call": folder.name,
        "model": Path(model).name,
        "duration": timeline.duration,
        "segments": [_seg_to_json(s) for s in timeline.segments],
        "decode_s": round(time.perf_counter() - t0, 1),
    }


def load_timeline(data: dict[str, Any]) -> Timeline:
    segs = [_seg_from_json(d) for d in data["segments"]]
    return build_timeline(
        [s for s in segs if s.leg == "caller"],
        [s for s in segs if s.leg == "agent"],
        float(data["duration"]),
    )


def transcripts(calls: list[dict[str, Any]], jobs: int, refresh: bool, *,
                numbers: bool = False) -> dict[str, Timeline]:
    """The dev calls' timelines through Vosk (the first pass cached); ``numbers``: with
    the second pass's readings too (``pipeline.with_numbers``, decoded every run:
    it changes with the code, and costs about 0.2 % of real time)."""
    model = model_path()
    todo = [m["id"] for m in calls if refresh or not cache_file(m["id"], model.name).is_file()]
    if todo:
        cache_dir().mkdir(parents=True, exist_ok=True)
        vad = " skipping silence" if skip_silence() else ""
        print(f"transcribing {len(todo)} calls with {model.name}{vad}, {jobs} jobs ...",
              file=sys.stderr)
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [
                pool.submit(_transcribe_call, str(DEV_DIR / cid), str(model), skip_silence())
                for cid in todo
            ]
            for fut in futures:
                data = fut.result()
                cache_file(data["call"], model.name).write_text(
                    json.dumps(data, ensure_ascii=False), encoding="utf-8"
                )
                print(f"  {data['call']}: {data['decode_s']} s", file=sys.stderr)
        print(f"done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    timelines = {
        m["id"]: load_timeline(json.loads(cache_file(m["id"], model.name).read_text("utf-8")))
        for m in calls
    }
    if numbers:
        from callcenter.asr.decoder import Transcriber
        from callcenter.audio import read_mono
        from callcenter.pipeline import with_numbers

        transcriber = Transcriber(model, use_vad=skip_silence())
        for call_id, timeline in timelines.items():
            with_numbers(timeline, {leg: read_mono(DEV_DIR / call_id / f"{leg}.wav")
                                    for leg in ("caller", "agent")}, transcriber)
    return timelines


# --- scoring -------------------------------------------------------------------------


def first_pass_cer(calls: list[dict[str, Any]], timelines: dict[str, Timeline]) -> str:
    """The first pass's character error rate per leg against the timeline text (what
    skipping silence, ``CALLCENTER_ASR_SKIP_SILENCE``, must not make worse)."""
    from asr_cer import Item, Tally

    legs = {leg: Tally(leg, [
        Item(m["id"], "".join(t["text"] for t in m["timeline"] if t["who"] == leg),
             "".join(s.text for s in timelines[m["id"]].segments if s.leg == leg))
        for m in calls
    ]) for leg in ("caller", "agent")}
    both = Tally("both", [i for tally in legs.values() for i in tally.items])
    vad = "skipping silence" if skip_silence() else "whole legs"
    return f"first pass CER ({vad}): " + ", ".join(
        f"{t.label} {t.cer:.2%}" for t in (*legs.values(), both))


def rule_label(meta: dict[str, Any], rule: str) -> bool | None:
    """The label of a QA rule; speech_rate from ``agent_chars_per_min`` (README)."""
    if rule == "speech_rate" and meta.get("agent_chars_per_min") is not None:
        rate = float(meta["agent_chars_per_min"])
        if rate > 160 or rate < 100:
            return False
        if 118 <= rate <= 142:
            return True
        return None
    return label_of_rule(meta, rule)


@dataclass
class Row:
    name: str
    n: int
    text_ok: int
    asr_ok: int
    extra: str = ""


def verdict(result: QaResult | None, rule: str) -> bool | None:
    return None if result is None else _verdict(result, rule)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2, help="parallel decoding processes")
    parser.add_argument("--refresh", action="store_true", help="decode again, ignore the cache")
    parser.add_argument("--details", action="store_true", help="print every ASR disagreement")
    parser.add_argument("--show", metavar="ID", help="print one call's ASR transcript and exit")
    args = parser.parse_args()
    if not DEV_DIR.is_dir():
        print(f"no test data at {DEV_DIR}", file=sys.stderr)
        return 2
    calls = load_calls()
    if args.show:
        calls = [m for m in calls if m["id"] == args.show]
    timelines = transcripts(calls, args.jobs, args.refresh, numbers=not args.show)
    if args.show:
        for s in timelines[args.show].segments:
            conf = " ".join(f"{w.w}:{w.conf:.2f}" for w in s.words)
            print(f"{s.leg:6} {s.start:7.2f}-{s.end:7.2f} {s.text}    [{conf}]")
        return 0

    text: dict[str, Result] = {m["id"]: run_system(m) for m in calls}
    asr: dict[str, Result] = {}
    for m in calls:
        ticket, qa = analyze(timelines[m["id"]], facts_of(allowed_input(m)), source="asr", now=NOW)
        assert ticket is not None
        asr[m["id"]] = (ticket, qa)

    rows: list[Row] = []
    misses: list[str] = []

    def field(
        name: str,
        got: Callable[[Result], Any],
        want: Callable[[dict[str, Any]], Any],
        only: Callable[[dict[str, Any]], bool] = lambda m: True,
    ) -> None:
        sel = [m for m in calls if only(m)]
        if not sel:
            return
        text_ok = sum(got(text[m["id"]]) == want(m) for m in sel)
        asr_ok = 0
        false_fail = 0
        for m in sel:
            g, w = got(asr[m["id"]]), want(m)
            if g == w:
                asr_ok += 1
            else:
                misses.append(f"{m['id']} {name}: asr {g!r} want {w!r}")
                false_fail += g is False and w is True
        extra = f"false fails {false_fail}" if name.startswith("qa:") else ""
        rows.append(Row(name, len(sel), text_ok, asr_ok, extra))

    lab = lambda m: m["labels"]  # noqa: E731
    cal = lambda m: m["caller"]  # noqa: E731
    field("category", lambda r: r[0].category, lambda m: lab(m)["category"])
    field("urgency", lambda r: r[0].urgency, lambda m: lab(m)["urgency"])
    field(
        "complaint_severity",
        lambda r: r[0].complaint_severity,
        lambda m: lab(m)["complaint_severity"],
    )
    field("repeat_complaint", lambda r: r[0].repeat_complaint, lambda m: lab(m)["repeat_complaint"])
    field("vip", lambda r: r[0].vip, lambda m: cal(m)["vip"])
    for f in ("building", "unit", "room"):
        field(f, lambda r, f=f: getattr(r[0], f), lambda m, f=f: cal(m)[f])  # type: ignore[misc]
    field(
        "address (all three)",
        lambda r: (r[0].building, r[0].unit, r[0].room),
        lambda m: (cal(m)["building"], cal(m)["unit"], cal(m)["room"]),
    )
    surname_of = {m["id"]: _surname(cal(m)["name"]) for m in calls}
    surname_row = _surname_row(calls, text, asr, surname_of, misses)
    if surname_row:
        rows.append(surname_row)

    for rule in LABELLED_RULES:
        field(
            f"qa:{rule}",
            lambda r, rule=rule: verdict(r[1], rule),  # type: ignore[misc]
            lambda m, rule=rule: rule_label(m, rule),  # type: ignore[misc]
            only=lambda m, rule=rule: rule_label(m, rule) is not None,  # type: ignore[misc]
        )
    pairs = [(m, r) for m in calls for r in LABELLED_RULES if rule_label(m, r) is not None]
    t_ok = sum(verdict(text[m["id"]][1], r) == rule_label(m, r) for m, r in pairs)
    a_ok = sum(verdict(asr[m["id"]][1], r) == rule_label(m, r) for m, r in pairs)
    ff = sum(verdict(asr[m["id"]][1], r) is False and rule_label(m, r) is True for m, r in pairs)
    missed = sum(
        verdict(asr[m["id"]][1], r) is not False and rule_label(m, r) is False for m, r in pairs
    )
    rows.append(
        Row("qa: all labelled rules", len(pairs), t_ok, a_ok, f"false fails {ff}, missed {missed}")
    )

    print(first_pass_cer(calls, timelines))
    print(f"{'field':28} {'text':>7} {'asr':>7} {'n':>4}")
    for row in rows:
        print(
            f"{row.name:28} {row.text_ok / row.n:7.1%} {row.asr_ok / row.n:7.1%} {row.n:4d}"
            f"  {row.extra}"
        )
    print(
        "text: ground-truth timelines (bench/text_accuracy.py); asr: Vosk transcripts of the"
        " two legs. 'false fails': a rule failed on ASR text that the label passes."
    )
    if args.details:
        print()
        print("\n".join(misses))
    return 0


def _surname_row(
    calls: list[dict[str, Any]],
    text: dict[str, Result],
    asr: dict[str, Result],
    surname_of: dict[str, str],
    misses: list[str],
) -> Row | None:
    """Caller surname where the call says it; caller_name may hold more than the surname."""
    sel = [m for m in calls if _said(surname_of[m["id"]], m)]
    if not sel:
        return None

    def ok(r: Result, s: str) -> bool:
        return r[0].caller_name[: len(s)] == s

    for m in sel:
        if not ok(asr[m["id"]], surname_of[m["id"]]):
            misses.append(
                f"{m['id']} caller surname: asr {asr[m['id']][0].caller_name!r}"
                f" want {surname_of[m['id']]!r}"
            )
    return Row(
        "caller surname (if said)",
        len(sel),
        sum(ok(text[m["id"]], surname_of[m["id"]]) for m in sel),
        sum(ok(asr[m["id"]], surname_of[m["id"]]) for m in sel),
    )


if __name__ == "__main__":
    raise SystemExit(main())
