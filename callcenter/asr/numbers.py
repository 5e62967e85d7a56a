"""Where in a call numbers are being said, for the second decoding pass (pure).

A general language model writes spoken digits as whatever characters sound alike
(幺五八 comes out as 要五八, 二七 as 而其, 九四 as 酒肆; 十五幢 as 石屋装), so a
phone number or an address is rarely legible in the first pass. The stretches
where one is being given are decoded again with a grammar of number words only
(``Transcriber.numbers`` and ``.addresses``), unknown words standing for the rest:

- personal numbers (``number_windows``, digits only; read by ``pii.py``): a segment
  that names a kind of number (a phone, an identity card, a bank card or account)
  and the next one of that leg within a pause (the number said after 我的电话是
  and a breath), or a segment already holding several digits;
- the address (``address_windows``, digits, 十/百/千, 栋/幢/号/楼/单元/室/座/层 and
  the estate's building names, ``address_grammar``; read by
  ``tickets/address.py``): a segment holding an address word
  (``Cues.address_words``: the markers and what the recognizer writes for them,
  from the ticket terms, and the building names) or a room's worth of digits, and
  the caller's answer to the agent's question for the address
  (``Cues.address_questions``);
- the caller's surname (``name_windows``, ``name_grammar``: 我/姓/叫/免贵/是 and the
  surname list; read by ``tickets/address.py``): the caller's answer to the
  agent's question for their name (``Cues.name_questions``), or a segment where
  the first pass heard 姓. A surname the model has no word for (倪, 聂, 樊: 30 of
  the list's 274 in the small Chinese model, 23 of which sound like no other
  surname) is listened for as a word it has that sounds the same
  (``surname_stand_ins``: 尼 for 倪), and written back as the surname.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from pypinyin import Style, pinyin

from callcenter.core import Segment

# Words of numbers as said aloud: the digits, 幺 (one, in phone numbers), 两 (two),
# 洞 (zero, on radios); positional 十/百/千; the words an address is made of. Two
# grammars: the address words cost the digits of a phone number said fast (they
# take over the short digits), so a number is read with the digits alone.
DIGIT_WORDS = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "幺", "两", "洞")
NUMBER_WORDS = ("十", "百", "千")
ADDRESS_WORDS = ("栋", "幢", "号", "楼", "单元", "室", "座", "层")
UNKNOWN_WORD = "[unk]"
DIGITS_GRAMMAR = json.dumps([*DIGIT_WORDS, UNKNOWN_WORD], ensure_ascii=False)

NAME_WORDS = ("我", "姓", "叫", "免贵", "是")


def name_grammar(surnames: Sequence[str]) -> str:
    """The name pass's grammar: the words a surname is given with, and the
    surnames (Vosk leaves out any the model has no word for)."""
    return json.dumps([*NAME_WORDS, *surnames, UNKNOWN_WORD], ensure_ascii=False)


def address_grammar(building_names: Sequence[str] = ()) -> str:
    """The address pass's grammar: number and address words, and the estate's
    building names (紫荆苑, 商业街; each as words of the model's vocabulary,
    separated by spaces, as Vosk takes a phrase)."""
    return json.dumps([*DIGIT_WORDS, *NUMBER_WORDS, *ADDRESS_WORDS, *building_names,
                       UNKNOWN_WORD], ensure_ascii=False)


# What kind of number is being given: phone, identity document, bank card, account.
_NAMES_A_NUMBER = re.compile(
    "电话|手机|号码|联系方式|座机|身份证|证件|卡号|银行卡|账号|帐号|尾号")
_DIGIT_CHARACTERS = re.compile("[0-9零〇一二三四五六七八九幺两洞]")
MIN_DIGITS = 5  # a segment holding this many digit characters is looked at again
MIN_ROOM_DIGITS = 3  # ... for an address (a room: 3-4 digits)
FOLLOW_S = 3.0  # the segment after a naming one (or the question), within this pause
PAD_S = 0.3  # decoded around each segment: words at its edges are not cut
# The address is read again with each window starting this much earlier and later:
# where a window starts moves the recognizer's utterance ends, and with them a digit
# of the room may fall in the gap (二单元|零一 for 二单元五零一). A field the
# unshifted reading left open is filled where the shifted readings agree
# (tickets/address.py); they never overrule what it heard.
ADDRESS_SHIFTS_S = (-0.2, 0.2)


@dataclass(frozen=True, slots=True)
class Cues:
    """What marks an address in the first pass's text (``tickets/terms.yaml``), and
    the estate's building names as the address grammar spells them."""

    address_words: tuple[str, ...] = ()
    address_questions: tuple[str, ...] = ()
    building_names: tuple[str, ...] = ()
    name_questions: tuple[str, ...] = ()
    surnames: tuple[str, ...] = ()
    # How a surname is said where that is not its everyday reading ("覃 qin2").
    surname_readings: tuple[str, ...] = ()


def names_a_number(text: str) -> bool:
    return bool(_NAMES_A_NUMBER.search(text))


