"""Personal numbers in a transcript (pure): mobile numbers, resident identity card
numbers and bank card numbers, as a recognizer writes them (Chinese digits
幺/两/洞 included, or Arabic ones), found across word boundaries within an
utterance and masked character by character; their times, to mute the audio.

A run of digits is searched for, longest kind first: an 18-character identity
number whose checksum and birth date hold (python-stdnum ``cn.ric``; its last
character may be X, said 叉), a 16-19 digit card number that passes the Luhn
check (``stdnum.luhn``), an 11-digit mobile number (1, then 3-9). Shorter numbers
(rooms, prices, dates) are left alone.
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

from callcenter.core import Segment, Word

PiiKind = Literal["id_number", "bank_card", "mobile"]
MASK = "*"
_DIGIT = {"零": "0", "〇": "0", "洞": "0", "幺": "1", "一": "1", "二": "2", "两": "2",
          "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_ID_CHECK = {"X": "X", "x": "X", "叉": "X"}  # the identity number's last character
_MOBILE = re.compile(r"1[3-9]\d{9}")


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


def redact_segment(segment: Segment) -> tuple[Segment, list[Finding]]:
    """The segment with every personal number's characters masked, and what was
    found. Characters are read across its words (a number said in pieces)."""
    chars = [(wi, ci, ch) for wi, w in enumerate(segment.words) for ci, ch in enumerate(w.w)]
    masked: set[tuple[int, int]] = set()
    findings: list[Finding] = []
    i = 0
    while i < len(chars):
        if not _digit(chars[i][2]):
            i += 1
            continue
        j = i
        while j < len(chars) and _digit(chars[j][2]):
            j += 1
        run = "".join(_digit(ch) for _, _, ch in chars[i:j])
        for lo, hi, kind in _kinds_in(run):
            covered = chars[i + lo:i + hi]
            masked.update((wi, ci) for wi, ci, _ in covered)
            first, last = segment.words[covered[0][0]], segment.words[covered[-1][0]]
            findings.append(Finding(kind, segment.leg, first.start, last.end))
        i = j
    if not findings:
        return segment, []
    words = [Word(w="".join(MASK if (wi, ci) in masked else ch for ci, ch in enumerate(w.w)),
                  start=w.start, end=w.end, conf=w.conf)
             for wi, w in enumerate(segment.words)]
    return replace(segment, words=words, text="".join(w.w for w in words)), findings


def redact(segments: Sequence[Segment]) -> tuple[list[Segment], list[Finding]]:
    """Every segment redacted; all findings, in order."""
    out: list[Segment] = []
    findings: list[Finding] = []
    for segment in segments:
        redacted, found = redact_segment(segment)
        out.append(redacted)
        findings.extend(found)
    return out, findings


def muted(samples: npt.NDArray[np.int16], rate: int, findings: Iterable[Finding],
          *, pad_s: float = 0.1) -> npt.NDArray[np.int16]:
    """A copy of a leg with silence over each finding (and ``pad_s`` around it)."""
    out = np.array(samples, dtype=np.int16, copy=True)
    for f in findings:
        lo = max(0, int((f.start - pad_s) * rate))
        hi = min(len(out), int(np.ceil((f.end + pad_s) * rate)))
        out[lo:hi] = 0
    return out
