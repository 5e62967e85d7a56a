"""Personal numbers found in recognised speech and masked; their audio muted."""

from __future__ import annotations

import numpy as np

from callcenter.pii import Finding, muted, redact, redact_segment
from callcenter.core import Segment, Word


def _segment(*words: str, leg: str = "caller", start: float = 10.0) -> Segment:
    """Words of 0.5 s each from ``start``."""
    ws = [Word(w=w, start=start + i * 0.5, end=start + i * 0.5 + 0.4, conf=1.0)
          for i, w in enumerate(words)]
    return Segment(leg=leg, start=ws[0].start, end=ws[-1].end, text="".join(words),
                   words=ws)  # type: ignore[arg-type]


def test_a_mobile_number_said_in_pieces_is_masked_with_its_times() -> None:
    segment = _segment("我的", "电话", "幺三八", "零零", "一三八", "零零零", "谢谢")
    redacted, found = redact_segment(segment)
    assert redacted.text == "我的电话" + "*" * 11 + "谢谢"
    assert [w.w for w in redacted.words][2:6] == ["***", "**", "***", "***"]
    assert found == [Finding("mobile", "caller", 11.0, 12.9)]


def test_identity_numbers_need_their_checksum_and_birth_date() -> None:
    valid = "11010519491231002X"  # checksum holds, born 1949-12-31
    redacted, found = redact_segment(_segment("身份证号", valid[:6], valid[6:14], valid[14:]))
    assert redacted.text == "身份证号" + "*" * 18
    assert [f.kind for f in found] == ["id_number"]
    said = "幺幺零幺零五幺九四九幺二三幺零零二叉"  # the same number, said (叉 for X)
    assert [f.kind for f in redact_segment(_segment(said))[1]] == ["id_number"]
    wrong = "110105194912310021"  # one digit off: no identity number
    assert "id_number" not in [f.kind for f in redact_segment(_segment(wrong))[1]]


def test_bank_cards_pass_the_luhn_check_and_short_numbers_stay() -> None:
    card = _segment("卡号", "6222", "0212", "3456", "7894")  # 6222021234567894 holds
    redacted, found = redact_segment(card)
    assert redacted.text == "卡号" + "*" * 16 and [f.kind for f in found] == ["bank_card"]
    assert (found[0].start, found[0].end) == (10.5, 12.4)
    wrong = _segment("卡号", "6222", "0212", "3456", "7895")  # the check digit is off
    assert "bank_card" not in [f.kind for f in redact_segment(wrong)[1]]
    plain, none = redact_segment(_segment("三号楼", "二单元", "六零四", "八十块"))
    assert none == [] and plain.text == "三号楼二单元六零四八十块"


def test_whole_transcripts_and_a_muted_copy_of_the_leg() -> None:
    segments = [_segment("您好"), _segment("幺三九一二三四五六七八", start=20.0)]
    redacted, found = redact(segments)
    assert redacted[0] is segments[0] and redacted[1].text == "*" * 11
    rate = 8000
    leg = np.full(30 * rate, 1000, dtype=np.int16)
    quiet = muted(leg, rate, found)
    assert quiet[int(19.95 * rate):int(20.45 * rate)].max() == 0
    assert quiet[int(19.8 * rate)] == 1000 and quiet[int(20.6 * rate)] == 1000
    assert leg.min() == 1000  # the original is untouched