def number_windows(segments: Sequence[Segment], leg: str, length_s: float
                   ) -> list[tuple[float, float]]:
    """Stretches (start, end seconds) of ``leg`` where a number is being given: a
    segment naming a kind of personal number and the next one within a pause, or
    one holding several digits. ``segments``: the call's, in time order."""
    chosen = []
    follow_until = -1.0
    for segment in segments:
        if segment.leg != leg:
            continue
        named = names_a_number(segment.text)
        if (named or segment.start <= follow_until
                or len(_DIGIT_CHARACTERS.findall(segment.text)) >= MIN_DIGITS):
            chosen.append(_padded(segment, length_s))
        if named:
            follow_until = segment.end + FOLLOW_S
    return _merged(chosen)


def address_windows(segments: Sequence[Segment], leg: str, length_s: float, cues: Cues,
                    shift_s: float = 0.0) -> list[tuple[float, float]]:
    """Stretches of ``leg`` where an address is being given: a segment holding an
    address word or a room's worth of digits, and the caller's answer to the
    agent's address question; ``shift_s`` moves each one's start (ADDRESS_SHIFTS_S)."""
    words = (*cues.address_words, *(n.replace(" ", "") for n in cues.building_names))
    chosen = []
    answer_until = -1.0
    for segment in segments:
        if segment.leg == "agent" and any(q in segment.text for q in cues.address_questions):
            answer_until = segment.end + FOLLOW_S
        if segment.leg != leg:
            continue
        answering = leg == "caller" and segment.start <= answer_until
        if (answering or any(w in segment.text for w in words)
                or len(_DIGIT_CHARACTERS.findall(segment.text)) >= MIN_ROOM_DIGITS):
            chosen.append(_padded(segment, length_s))
    return [(min(max(0.0, start + shift_s), end), end) for start, end in _merged(chosen)]


def name_windows(segments: Sequence[Segment], leg: str, length_s: float, cues: Cues
                 ) -> list[tuple[float, float]]:
    """Stretches of the caller's ``leg`` where they give their name: the answer to
    the agent's question for it, and a segment where the first pass heard 姓."""
    if leg != "caller" or not cues.surnames:
        return []
    chosen = []
    answer_until = -1.0
    for segment in segments:
        if segment.leg == "agent" and any(q in segment.text for q in cues.name_questions):
            answer_until = segment.end + FOLLOW_S
        elif segment.leg == leg and (segment.start <= answer_until or "姓" in segment.text):
            chosen.append(_padded(segment, length_s))
    return _merged(chosen)


def _padded(segment: Segment, length_s: float) -> tuple[float, float]:
    return max(0.0, segment.start - PAD_S), min(length_s, segment.end + PAD_S)


def _merged(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


# ---- surnames the model has no word for ---------------------------------------------


def surname_stand_ins(surnames: Sequence[str], vocabulary: Collection[str],
                      readings: Iterable[str] = ()) -> dict[str, str]:
    """{a word of ``vocabulary``: the one-character surname it stands in for} for
    each surname the model has no word for: the first (by code point) of its
    one-character words said with the same syllable and tone. None for a surname
    that sounds like one the model can hear (覃 and 秦 are both qin2: the model
    hears 秦) or like another one it cannot (晏 and 彦): which one was said cannot
    be told. ``readings``: "覃 qin2", how a surname is said where that is not its
    everyday reading."""
    said = dict(r.split(maxsplit=1) for r in readings)

    def sound(word: str) -> str:
        return said.get(word) or _sound(word)

    heard = {sound(s) for s in surnames if s in vocabulary}
    unheard = [s for s in surnames if len(s) == 1 and s not in vocabulary]
    alike = Counter(sound(s) for s in unheard)
    taken = {*surnames, *NAME_WORDS}
    by_sound = _words_by_sound(frozenset(w for w in vocabulary if len(w) == 1) - taken)
    stand_ins = {}
    for surname in unheard:
        syllable = sound(surname)
        if syllable in heard or alike[syllable] > 1 or not by_sound.get(syllable):
            continue
        stand_ins[by_sound[syllable][0]] = surname
    return stand_ins


def _sound(word: str) -> str:
    """Its everyday reading: syllables with their tone numbers (倪 -> "ni2")."""
    return " ".join(p[0] for p in pinyin(word, style=Style.TONE3, heteronym=False,
                                         neutral_tone_with_five=True))


@lru_cache(maxsize=2)
def _words_by_sound(characters: frozenset[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for char in sorted(characters):
        out.setdefault(_sound(char), []).append(char)
    return out


def with_surnames(segments: Iterable[Segment], stand_ins: Mapping[str, str]
                  ) -> list[Segment]:
    """The name pass's segments with each stand-in word written as its surname."""
    out = []
    for segment in segments:
        words = [replace(w, w=stand_ins.get(w.w, w.w)) for w in segment.words]
        out.append(replace(segment, words=words, text="".join(w.w for w in words)))
    return out
