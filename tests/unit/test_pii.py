"""Personal numbers found in recognised speech and masked; their audio muted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from callcenter.asr.muting import muted_name, write_muted_copy
from callcenter.asr.numbers import number_windows
from callcenter.audio import AudioError, read_mono, write_wav
from callcenter.core import Evidence, Segment, Ticket, Word
from callcenter.pii import (
    Finding,
    mask_quotes,
    mask_text,
    masked_evidence,
    masked_runs,
    masked_ticket,
    muted,
    number_findings,
    redact,
    redact_segment,
)


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


def test_text_without_words_and_numbers_written_with_separators() -> None:
    assert mask_text("电话 138 0013 8000，3号楼1202室") == (
        "电话 *** **** ****，3号楼1202室", ["mobile"])
    assert mask_text("138-0013-8000")[0] == "***-****-****"
    assert mask_text("") == ("", [])
    plain = Segment(leg="agent", start=1.0, end=4.0, text="您的号码是13800138000对吧")
    redacted, found = redact_segment(plain)
    assert redacted.text == "您的号码是" + "*" * 11 + "对吧" and redacted.words == []
    assert found == [Finding("mobile", "agent", 1.0, 4.0)]


def test_words_overlapping_a_number_found_by_the_digit_pass_are_masked_whole() -> None:
    # The first pass wrote the digits as words that sound alike: nothing to find there.
    first = _segment("我", "电话", "是", "要五八", "零六", "而其", "三酒肆", "谢谢")
    assert redact_segment(first)[1] == []
    said = [Word(w=d, start=11.5 + i * 0.18, end=11.66 + i * 0.18)  # the digit pass
            for i, d in enumerate("幺五八零六一二七三九四")]
    digits = Segment(leg="caller", start=11.5, end=said[-1].end, text="", words=said)
    spoken = number_findings([digits])
    assert [(f.kind, f.start, f.end) for f in spoken] == [("mobile", 11.5, said[-1].end)]
    redacted, found = redact([first], spoken)
    assert redacted[0].text == "我电话是" + "*" * 10 + "谢谢"
    assert found == spoken  # counted once


def test_a_long_run_from_the_digit_pass_counts_where_a_phone_or_card_was_named() -> None:
    lost_a_digit = _segment("[unk]", *"二零七四三三一五")  # eight digits: a phone, misheard
    named = _segment("我", "电话", "是", start=8.0)
    assert [f.kind for f in number_findings([lost_a_digit], [named])] == ["long_number"]
    address = _segment("三十三", "栋", "一零零八", start=8.0)  # an address read out
    assert number_findings([lost_a_digit], [address]) == []
    assert number_findings([lost_a_digit]) == []
    assert number_findings([_segment("[unk]", *"六零四", "[unk]")], [named]) == []  # a room


def test_quotes_elsewhere_are_masked_like_the_transcript() -> None:
    runs = masked_runs([("我电话是要五八零六而其三酒肆", "我电话是" + "*" * 10),
                        ("好的", "好的"), ("我a", "我*")])  # one character: not looked for
    assert runs == [("要五八零六而其三酒肆", "*" * 10)]
    assert mask_quotes("他说要五八零六而其三酒肆。", runs) == "他说" + "*" * 10 + "。"
    evidence = masked_evidence(Evidence("caller", 1.0, 2.0, "电话是要五八零六而其三酒肆"), runs)
    assert (evidence.text, evidence.start) == ("电话是" + "*" * 10, 1.0)
    ticket = Ticket(category="engineering", urgency="P3", phone="15806127394",
                    description="马桶堵了，电话要五八零六而其三酒肆",
                    evidence={"phone": ["电话是15806127394"]})
    masked = masked_ticket(ticket, runs)
    assert masked.phone == "15806127394"  # the call-back number is a field people use
    assert masked.description == "马桶堵了，电话" + "*" * 10
    assert masked.evidence == {"phone": ["电话是" + "*" * 11]}


def test_the_digit_pass_looks_where_a_number_is_named_or_already_shows() -> None:
    segments = [
        _segment("师傅", "什么", "时候", "来", start=0.0),
        _segment("我的", "手机", "号", start=5.0),  # names one: this and the next
        _segment("幺五八", "零六", start=7.5),
        _segment("好的", start=20.0),  # long after: not taken
        _segment("一二三四五六", start=30.0),  # digits already
    ]
    windows = [bound for window in number_windows(segments, "caller", 40.0)
               for bound in window]
    assert windows == pytest.approx([4.7, 6.7, 7.2, 8.7, 29.7, 30.7])
    assert number_windows(segments[:1], "caller", 40.0) == []
    assert number_windows(segments, "agent", 40.0) == []


def test_the_muted_copy_is_written_whole_beside_the_original(tmp_path: Path) -> None:
    rate = 8000
    tone = (8000 * np.sin(2 * np.pi * 300 * np.arange(3 * rate) / rate)).astype(np.int16)
    (tmp_path / "c1").mkdir()
    write_wav(tmp_path / "c1" / "caller.wav", tone, rate)
    assert muted_name("c1/caller.wav") == "c1/caller.muted.wav"
    stored = write_muted_copy(tmp_path, "c1/caller.wav", [Finding("mobile", "caller", 1.0, 2.0)])
    copy, copy_rate = read_mono(tmp_path / stored)
    assert copy_rate == rate and len(copy) == len(tone)
    assert not np.any(copy[int(0.9 * rate):int(2.1 * rate)])
    assert np.array_equal(copy[:int(0.85 * rate)], tone[:int(0.85 * rate)])
    assert sorted(p.name for p in (tmp_path / "c1").iterdir()) == [
        "caller.muted.wav", "caller.wav"]  # no partial file left
    with pytest.raises(AudioError):
        write_muted_copy(tmp_path, "c1/missing.wav", [])
