"""Where in a leg a number is being said, for the second decoding pass (pure).

A general language model writes spoken digits as whatever characters sound alike
(幺五八 comes out as 要五八, 二七 as 而其, 九四 as 酒肆), so a phone, identity or
card number is rarely legible in the first pass and cannot be found, or masked,
there. The segments where one is being given are decoded again with a grammar of
digit words only (``Transcriber.numbers``): the audio then comes out as digits
and unknown words.

A segment is chosen when it names what a number is (a phone, an identity card, a
bank card or account) or already holds several digits; after a naming segment
the next one of the same leg is taken too, when it follows within a pause (the
number said after 我的电话是 and a breath).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from callcenter.core import Segment

# Words of numbers as said aloud: the digits, 幺 (one, in phone numbers), 两 (two)
# and 洞 (zero, on radios); the identity number's check character X is said 叉.
DIGIT_WORDS = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "幺", "两", "洞")
UNKNOWN_WORD = "[unk]"
GRAMMAR = json.dumps([*DIGIT_WORDS, UNKNOWN_WORD], ensure_ascii=False)

# What kind of number is being given: phone, identity document, bank card, account.
_NAMES_A_NUMBER = re.compile(
    "电话|手机|号码|联系方式|座机|身份证|证件|卡号|银行卡|账号|帐号|尾号")
_DIGIT_CHARACTERS = re.compile("[0-9零〇一二三四五六七八九幺两洞]")
MIN_DIGITS = 5  # a segment holding this many digit characters is looked at again
FOLLOW_S = 3.0  # the segment after a naming one, when it starts within this pause
PAD_S = 0.3  # decoded around each segment: words at its edges are not cut


def names_a_number(text: str) -> bool:
    return bool(_NAMES_A_NUMBER.search(text))


def number_windows(segments: Sequence[Segment], length_s: float) -> list[tuple[float, float]]:
    """Stretches (start, end seconds) of one leg to decode for digits, merged where
    they touch; ``segments`` are that leg's, in time order."""
    chosen: list[tuple[float, float]] = []
    follow_until = -1.0
    for segment in segments:
        named = names_a_number(segment.text)
        if (named or segment.start <= follow_until
                or len(_DIGIT_CHARACTERS.findall(segment.text)) >= MIN_DIGITS):
            chosen.append((max(0.0, segment.start - PAD_S), min(length_s, segment.end + PAD_S)))
        follow_until = segment.end + FOLLOW_S if named else -1.0
    return _merged(chosen)


def _merged(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out
