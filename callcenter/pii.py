"""Personal numbers in a transcript (pure): mobile numbers, resident identity card
numbers and bank card numbers, as a recognizer writes them (Chinese digits
幺/两/洞 included, or Arabic ones), found across word boundaries within an
utterance and masked character by character; their times, to mute the audio.

A run of digits is searched for, longest kind first: an 18-character identity
number whose checksum and birth date hold (python-stdnum ``cn.ric``; its last
character may be X, said 叉), a 16-19 digit card number that passes the Luhn
check (``stdnum.luhn``), an 11-digit mobile number (1, then 3-9). Shorter numbers
(rooms, prices, dates) are left alone.

The first pass rarely shows a spoken number (homophones: 要五八 for 幺五八), so the
digit pass (``asr/numbers.py``) decodes where one is being given again; what it
finds masks the first pass's words by time (``also``), and there any run of
``MIN_LONG_NUMBER`` digits counts, checks or not (a phone number misheard by one
digit is still one). Quotes of the transcript elsewhere (a ticket's description,
QA evidence) are masked by the stretches masking changed (``masked_runs``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt
from stdnum import luhn
from stdnum.cn import ric

from callcenter.asr.numbers import FOLLOW_S, names_a_number
from callcenter.core import Evidence, Segment, Ticket, Word

PiiKind = Literal["id_number", "bank_card", "mobile", "long_number"]
MIN_LONG_NUMBER = 7  # digits in a row said where a number is given: masked, checks or not
MASK = "*"
_DIGIT = {"零": "0", "〇": "0", "洞": "0", "幺": "1", "一": "1", "二": "2", "两": "2",
          "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_ID_CHECK = {"X": "X", "x": "X", "叉": "X"}  # the identity number's last character
_MOBILE = re.compile(r"1[3-9]\d{9}")
# Inside a number as people write it (138 0013 8000, 138-0013-8000): skipped, kept.
_SEPARATORS = frozenset(" -\u3000")


@dataclass(frozen=True, slots=True)
class Finding:
    kind: PiiKind
    leg: str
    start: float  # from the first word's start to the last word's end, in the leg
    end: float


def _digit(ch: str) -> str:
    return ch if ch.isascii() and ch.isdigit() else _DIGIT.get(ch, _ID_CHECK.get(ch, ""))


def _kinds_in(run: str) -> Iterable[tuple[int, int, PiiKind]]:
    """(start, end, kind) of the numbers inside a run of digit characters."""
    at = 0
    while at < len(run):
        found = _number_at(run, at)
        if found is None:
            at += 1
            continue
        length, kind = found
        yield at, at + length, kind
        at += length


def _number_at(run: str, at: int) -> tuple[int, PiiKind] | None:
    candidate = run[at:at + 18]
    if len(candidate) == 18 and candidate[:17].isdigit() and ric.is_valid(candidate):
        return 18, "id_number"
    for length in range(19, 15, -1):
        candidate = run[at:at + length]
        if len(candidate) == length and candidate.isdigit() and luhn.is_valid(candidate):
            return length, "bank_card"
    if _MOBILE.fullmatch(run[at:at + 11]):
        return 11, "mobile"
    return None


def _characters(words: Sequence[Word]) -> list[tuple[int, int, str]]:
    """(word index, index in the word, character) of every character."""
    return [(wi, ci, ch) for wi, w in enumerate(words) for ci, ch in enumerate(w.w)]


def _digit_runs(chars: Sequence[tuple[int, int, str]]) -> Iterable[list[int]]:
    """Positions in ``chars`` of each run of digits (separators inside skipped)."""
    i = 0
    while i < len(chars):
        if not _digit(chars[i][2]):
            i += 1
            continue
        digits: list[int] = []
        j = i
        while j < len(chars) and (_digit(chars[j][2]) or chars[j][2] in _SEPARATORS):
            if _digit(chars[j][2]):
                digits.append(j)
            j += 1
        yield digits
        i = j


def redact_segment(segment: Segment, also: Sequence[Finding] = ()
                   ) -> tuple[Segment, list[Finding]]:
    """The segment with every personal number's characters masked, and what was
    found. Characters are read across its words (a number said in pieces); a
    segment without words (a text transcript) is read as one word. ``also``:
    numbers found elsewhere (the digit pass, ``asr/numbers.py``): every word of
    this leg that overlaps one in time is masked whole."""
    source = segment.words or [Word(w=segment.text, start=segment.start, end=segment.end)]
    chars = _characters(source)
    masked: set[tuple[int, int]] = set()
    findings: list[Finding] = []
    for digits in _digit_runs(chars):
        run = "".join(_digit(chars[k][2]) for k in digits)
        for lo, hi, kind in _kinds_in(run):
            covered = [chars[k] for k in digits[lo:hi]]
            masked.update((wi, ci) for wi, ci, _ in covered)
            first, last = source[covered[0][0]], source[covered[-1][0]]
            findings.append(Finding(kind, segment.leg, first.start, last.end))
    overlapping = {wi for wi, w in enumerate(source) if segment.words and any(
        f.leg == segment.leg and w.start < f.end and f.start < w.end for f in also)}
    masked.update((wi, ci) for wi, ci, _ in chars if wi in overlapping)
    if not masked:
        return segment, findings
    words = [Word(w="".join(MASK if (wi, ci) in masked else ch for ci, ch in enumerate(w.w)),
                  start=w.start, end=w.end, conf=w.conf)
             for wi, w in enumerate(source)]
    text = "".join(w.w for w in words)
    return replace(segment, words=words if segment.words else [], text=text), findings


def mask_text(text: str) -> tuple[str, list[PiiKind]]:
    """A piece of text (a quote, a description) with its personal numbers masked,
    and the kinds found: the same search as :func:`redact_segment`."""
    if not text:
        return text, []
    masked, found = redact_segment(Segment(leg="caller", start=0.0, end=0.0, text=text))
    return masked.text, [f.kind for f in found]


MaskedRun = tuple[str, str]  # (as recognised, masked): a stretch masking changed
MIN_RUN = 3  # shorter stretches are not looked for in quotes (too common)


def masked_runs(pairs: Iterable[tuple[str, str]]) -> list[MaskedRun]:
    """From (recognised, masked) texts of segments, the stretches masking changed,
    longest first: quotes of those segments elsewhere (a ticket's description, QA
    evidence) are masked the same way by :func:`mask_quotes`, however the numbers
    were found (the digit pass finds numbers the text does not show)."""
    runs: set[MaskedRun] = set()
    for original, masked in pairs:
        if len(original) != len(masked):
            continue
        start = None
        for i, (a, b) in enumerate([*zip(original, masked, strict=True), ("", "")]):
            changed = b == MASK and a != MASK
            if changed and start is None:
                start = i
            elif not changed and start is not None:
                if i - start >= MIN_RUN:
                    runs.add((original[start:i], masked[start:i]))
                start = None
    return sorted(runs, key=lambda r: -len(r[0]))


def mask_quotes(text: str, runs: Sequence[MaskedRun] = ()) -> str:
    """``text`` with the stretches of ``runs`` masked, and any number it shows."""
    for original, masked in runs:
        text = text.replace(original, masked)
    return mask_text(text)[0]


def masked_evidence(evidence: Evidence, runs: Sequence[MaskedRun] = ()) -> Evidence:
    """A QA quote masked (times kept: the reviewer hears the moment, muted)."""
    return replace(evidence, text=mask_quotes(evidence.text, runs))


def masked_ticket(ticket: Ticket, runs: Sequence[MaskedRun] = ()) -> Ticket:
    """The ticket's quotes of the caller masked: its description and evidence. Its
    ``phone`` stays: the call-back number is a field people work with."""
    return replace(ticket, description=mask_quotes(ticket.description, runs),
                   evidence={name: [mask_quotes(q, runs) for q in quotes]
                             for name, quotes in ticket.evidence.items()})


def redact(segments: Sequence[Segment], also: Sequence[Finding] = ()
           ) -> tuple[list[Segment], list[Finding]]:
    """Every segment redacted (``also``: see :func:`redact_segment`); the findings
    of the text and ``also``, in order."""
    out: list[Segment] = []
    findings: list[Finding] = []
    for segment in segments:
        redacted, found = redact_segment(segment, also)
        out.append(redacted)
        findings.extend(found)
    more = [a for a in also if not any(  # a number both passes found counts once
        f.leg == a.leg and f.start < a.end and a.start < f.end for f in findings)]
    return out, sorted([*findings, *more], key=lambda f: (f.leg, f.start))


def redacted_with_runs(segments: Sequence[Segment], also: Sequence[Finding] = ()
                       ) -> tuple[list[Segment], list[MaskedRun]]:
    """Every segment redacted (``also``: see :func:`redact_segment`), and the
    stretches masking changed in them (for :func:`mask_quotes` of their quotes)."""
    masked = [redact_segment(segment, also)[0] for segment in segments]
    pairs = ((o.text, m.text) for o, m in zip(segments, masked, strict=True))
    return masked, masked_runs(pairs)


def number_findings(digit_segments: Sequence[Segment], said: Sequence[Segment] = ()
                    ) -> list[Finding]:
    """The personal numbers in the digit pass's segments (``Transcriber.numbers``).
    Besides the numbers whose checks hold, a run of at least ``MIN_LONG_NUMBER``
    digits is one (``long_number``) where the first pass (``said``) named a phone,
    identity or card number just before or around it: a phone number with a digit
    misheard or lost is still one, but an address read out is not."""
    findings = redact(digit_segments)[1]
    named = [s for s in said if names_a_number(s.text)]
    for segment in digit_segments:
        chars = _characters(segment.words)
        for digits in _digit_runs(chars):
            if len(digits) < MIN_LONG_NUMBER:
                continue
            start = segment.words[chars[digits[0]][0]].start
            end = segment.words[chars[digits[-1]][0]].end
            if any(f.leg == segment.leg and f.start < end and start < f.end for f in findings):
                continue
            if any(n.leg == segment.leg and n.start < end and start < n.end + FOLLOW_S
                   for n in named):
                findings.append(Finding("long_number", segment.leg, start, end))
    return sorted(findings, key=lambda f: (f.leg, f.start))


def muted(samples: npt.NDArray[np.int16], rate: int, findings: Iterable[Finding],
          *, pad_s: float = 0.1) -> npt.NDArray[np.int16]:
    """A copy of a leg with silence over each finding (and ``pad_s`` around it)."""
    out = np.array(samples, dtype=np.int16, copy=True)
    for f in findings:
        lo = max(0, int((f.start - pad_s) * rate))
        hi = min(len(out), int(np.ceil((f.end + pad_s) * rate)))
        out[lo:hi] = 0
    return out
